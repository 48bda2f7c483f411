"""The local audit log: one JSON line per exchange, bounded by rotation, never fatal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_direct.audit import AuditLog

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_lines_are_appended_and_read_back_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for n in range(3):
        log.record(T0, "upload", upload_id=f"u{n}", status=201)
    lines = log.read()
    assert [x["upload_id"] for x in lines] == ["u0", "u1", "u2"]
    assert lines[0] == {"at": T0.isoformat(), "event": "upload", "upload_id": "u0",
                        "status": 201}


def test_the_log_rotates_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=1000)
    for n in range(200):
        log.record(T0, "poll", n=n)
    assert path.stat().st_size <= 1000 + 100  # one line past the limit at most
    assert (tmp_path / "audit.log.1").stat().st_size <= 1000 + 100
    kept = [x["n"] for x in log.read()]
    assert kept == list(range(kept[0], 200))  # the newest, in order, none missing
    assert len(kept) > 10


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record(T0, "upload", n=1)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"at": "2026-03-01T02:00:00+00:00", "ev')  # power cut mid-write
    assert [x["n"] for x in log.read()] == [1]


def test_garbage_and_lines_that_are_not_objects_are_skipped(tmp_path: Path) -> None:
    # What a power cut or a stray write leaves: bytes that are not UTF-8, and JSON that
    # is not one of the log's objects. `device-direct audit` must still read the rest.
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record(T0, "upload", n=1)
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe\x00garbage\n5\n\"text\"\n[1, 2]\nnull\n")
    log.record(T0, "upload", n=2)
    assert [x["n"] for x in log.read()] == [1, 2]


def test_a_disk_problem_is_logged_not_raised(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(tmp_path / "missing-dir" / "audit.log")
    with caplog.at_level(logging.ERROR):
        log.record(T0, "upload", n=1)
    assert "audit log" in caplog.text and "not written" in caplog.text
