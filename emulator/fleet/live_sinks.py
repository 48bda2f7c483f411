"""Where a run's live snapshots go: ``--metrics-port``, ``--stats-csv``, and (a shard
process of ``--processes``) a file its parent reads, ``--live-stats-file``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from device_direct.clock import SystemClock
from emulator.fleet.spec import FleetSpecError

FROM_ENV: Any = object()  # ``--shard`` given without i/K: read it from the CI environment


class LiveSinks:
    """Feeds each snapshot to the metrics endpoint and the CSV writer that were asked for."""

    def __init__(self, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 csv_file: IO[str] | None = None, stats_file: Path | None = None) -> None:
        from emulator.fleet.metrics import LiveFigures, serve
        from emulator.fleet.stats_csv import StatsCsv

        self.figures: LiveFigures | None = None
        self.port: int | None = None
        self._httpd: Any = None
        self.stats_file = stats_file
        self._wall = SystemClock()
        self._written = float("-inf")
        self._last: dict[str, Any] | None = None
        self.csv = StatsCsv(csv_file) if csv_file is not None else None
        if metrics_port is not None:
            self.figures = LiveFigures()
            try:
                self._httpd = serve(self.figures, metrics_port, metrics_host)
                self.port = int(self._httpd.server_port)
            except OSError as exc:
                if self.csv is not None:
                    self.csv.close()
                raise FleetSpecError(f"--metrics-port {metrics_port}: cannot listen on "
                                     f"{metrics_host}:{metrics_port}: {exc}") from exc
            print(f"metrics: http://{metrics_host}:{self.port}/metrics", file=sys.stderr,
                  flush=True)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LiveSinks:
        csv_file = None
        if args.stats_csv is not None:
            try:
                csv_file = open(args.stats_csv, "w", encoding="utf-8", newline="")  # noqa: SIM115
            except OSError as exc:
                raise FleetSpecError(f"--stats-csv {args.stats_csv}: cannot write: {exc}"
                                     ) from exc
        return cls(metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                   csv_file=csv_file, stats_file=args.live_stats_file)

    @property
    def active(self) -> bool:
        return (self.figures is not None or self.csv is not None
                or self.stats_file is not None)

    def update(self, snapshot: dict[str, Any]) -> None:
        if self.figures is not None:
            self.figures.update(snapshot)
        if self.csv is not None:
            self.csv.row(snapshot)
        if self.stats_file is not None:
            self._last = snapshot
            if self._wall.monotonic() - self._written >= 0.5:
                self._write_file(snapshot)

    def _write_file(self, snapshot: dict[str, Any]) -> None:
        assert self.stats_file is not None
        self._written = self._wall.monotonic()
        tmp = self.stats_file.with_name(self.stats_file.name + ".tmp")
        try:  # whole or not at all: the parent may read it at any moment
            tmp.write_text(json.dumps(snapshot), encoding="utf-8")
            os.replace(tmp, self.stats_file)
        except OSError:
            pass  # live figures are a view; the run and its report do not depend on them

    def close(self) -> None:
        """Write the CSV's last row and close it; stop serving metrics."""
        if self.stats_file is not None and self._last is not None:
            self._write_file(self._last)
            self._last = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self.csv is not None:
            self.csv.close()
            self.csv = None
