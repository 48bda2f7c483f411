"""sysContact, sysName and sysLocation: the settings SNMP may change.

The device model has no place for them (they belong to the network controller, not the
print engine), so the agent keeps them here, optionally in a small JSON file in the
device's state directory so that a SET survives a restart, as on a real printer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from emulator.errors import StateStorageError
from emulator.snmp.printer_mib import SystemText

MAX_LEN = 255  # DisplayString (SIZE (0..255))
FIELDS = ("contact", "name", "location")


def check_display_string(field: str, value: bytes) -> str:
    """Decode an SNMP DisplayString; ValueError names the field and what is wrong."""
    if len(value) > MAX_LEN:
        raise ValueError(f"{field}: at most {MAX_LEN} octets, got {len(value)}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{field}: not UTF-8 text") from None
    if not all(ch.isprintable() for ch in decoded):
        raise ValueError(f"{field}: control characters are not allowed")
    return decoded


class SystemSettings:
    """The three writable system strings, persisted to ``path`` when one is given."""

    __slots__ = ("_path", "_values", "revision")

    def __init__(self, *, name: str, contact: str = "", location: str = "",
                 path: Path | None = None) -> None:
        self._path = path
        self._values = {"contact": contact, "name": name, "location": location}
        self.revision = 0  # grows with every update (the agent's snapshot follows it)
        if path is not None and path.exists():
            self._load(path)

    def current(self) -> SystemText:
        """The values now."""
        v = self._values
        return SystemText(contact=v["contact"], name=v["name"], location=v["location"])

    def update(self, changes: dict[str, str]) -> None:
        """Apply ``changes`` (field -> text) all at once, then persist them."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown system setting(s): {sorted(unknown)}")
        for field, value in changes.items():
            check_display_string(field, value.encode("utf-8"))
        self._values.update(changes)
        self.revision += 1
        if self._path is not None:
            self._save(self._path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateStorageError(f"{path}: cannot read SNMP settings: {exc}") from exc
        if not isinstance(data, dict):
            raise StateStorageError(f"{path}: expected a JSON object")
        for field in FIELDS:
            value = data.get(field, self._values[field])
            if not isinstance(value, str):
                raise StateStorageError(f"{path}: field '{field}' must be a string")
            try:
                check_display_string(field, value.encode("utf-8"))
            except ValueError as exc:
                raise StateStorageError(f"{path}: {exc}") from None
            self._values[field] = value

    def _save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self._values, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise StateStorageError(f"{path}: cannot write SNMP settings: {exc}") from exc
