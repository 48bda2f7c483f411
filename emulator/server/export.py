"""Stored payloads back out of the server's database, as the zips devices sent.

``python -m emulator server --state-dir D export [--device ID] [--since T] OUT_DIR``
writes every selected upload to ``OUT_DIR/<device id>/<sequence>-<upload id>.zip``
(byte for byte what the device sent, its SHA-256 checked against the one recorded on
arrival) and an index, ``OUT_DIR/uploads.json``: one record per zip with the facts
the server stored and the file's path relative to ``OUT_DIR``. Each zip is written to a
temporary name and renamed, so an interrupted export never leaves half a zip under a
real name, and running it again rewrites the same files.

``--since`` is compared with the time the server *received* the upload (its own clock),
not the generated-at time the device wrote into it.

Without ``--device`` the second data path is exported too: each device manager's
payloads under ``OUT_DIR/managers/<manager id>/<serial>/<sequence>-<upload id>.zip``
(index records with ``"source": "manager"``; the devices' have ``"source": "device"``),
and ``OUT_DIR/printers.json``: the combination view, one entry per printer (serial,
model) with its sources, its billing meters per day (one source a day) and the
disagreements between sources (see ``sources.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from emulator.errors import ServerError, StateStorageError
from emulator.server.storage import Storage

INDEX_NAME = "uploads.json"
PRINTERS_NAME = "printers.json"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    out_dir: Path
    uploads: int
    devices: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return {"out_dir": str(self.out_dir), "uploads": self.uploads,
                "devices": self.devices, "bytes": self.bytes,
                "index": str(self.out_dir / INDEX_NAME)}


def parse_since(text: str) -> datetime:
    """``2026-12-01`` or ``2026-12-01T08:00:00Z`` (no zone: UTC); ValueError naming
    ``--since`` otherwise."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since: {text!r} is not an ISO 8601 date or time "
                         "(e.g. 2026-12-01 or 2026-12-01T08:00:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def open_state(state_dir: Path) -> Storage:
    """The database of an existing state directory (never creates one)."""
    path = state_dir / "server.sqlite3"
    if not path.is_file():
        raise ServerError(f"no server state in {state_dir} (no {path.name}); give the "
                          "--state-dir the server ran with")
    return Storage(path)


def export_uploads(storage: Storage, out_dir: Path, *, device_id: str | None = None,
                   since: datetime | None = None) -> ExportResult:
    """Write the selected uploads' zips and the index under ``out_dir``."""
    if device_id is not None and storage.device(device_id) is None:
        raise ValueError(f"--device: no device {device_id!r} in {storage.path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, object]] = []
    devices: set[str] = set()
    total = 0
    for record, body in storage.iter_upload_zips(device_id=device_id, since=since):
        if hashlib.sha256(body).hexdigest() != record["sha256"]:
            raise StateStorageError(
                f"{storage.path}: upload {record['upload_id']} does not match the SHA-256 "
                "recorded when it arrived; the database is damaged")
        relative = Path(_safe(record["device_id"])) / (
            f"{int(record['sequence']):08d}-{_safe(record['upload_id'])}.zip")
        _write_atomically(out_dir / relative, body)
        index.append({**record, "source": "device", "file": relative.as_posix()})
        devices.add(record["device_id"])
        total += len(body)
    if device_id is None:
        total += _export_managers(storage, out_dir, index, since)
    _write_atomically(out_dir / INDEX_NAME,
                      (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    return ExportResult(out_dir=out_dir, uploads=len(index), devices=len(devices), bytes=total)


def _export_managers(storage: Storage, out_dir: Path, index: list[dict[str, object]],
                     since: datetime | None) -> int:
    """The managers' uploads into ``index`` and ``printers.json``; the bytes written."""
    from emulator.server.sources import Sources

    sources = Sources(storage.path)
    total = 0
    try:
        cutoff = since.astimezone(UTC).isoformat(timespec="seconds").replace(
            "+00:00", "Z") if since is not None else None
        for record in sources.iter_upload_zips():
            body = record.pop("zip")
            if cutoff is not None and record["received_at"] < cutoff:
                continue
            if hashlib.sha256(body).hexdigest() != record["sha256"]:
                raise StateStorageError(
                    f"{storage.path}: manager upload {record['upload_id']} does not match "
                    "the SHA-256 recorded when it arrived; the database is damaged")
            name = f"{int(record['sequence']):08d}-{_safe(record['upload_id'])}.zip"
            relative = Path("managers") / _safe(record["manager_id"]) / _safe(
                record["serial"]) / name
            _write_atomically(out_dir / relative, body)
            index.append({**record, "source": "manager", "file": relative.as_posix()})
            total += len(body)
        printers = [{**p, "billing": sources.billing(p["serial"], p["model"])}
                    for p in sources.printers()]
    finally:
        sources.close()
    _write_atomically(out_dir / PRINTERS_NAME,
                      (json.dumps(printers, indent=2, sort_keys=True) + "\n").encode())
    return total


def _safe(name: str) -> str:
    # Ids are the server's own (dd-..., UUIDs); anything else must not walk out of OUT_DIR.
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned.lstrip(".") or "_"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
