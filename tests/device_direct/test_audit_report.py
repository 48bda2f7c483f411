"""The audit log as CSV and HTML: ``device_direct.audit_report`` and ``device-direct audit``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_direct.__main__ import main
from device_direct.audit import AuditLog
from device_direct.audit_report import rows_of, to_csv, to_html

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _log(data_dir: Path) -> AuditLog:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = AuditLog(data_dir / "audit.log")
    log.record(T0, "register", ok=True, device_id="dd-1")
    log.record(T0, "upload", upload_id="u1", sequence=1, result="stored", bytes=5120)
    log.record(T0, "upload", upload_id="u2", result="failed", cause="ConnectError",
               error="=HYPERLINK(\"http://evil\")")
    log.record(T0, "action-result", action_id="a1", type="<script>x</script>",
               status="rejected")
    return log


def test_rows_name_exchange_result_and_size(tmp_path: Path) -> None:
    rows = rows_of(_log(tmp_path).read())
    assert [(r.exchange, r.result, r.bytes) for r in rows] == [
        ("register", "ok", None), ("upload", "stored", 5120), ("upload", "failed", None),
        ("action-result", "rejected", None)]
    assert "device_id=dd-1" in rows[0].detail


def test_csv_reads_back_and_defuses_formulas(tmp_path: Path) -> None:
    text = to_csv(rows_of(_log(tmp_path).read()))
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["time", "exchange", "result", "bytes", "detail"]
    assert table[2][3] == "5120" and len(table) == 5
    failed = table[3][4]
    assert failed.startswith("cause=ConnectError")  # the formula sits inside, not first
    assert to_csv(rows_of([{"at": "=1+1", "event": "x"}])).splitlines()[1].startswith("'=1+1")


def test_html_escapes_everything_and_has_no_outside_reference(tmp_path: Path) -> None:
    page = to_html(rows_of(_log(tmp_path).read()), title="<b>audit</b>")
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "&lt;b&gt;audit&lt;/b&gt;" in page
    assert "src=" not in page and "href=" not in page
    assert "4 exchanges; 5120 bytes" in page


def test_the_bytes_sent_count_uploads_only() -> None:
    # A firmware download's row carries the bytes it received, not payload sent.
    rows = rows_of([
        {"at": "t", "event": "upload", "result": "stored", "bytes": 100},
        {"at": "t", "event": "upload", "result": "duplicate", "bytes": 20},
        {"at": "t", "event": "firmware-update", "step": "downloaded", "bytes": 50_000_000},
        {"at": "t", "event": "firmware-update", "step": "interrupted", "bytes": 1_000},
    ])
    assert "4 exchanges; 120 bytes of payload sent." in to_html(rows, title="t")


def test_device_direct_audit_command(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _log(tmp_path / "data")
    config = tmp_path / "agent.toml"
    config.write_text('[server]\nurl = "https://dd.example.com"\n'
                      f'[device]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["audit", "--config", str(config), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "time,exchange,result,bytes,detail"
    html_file = tmp_path / "audit.html"
    assert main(["audit", "--config", str(config), "--format", "html",
                 "-o", str(html_file)]) == 0
    assert html_file.read_text().startswith("<!DOCTYPE html>")
    assert main(["audit", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["audit", "--config", str(config), "--format", "pdf"])
    assert usage.value.code == 2
