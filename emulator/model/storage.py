"""The device's non-volatile memory: one JSON file, replaced atomically.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then
renamed over the old file with ``os.replace`` (atomic on POSIX), and the directory is
fsync'ed so the rename itself survives a power cut. A reader therefore sees either the
old state or the new one, never half of each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emulator.errors import StateStorageError

STATE_FILE = "model-state.json"


class StateFile:
    """Reads and atomically writes one device's state file in ``directory``."""

    __slots__ = ("fsync", "path")

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateStorageError(f"{directory}: cannot create state directory: {exc}") from exc
        self.path = directory / STATE_FILE
        self.fsync = fsync

    def read(self) -> dict[str, Any] | None:
        """The stored state, or None when the device has never stored any."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateStorageError(f"{self.path}: cannot read: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateStorageError(f"{self.path}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StateStorageError(f"{self.path}: expected a JSON object")
        return data

    def write(self, data: dict[str, Any]) -> int:
        """Store ``data`` atomically; returns the number of bytes written."""
        blob = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(blob)
                while view:  # os.write may write less than asked
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            if self.fsync:
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise StateStorageError(f"{self.path}: cannot write state: {exc}") from exc
        return len(blob)
