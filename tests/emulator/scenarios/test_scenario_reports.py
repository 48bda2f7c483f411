"""Issue 17.6: a passing scenario's output is its summary, not its injected faults' logs;
fleet and scenario reports share one versioned JSON layout (docs/fleet-report.schema.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from emulator.fleet.report import DeviceOutcome, FleetReport, check

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs" / "fleet-report.schema.json").read_text("utf-8"))
SCENARIO = ROOT / "fixtures" / "scenarios" / "expired-server-certificate.toml"


def _scenario(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    tmp_path.mkdir(exist_ok=True)
    report = tmp_path / "r.json"
    out = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--scenario",
                          str(SCENARIO), "--report", str(report), "--no-progress", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    return out, json.loads(report.read_text("utf-8"))


def test_a_passing_scenario_counts_its_fault_logs_instead_of_printing_them(
        tmp_path: Path) -> None:
    out, data = _scenario(tmp_path)
    assert "ERROR" not in out.stderr, out.stderr[:2000]
    kinds = data["scenario"]["expected_fault_logs"]
    total = sum(kinds.values())
    assert total > 100 and data["totals"]["expected_fault_logs"] == total
    assert any("registration failed (tls-expired)" in k for k in kinds)
    assert f"fault log lines  {total} expected ({len(kinds)} kinds" in out.stdout
    jsonschema.validate(data, SCHEMA)
    assert data["kind"] == "scenario" and data["version"] == 2 and "checks" not in data


def test_info_shows_one_line_per_kind_and_debug_shows_each(tmp_path: Path) -> None:
    out, data = _scenario(tmp_path / "info", "--log-level", "info")
    kinds = data["scenario"]["expected_fault_logs"]
    once = [line for line in out.stderr.splitlines() if "expected fault" in line]
    assert len(once) == len(kinds) > 1
    assert not [line for line in out.stderr.splitlines()
                if line.startswith(("ERROR device_direct", "WARNING device_direct"))]
    out, data = _scenario(tmp_path / "debug", "--log-level", "debug")
    each = [line for line in out.stderr.splitlines() if line.startswith("ERROR device_direct")]
    assert len(each) >= data["scenario"]["expected_fault_logs"][
        "device_direct.agent: registration failed (tls-expired): ...; retry in ... s"]


def test_an_unwritable_report_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--scenario",
                          str(SCENARIO), "--report", str(tmp_path / "no" / "r.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert "cannot write the report" in out.stderr and "no/r.json" in out.stderr


def test_fleet_report_has_the_same_envelope_and_reads_back() -> None:
    outcome = DeviceOutcome(
        index=0, serial="S0", profile="p", time_zone="UTC", device_id="d", payloads_built=2,
        uploads_stored=1, uploads_duplicate=0, uploads_rejected=0, send_failures=0,
        registrations=1, bytes_sent=10, actions_run=0, action_polls=0, firmware_checks=0,
        faults=0, jams=0, queued=1, finished=False)
    report = check(FleetReport(devices=1, days=2, seed=1, mix="p:1", shards=("1/1",),
                               outcomes=(outcome,), wall_s=1.0), complete_fleet=True)
    data = json.loads(json.dumps(report.to_json()))
    jsonschema.validate(data, SCHEMA)
    assert data["kind"] == "fleet" and not data["ok"]
    assert FleetReport.from_json(data) == report
