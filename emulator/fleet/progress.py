"""A one-line progress bar on stderr, redrawn in place; no dependency."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

_WIDTH = 30


def render(done: int, total: int, now: datetime | None, unit: str = "device-days delivered") -> str:
    """The bar as text, e.g.
    ``[#####.....] 120/500 device-days delivered  virtual 2026-01-07 03:00 UTC``."""
    total = max(total, 1)
    filled = min(_WIDTH, _WIDTH * done // total)
    when = f"  virtual {now:%Y-%m-%d %H:%M} UTC" if now is not None else ""
    return f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {done}/{total} {unit}{when}"


class ProgressBar:
    """Draws :func:`render` on a terminal; silent unless ``enabled``."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 unit: str = "device-days delivered") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        # Default: only on a terminal, so logs and CI output stay clean.
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = ""

    def __call__(self, done: int, total: int, now: datetime | None) -> None:
        if not self.enabled:
            return
        line = render(done, total, now, self.unit)
        if line != self._last:
            self.stream.write("\r" + line)
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        """End the bar's line (call once at the end)."""
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""
