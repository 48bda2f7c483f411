"""Every shipped scenario passes, and its expectations fail, naming the devices, when
the behaviour they guard is broken on purpose."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from device_direct.transport import Transport, UploadResult
from emulator.faults.scenario import load_scenario
from emulator.fleet.cli import main
from emulator.fleet.scenario_report import ScenarioReport
from emulator.fleet.scenario_run import run_scenario

SCENARIOS = Path(__file__).resolve().parents[3] / "fixtures" / "scenarios"
FIELD = ["power-cut-at-upload-hour", "flaky-office-network", "server-outage",
         "expired-server-certificate", "bad-firmware-campaign", "jam-storm-and-supplies",
         "clock-skew-and-full-disk"]


async def _run(name: str, tmp_path: Path) -> ScenarioReport:
    return await run_scenario(load_scenario(SCENARIOS / f"{name}.toml"), tmp_path)


def _failed(report: ScenarioReport, check: str) -> dict[str, str]:
    found = [c for c in report.checks if c.name.startswith(check)]
    assert found, f"no check named {check!r}"
    assert not found[0].ok, f"{check!r} held although the behaviour was broken"
    return dict(found[0].failures)


def test_at_least_six_field_scenarios_are_shipped_with_a_description() -> None:
    shipped = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    assert set(FIELD) <= set(shipped)
    for name in shipped:
        scenario = load_scenario(SCENARIOS / f"{name}.toml")
        assert scenario.description.startswith("Field problem:"), name
        assert any(e.check == "none_lost" for e in scenario.expectations), name


@pytest.mark.parametrize("name", FIELD)
async def test_shipped_scenario_passes(name: str, tmp_path: Path) -> None:
    report = await _run(name, tmp_path)
    assert report.ok, "\n".join(report.lines())
    assert report.faults_injected > 0
    assert report.payloads_lost == 0 and report.stored_twice == 0
    assert report.payloads_queued == report.uploads_stored > 0


async def test_resending_an_acknowledged_payload_under_a_new_id_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Transport.upload
    resent: set[str] = set()

    async def upload_twice(self: Transport, zip_bytes: bytes, upload_id: str) -> UploadResult:
        result = await real(self, zip_bytes, upload_id)
        if result.status == "stored" and upload_id not in resent:
            # The broken device sends the same payload again as if it were new.
            from device_direct.core.payload import pack_zip, read_payload

            new_id = str(uuid.uuid5(uuid.NAMESPACE_URL, upload_id))
            resent.add(new_id)
            xml = read_payload(zip_bytes).replace(f'uploadId="{upload_id}"'.encode(),
                                                  f'uploadId="{new_id}"'.encode(), 1)
            await real(self, pack_zip(xml), new_id)
        return result

    monkeypatch.setattr(Transport, "upload", upload_twice)
    report = await _run("power-cut-at-upload-hour", tmp_path)
    failures = _failed(report, "every payload stored exactly once")
    assert failures and report.stored_twice > 0
    serial, why = next(iter(failures.items()))
    assert serial.startswith("DD") and "stored 2 times" in why


async def test_a_server_that_drops_a_stored_upload_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.server.storage import Storage

    real = Storage.store_upload
    calls = [0]

    def forgetful(self: Storage, *args: Any, **kwargs: Any) -> bool:
        calls[0] += 1
        if calls[0] % 9 == 0:
            return True  # "stored" - but it is not
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Storage, "store_upload", forgetful)
    report = await _run("power-cut-at-upload-hour", tmp_path)
    failures = _failed(report, "no upload lost")
    # A forgotten upload the device re-sent after a power cut (upload-acked) is stored
    # then; the others are lost.
    assert 1 <= report.payloads_lost <= calls[0] // 9
    assert len(failures) >= 1
    assert all("never stored" in why for why in failures.values())


async def test_a_verifier_that_accepts_a_bad_image_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import device_direct.firmware

    monkeypatch.setattr(device_direct.firmware, "check_image", lambda manifest, image: None)
    report = await _run("bad-firmware-campaign", tmp_path)
    failures = _failed(report, "no device runs firmware 101.6.0")
    assert len(failures) == 8
    assert all("101.6.0" in why for why in failures.values())


def test_a_failed_expectation_prints_the_devices_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "never.toml"
    scenario.write_text('''
[scenario]
name = "fuser-never-fails"
description = "Field problem: none; an expectation that cannot hold."
[fleet]
devices = 3
days = 2
mix = "office-mono:100"
[[event]]
kind = "fault"
code = "016-315"
day = 1
time = "12:00"
count_devices = 1
[[expect]]
check = "fault_reported"
code = "010-351"
[[expect]]
check = "none_lost"
''')
    code = main(["--scenario", str(scenario), "--no-progress", "--work-dir",
                 str(tmp_path / "work"), "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] devices reported fault 010-351: 3 of 3 devices" in out
    assert out.count("no stored payload carries 010-351") == 3
    assert "[ok  ] no upload lost" in out
    assert "payloads lost    0" in out and "stored twice     0" in out
    assert '"ok": false' in (tmp_path / "r.json").read_text()


async def test_same_seed_same_result(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "power-cut-at-upload-hour.toml")
    a = await run_scenario(scenario, tmp_path / "a")
    b = await run_scenario(scenario, tmp_path / "b")
    for field in ("injected", "skipped", "payloads_queued", "uploads_stored", "reboots",
                  "payloads_lost", "stored_twice"):
        assert getattr(a, field) == getattr(b, field), field
    assert [c.failures for c in a.checks] == [c.failures for c in b.checks]
