"""Issue 17.6: a passing scenario's output is its summary, not its injected faults' logs;
fleet and scenario reports share one versioned JSON layout (docs/fleet-report.schema.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

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
    assert any(k.startswith("device_direct.agent: ") and "(tls-expired)" in k for k in kinds)
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
    each = [line for line in out.stderr.splitlines()
            if line.startswith(("ERROR device_direct", "WARNING device_direct"))]
    agent_errors = sum(n for k, n in data["scenario"]["expected_fault_logs"].items()
                       if k.startswith("device_direct."))
    assert len(each) >= agent_errors > 100


def test_an_unwritable_report_is_refused_before_the_run_not_a_traceback(
        tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--scenario",
                          str(SCENARIO), "--report", str(tmp_path / "no" / "r.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no directory" in out.stderr and "no/r.json" in out.stderr
    assert "scenario" not in out.stdout.lower()  # refused before it ran


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


async def test_a_supervisor_that_crashes_fails_the_run_instead_of_vanishing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A harness bug (here: absorbing a finished boot's counters) once ended every
    # device's supervisor silently: no reboots, payloads left queued, "no agent crashed".
    from emulator.faults.scenario import load_scenario
    from emulator.fleet.scenario_agent import DeviceSlot
    from emulator.fleet.scenario_run import run_scenario

    def broken(self: DeviceSlot, agent: object) -> None:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(DeviceSlot, "absorb", broken)
    report = await run_scenario(load_scenario(ROOT / "fixtures" / "scenarios" /
                                              "power-cut-at-upload-hour.toml"), tmp_path)
    crashed = [c for c in report.checks if c.name == "no agent crashed"]
    assert crashed and not crashed[0].ok
    assert "supervisor crashed: TypeError" in dict(crashed[0].failures).popitem()[1]
