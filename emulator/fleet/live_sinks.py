"""Where a run's live snapshots go: ``--metrics-port`` and ``--stats-csv``."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

from emulator.fleet.spec import FleetSpecError

FROM_ENV: Any = object()  # ``--shard`` given without i/K: read it from the CI environment


class LiveSinks:
    """Feeds each snapshot to the metrics endpoint and the CSV writer that were asked for."""

    def __init__(self, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 csv_file: IO[str] | None = None) -> None:
        from emulator.fleet.metrics import LiveFigures, serve
        from emulator.fleet.stats_csv import StatsCsv

        self.figures: LiveFigures | None = None
        self.port: int | None = None
        self._httpd: Any = None
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
                   csv_file=csv_file)

    @property
    def active(self) -> bool:
        return self.figures is not None or self.csv is not None

    def update(self, snapshot: dict[str, Any]) -> None:
        if self.figures is not None:
            self.figures.update(snapshot)
        if self.csv is not None:
            self.csv.row(snapshot)

    def close(self) -> None:
        """Write the CSV's last row and close it; stop serving metrics."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self.csv is not None:
            self.csv.close()
            self.csv = None
