// Draws a device page's charts with Chart.js from the JSON the page embeds.
(function () {
  "use strict";
  var holder = document.getElementById("chart-data");
  if (!holder || typeof Chart === "undefined") { return; }
  var data = JSON.parse(holder.textContent);
  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];
  function datasets(series, only) {
    var picked = series.filter(function (s) { return !only || only.indexOf(s.name) >= 0; });
    return picked.map(function (s, i) {
      return { label: s.name, data: s.data, borderColor: palette[i % palette.length],
               backgroundColor: palette[i % palette.length], pointRadius: 2, tension: 0,
               spanGaps: true };
    });
  }
  function short(labels) { return labels.map(function (l) { return l.slice(0, 16).replace("T", " "); }); }
  var meterNames = ["total-impressions", "black-impressions", "color-impressions", "sheets"];
  new Chart(document.getElementById("meter-chart"), {
    type: "line",
    data: { labels: short(data.meters.labels), datasets: datasets(data.meters.series, meterNames) },
    options: { animation: false, maintainAspectRatio: false,
               plugins: { title: { display: true, text: "Meters per upload" } } }
  });
  new Chart(document.getElementById("supply-chart"), {
    type: "line",
    data: { labels: short(data.supplies.labels), datasets: datasets(data.supplies.series) },
    options: { animation: false, maintainAspectRatio: false,
               scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } },
               plugins: { title: { display: true, text: "Supply levels (%)" } } }
  });
})();
