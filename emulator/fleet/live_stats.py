"""What a running fleet has done so far, as a plain JSON-ready snapshot.

A shard's runner takes a snapshot of its devices (``Fleet.snapshot``) twice a second (on
the tick that draws the progress bar) and hands it to whoever watches: the Prometheus
endpoint (``metrics.py``), the ``--stats-csv`` writer (``stats_csv.py``), or - on a Dask
worker - the client, through the scheduler's event log. Snapshots are plain dicts of numbers so
they cross process and machine boundaries as they are; :func:`merge_snapshots` adds up
the latest one of each shard.

:class:`Latency` is the request latency histogram, kept per shard (the buckets are
fixed, so shard histograms add up).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

# seconds; a daily sync on loopback takes milliseconds, through a proxy or a slow
# server seconds, and a timed-out upload minutes of the agent's timeout
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                              10.0, 30.0, 60.0)
DEVICE_STATES = ("waiting", "running", "finished", "crashed")


class Latency:
    """Request latency histogram: counts per bucket of :data:`BUCKETS` (+Inf last)."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.total, "count": self.count}


def merge_snapshots(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of shard snapshots (virtual time: the earliest, the run's slowest shard)."""
    out: dict[str, Any] = empty_snapshot()
    times = []
    for p in parts:
        out["device_days"] += p["device_days"]
        out["delivered"] += p["delivered"]
        out["retries"] += p["retries"]
        for key in ("uploads", "actions", "devices", "errors"):
            for k, v in p[key].items():
                out[key][k] = out[key].get(k, 0) + v
        lat = p["latency"]
        out["latency"]["counts"] = [a + b for a, b in zip(out["latency"]["counts"],
                                                          lat["counts"], strict=True)]
        out["latency"]["sum"] += lat["sum"]
        out["latency"]["count"] += lat["count"]
        times.append(p["virtual_time"])
    out["virtual_time"] = min(times) if times else 0.0
    return out


def empty_snapshot() -> dict[str, Any]:
    """A snapshot of a fleet that has not started."""
    return {"device_days": 0, "delivered": 0,
            "uploads": {"stored": 0, "duplicate": 0, "rejected": 0}, "retries": 0,
            "errors": {}, "actions": {"issued": 0, "run": 0, "refused": 0},
            "devices": dict.fromkeys(DEVICE_STATES, 0), "virtual_time": 0.0,
            "latency": Latency().to_json()}
