"""A fleet run's report as one self-contained HTML page (``fleet --html-report FILE``).

The page holds the summary table, the expectations, and three plots: uploads per
virtual day, retries and faults by kind, and the distribution of request latency. The
plots are drawn by Chart.js, inlined from the copy the server's dashboard serves
(``emulator/server/dashboard/static/chart.umd.js``), so the file opens anywhere, with
no network; every number is also in a table under its plot. All text goes through
Jinja2's autoescaping (serials, error messages).

Where the figures come from:

* the :class:`~emulator.fleet.report.FleetReport` (summary, expectations, totals);
* with the embedded server, its database before the work directory is removed
  (:meth:`RunRecorder.read_server`): uploads per virtual day, faults by chain-link code
  (each fault counted once, though the device reports its last 40 in every payload);
* the server's access log while the run lasts (:meth:`RunRecorder.start`): the time
  each device request took on the server, in this process (with ``--processes`` the
  server runs in this process too; against ``--server URL`` there is none to read).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import statistics
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import jinja2

from emulator.fleet.report import FleetReport, summary_table

ACCESS_LOGGER = "emulator.server.access"
CHART_JS = Path(__file__).resolve().parents[1] / "server" / "dashboard" / "static" / "chart.umd.js"
LATENCY_BINS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
MAX_SAMPLES = 1_000_000  # latency samples kept (a 30-day, 10,000-device run has ~1 M)


class _AccessHandler(logging.Handler):
    def __init__(self, recorder: RunRecorder) -> None:
        super().__init__(logging.INFO)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        try:
            doc = json.loads(record.getMessage())
        except (ValueError, TypeError):
            return
        endpoint = str(doc.get("endpoint", ""))
        if endpoint.startswith("/dd/v1/") and len(self.recorder.latencies_ms) < MAX_SAMPLES:
            self.recorder.latencies_ms.append(float(doc.get("duration_ms", 0.0)))
            self.recorder.statuses[int(doc.get("status", 0))] += 1


@dataclass
class RunRecorder:
    """What the HTML report needs beyond the :class:`FleetReport`, gathered during a run."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    uploads_per_day: dict[str, int] = field(default_factory=dict)
    faults_by_code: dict[str, int] = field(default_factory=dict)
    server_note: str = "the run's server was not embedded: no server-side figures"
    _handler: _AccessHandler | None = None
    _saved: tuple[int, bool] = (logging.NOTSET, True)

    @classmethod
    def start(cls) -> RunRecorder:
        """Start listening to the embedded server's access log (until :meth:`stop`)."""
        recorder = cls()
        logger = logging.getLogger(ACCESS_LOGGER)
        recorder._saved = (logger.level, logger.propagate)
        recorder._handler = _AccessHandler(recorder)
        logger.addHandler(recorder._handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line per request is for us, not for stderr
        return recorder

    def stop(self) -> None:
        logger = logging.getLogger(ACCESS_LOGGER)
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler = None
            logger.setLevel(self._saved[0])
            logger.propagate = self._saved[1]

    def read_server(self, work_dir: Path) -> None:
        """Read the embedded server's database in ``work_dir/server`` (if there is one)."""
        path = work_dir / "server" / "server.sqlite3"
        if not path.exists():
            return
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                self.uploads_per_day = {day: n for day, n in db.execute(
                    "SELECT substr(generated_at, 1, 10) AS day, COUNT(*) FROM uploads "
                    "GROUP BY day ORDER BY day")}
                self.faults_by_code = {code: n for code, n in db.execute(
                    "SELECT code, COUNT(*) FROM (SELECT DISTINCT u.device_id, f.code, f.at "
                    "FROM faults f JOIN uploads u ON u.n = f.upload_n) "
                    "GROUP BY code ORDER BY COUNT(*) DESC, code")}
            finally:
                db.close()
            self.server_note = ""
        except sqlite3.Error as exc:
            self.server_note = f"the embedded server's database could not be read: {exc}"


def latency_histogram(samples: list[float]) -> list[tuple[str, int]]:
    """Counts per latency band: ``[("<1 ms", n), ("1-2 ms", n), ..., (">=5000 ms", n)]``."""
    counts = [0] * (len(LATENCY_BINS_MS) + 1)
    for s in samples:
        i = next((k for k, edge in enumerate(LATENCY_BINS_MS) if s < edge), len(LATENCY_BINS_MS))
        counts[i] += 1
    labels = [f"<{LATENCY_BINS_MS[0]} ms"]
    labels += [f"{a}-{b} ms" for a, b in pairwise(LATENCY_BINS_MS)]
    labels.append(f">={LATENCY_BINS_MS[-1]} ms")
    return list(zip(labels, counts, strict=True))


def _percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        return {"p50": samples[0], "p90": samples[0], "p99": samples[0]} if samples else {}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p90": round(q[89], 2), "p99": round(q[98], 2)}


def render(report: FleetReport, recorder: RunRecorder | None = None) -> str:
    """The report as one HTML page."""
    rec = recorder or RunRecorder()
    t = report.totals()
    kinds = [("retries (failed sends)", t["send_failures"]),
             ("rejected uploads", t["uploads_rejected"]),
             ("duplicates acknowledged", t["uploads_duplicate"]),
             ("faults (not jams)", t["faults"] - t["jams"]), ("jams", t["jams"]),
             ("actions refused", t["actions_refused"])]
    data = {
        "days": list(rec.uploads_per_day.items()),
        "kinds": kinds,
        "codes": list(rec.faults_by_code.items())[:20],
        "latency": latency_histogram(rec.latencies_ms),
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("emulator.fleet", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("fleet-report.html").render(
        report=report, totals=t, summary=summary_table(report), data=data,
        percentiles=_percentiles(rec.latencies_ms), samples=len(rec.latencies_ms),
        statuses=sorted(rec.statuses.items()), note=rec.server_note,
        chart_js=CHART_JS.read_text(encoding="utf-8"))


def write_html_report(report: FleetReport, path: Path,
                      recorder: RunRecorder | None = None) -> None:
    """Write the page to ``path`` (OSError names the file)."""
    text = render(report, recorder)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OSError(f"--html-report {path}: cannot write: {exc.strerror}") from exc

