"""The device's local audit log: one JSON line per exchange with the server.

Kept in the data directory next to the outbox, bounded: when the file passes
``max_bytes`` it is renamed to ``audit.log.1`` (replacing the older one), so the log
never takes more than twice that. Writes are appends of one line each; a torn last line
after a power cut is skipped by readers.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024


class AuditLog:
    """Append-only JSON-lines log of server exchanges."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def record(self, at: datetime, event: str, **fields: Any) -> None:
        """Append one line; a disk problem is logged, never raised (it must not stop a send)."""
        line = json.dumps({"at": at.isoformat(), "event": event, **fields}, sort_keys=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    os.close(fd)
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(fd, (line + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit log %s not written: %s", self.path, exc)

    def read(self) -> list[dict[str, Any]]:
        """All complete lines, oldest first (the rotated file first)."""
        out: list[dict[str, Any]] = []
        for p in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                # Undecodable bytes (a power cut's garbage) spoil their own line only.
                text = p.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            for raw in text.splitlines():
                try:
                    entry = json.loads(raw)
                except json.JSONDecodeError:
                    continue  # a torn line from a power cut
                if isinstance(entry, dict):  # every line this log writes is an object
                    out.append(entry)
        return out
