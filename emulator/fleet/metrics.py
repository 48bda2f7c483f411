"""``--metrics-port P``: a running fleet's figures for Prometheus to scrape.

The runner hands :class:`LiveFigures` a snapshot (``live_stats.py``) twice a second; a
scrape of ``http://HOST:P/metrics`` (prometheus_client's own HTTP server, in a thread of
its own) reads the latest one. Nothing is computed at scrape time, so a scrape never
touches the devices the event loop is running.

Metrics (prefix ``ddfleet_``): ``device_days_delivered_total``, ``device_days``
(planned), ``uploads_total{outcome}``, ``retries_total``, ``request_errors_total{cause}``,
``actions_total{outcome}``, ``request_seconds`` (histogram), ``devices{state}``,
``virtual_time_seconds`` (the virtual clock, Unix time).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from emulator.fleet.live_stats import BUCKETS, empty_snapshot


class LiveFigures(Collector):
    """The latest snapshot, as Prometheus metrics."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = empty_snapshot()

    def update(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot  # one reference swap: the scrape thread sees old or new

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        delivered = CounterMetricFamily("ddfleet_device_days_delivered",
                                        "Daily payloads the server has acknowledged")
        delivered.add_metric([], s["delivered"])
        yield delivered
        planned = GaugeMetricFamily("ddfleet_device_days", "Device-days the run will deliver")
        planned.add_metric([], s["device_days"])
        yield planned
        yield _labelled(CounterMetricFamily, "ddfleet_uploads", "Uploads by the server's "
                        "answer", "outcome", s["uploads"])
        retries = CounterMetricFamily("ddfleet_retries", "Uploads that failed and wait "
                                      "for a retry")
        retries.add_metric([], s["retries"])
        yield retries
        yield _labelled(CounterMetricFamily, "ddfleet_request_errors",
                        "Requests to the server that failed, by cause", "cause", s["errors"])
        yield _labelled(CounterMetricFamily, "ddfleet_actions", "Remote actions issued by "
                        "the server, run, or refused by the devices", "outcome", s["actions"])
        lat = s["latency"]
        cumulative, buckets = 0, []
        for bound, n in zip((*(str(b) for b in BUCKETS), "+Inf"), lat["counts"], strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        hist = HistogramMetricFamily("ddfleet_request_seconds",
                                     "Real time of each request to the server")
        hist.add_metric([], buckets, lat["sum"])
        yield hist
        yield _labelled(GaugeMetricFamily, "ddfleet_devices", "Devices by state", "state",
                        s["devices"])
        vt = GaugeMetricFamily("ddfleet_virtual_time_seconds",
                               "The fleet's virtual clock (Unix time)")
        vt.add_metric([], s["virtual_time"])
        yield vt


def _labelled(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, doc: str,
              label: str, values: dict[str, int]) -> Metric:
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def serve(figures: LiveFigures, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) in a thread of its own.

    ``.server_port`` of the result is the port; ``.shutdown()`` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(figures)
    httpd, _ = start_http_server(port, addr=host, registry=registry)
    return httpd
