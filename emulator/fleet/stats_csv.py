"""``--stats-csv FILE``: one row per interval of a run's live figures, to plot afterwards.

Like Locust's stats history: a header, then a row at most every ``interval_s`` of real
time (and one at the end) with the running totals. Columns are fixed (:data:`COLUMNS`).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import IO, Any

from device_direct.clock import Clock, SystemClock

COLUMNS = ("wall_s", "virtual_time", "device_days", "device_days_delivered",
           "device_days_per_s", "uploads_stored", "uploads_duplicate", "uploads_rejected",
           "retries", "request_errors", "actions_issued", "actions_run", "actions_refused",
           "devices_waiting", "devices_running", "devices_finished", "devices_crashed",
           "requests", "request_mean_ms")


class StatsCsv:
    """Writes rows to an open text file; call :meth:`row` often, it keeps the pace."""

    def __init__(self, fh: IO[str], *, interval_s: float = 1.0, wall: Clock | None = None
                 ) -> None:
        self.fh = fh
        self.interval_s = interval_s
        self.wall = wall or SystemClock()
        self.started = self.wall.monotonic()
        self._last = float("-inf")
        self._pending: dict[str, Any] | None = None
        self._writer = csv.writer(fh)
        self._writer.writerow(COLUMNS)

    def row(self, snapshot: dict[str, Any]) -> None:
        """Write ``snapshot`` if an interval has passed since the last row."""
        self._pending = snapshot
        now = self.wall.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write(snapshot, now)

    def close(self) -> None:
        """The last figures, then close the file."""
        if self._pending is not None:
            self._write(self._pending, self.wall.monotonic())
        self.fh.close()

    def _write(self, s: dict[str, Any], now: float) -> None:
        wall_s = now - self.started
        lat = s["latency"]
        vt = (datetime.fromtimestamp(s["virtual_time"], UTC).isoformat()
              if s["virtual_time"] else "")
        self._writer.writerow((
            f"{wall_s:.2f}", vt, s["device_days"], s["delivered"],
            f"{s['delivered'] / wall_s:.1f}" if wall_s > 0 else "0",
            s["uploads"]["stored"], s["uploads"]["duplicate"], s["uploads"]["rejected"],
            s["retries"], sum(s["errors"].values()), s["actions"]["issued"],
            s["actions"]["run"], s["actions"]["refused"], s["devices"]["waiting"],
            s["devices"]["running"], s["devices"]["finished"], s["devices"]["crashed"],
            lat["count"], f"{1000 * lat['sum'] / lat['count']:.2f}" if lat["count"] else ""))
        self.fh.flush()
