"""EmulatedDevice commands: power, printing, faults, supplies, HFSI, banks, persistence."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from model_helpers import EPOCH, check_invariants, days_from, make_device

from device_direct.clock import SystemClock
from device_direct.errors import ModelError
from device_direct.model import DeviceModel, JobKind, PowerState, PrintJob, Severity
from emulator.clock import VirtualClock
from emulator.errors import ModelStateError, StateStorageError
from emulator.model import DeviceCommandError, DeviceStateError, load_profile
from emulator.model.profile import HfsiSpec


def test_implements_device_model() -> None:
    dev = make_device()
    assert isinstance(dev, DeviceModel)
    snap = dev.snapshot()
    check_invariants(snap)
    assert snap.power is PowerState.READY
    assert snap.identity.firmware["system"] == "100.002.057.09608"
    assert snap.identity.serial == "SN0001" and snap.identity.profile == "office-color"
    assert snap.network.mac.startswith("02:")


async def test_power_on_takes_boot_time_and_print_needs_power() -> None:
    clock = VirtualClock(EPOCH)
    dev = make_device(clock=clock, powered_on=False)
    assert dev.power is PowerState.OFF
    with pytest.raises(DeviceStateError):
        await dev.print_job(PrintJob())
    await dev.power_on()
    assert dev.snapshot().power is PowerState.READY
    assert clock.now() - EPOCH == timedelta(seconds=90)  # virtual time, not wall time
    with pytest.raises(DeviceStateError, match="power on while the device is ready"):
        await dev.power_on()
    await dev.power_off()
    with pytest.raises(ModelError):  # device_direct can catch the model's refusals
        await dev.reboot()


async def test_print_counts_impressions_sheets_and_kinds() -> None:
    dev = make_device(seed=7)
    r = await dev.print_job(PrintJob(pages=5, copies=2, duplex=True, color=True, large=True))
    c = dev.counters()
    if r.completed:
        assert (r.sheets, r.impressions) == (6, 12)  # 3 sheets a copy, both sides counted
    assert c.total_impressions == c.color_impressions == r.impressions
    assert c.total_large_impressions == r.impressions
    assert c.sheets == c.duplex_sheets == r.sheets
    await dev.print_job(PrintJob(kind=JobKind.SCAN, pages=4))
    await dev.print_job(PrintJob(kind=JobKind.COPY, pages=3))
    c2 = dev.counters()
    assert c2.scan_images == 4
    assert c2.copy_impressions >= 0 and c2.black_impressions == c2.copy_impressions
    assert dev.snapshot().jobs[0].kind is JobKind.COPY


async def test_named_job_keeps_given_names_and_synthetic_ones_are_filled() -> None:
    dev = make_device()
    await dev.print_job(PrintJob(pages=1, user="jdoe", job_name="secret.pdf",
                                 email="j.doe@corp.example"))
    dev.run_day(date(2026, 1, 6))
    jobs = dev.snapshot().jobs
    given = [j for j in jobs if j.user == "jdoe"]
    assert given and given[0].job_name == "secret.pdf" and given[0].email == "j.doe@corp.example"
    assert all(j.user and j.job_name and "@" in j.email for j in jobs)


async def test_jam_stops_printing_until_cleared() -> None:
    dev = make_device()
    fault = dev.jam()
    assert fault.code == "071-105" and fault.stops_machine
    assert dev.power is PowerState.FAULTED
    alert = next(a for a in dev.alerts() if a.code == 8)
    assert alert.severity is Severity.CRITICAL and alert.group == 13
    with pytest.raises(ModelStateError):
        await dev.print_job(PrintJob())
    dev.clear_fault()
    assert dev.snapshot().power is PowerState.READY
    assert not [a for a in dev.alerts() if a.code == 8]
    assert dev.faults()[0].code == "071-105"
    with pytest.raises(DeviceCommandError, match="known"):
        dev.inject_fault("999-999")


async def test_configuration_report_counts_one_impression() -> None:
    dev = make_device()
    text = await dev.print_configuration_report()
    assert dev.last_report == text
    assert "WorkCentre 7545" in text and "SN0001" in text and "100.002.057.09608" in text
    c = dev.counters()
    assert (c.total_impressions, c.report_impressions) == (1, 1)


def test_supply_alerts_raise_and_clear_and_indices_grow() -> None:
    dev = make_device("production", seed=3)
    seen: set[int] = set()
    top = 0
    for day in days_from(date(2026, 1, 5), 12):
        dev.run_day(day)
        for a in dev.alerts():
            if a.index not in seen:
                assert a.index > top
                seen.add(a.index)
                top = a.index
    assert seen, "a production press empties toner within days"
    codes = {a.code for a in dev.alerts()}
    assert codes & {1101, 1104, 1107, 1109, 10, 11, 1111, 1112}
    low = next(s for s in dev.snapshot().supplies if s.status != "ok")
    dev.replace_supply(low.index)
    after = next(s for s in dev.snapshot().supplies if s.index == low.index)
    assert (after.level, after.status) == (after.capacity, "ok")
    assert after.serial != low.serial
    assert not [a for a in dev.alerts() if a.group == 11 and a.group_index == low.index]


def test_hfsi_saturates_at_maximum_until_replaced() -> None:
    base = load_profile("office-mono")
    small = HfsiSpec(id="950-803", name="Tray 1 Feed Roll", life=100, rule="sheets",
                     maximum=150)
    # The profile's links to its other HFSI items go with them.
    prof = dataclasses.replace(
        base, hfsi=(small,),
        supplies=tuple(dataclasses.replace(s, hfsi="") for s in base.supplies),
        faults=tuple(dataclasses.replace(f, parts=()) for f in base.faults))
    dev = make_device(prof)
    for day in days_from(date(2026, 1, 5), 5):  # the maintenance visit is 5 working days out
        dev.run_day(day)
    item = dev.snapshot().hfsi[0]
    assert item.count == 150
    dev.replace_part("950-803")
    item = dev.snapshot().hfsi[0]
    assert (item.count, item.replacements) == (0, 1) and item.last_replaced_at is not None
    with pytest.raises(DeviceCommandError, match="unknown HFSI"):
        dev.replace_part("950-999")


def test_fault_history_keeps_newest_40() -> None:
    dev = make_device()
    for _ in range(45):
        dev.inject_fault("016-506")  # does not stop the machine
    faults = dev.faults()
    assert len(faults) == 40
    assert dev.power is PowerState.READY


def test_same_seed_same_day_byte_for_byte() -> None:
    days = days_from(date(2026, 1, 5), 10)
    blobs = []
    for _ in range(2):
        dev = make_device("office-color", seed=42)
        for d in days:
            dev.run_day(d)
        blobs.append(json.dumps(dev.export_state(), sort_keys=True).encode())
    assert blobs[0] == blobs[1]
    other = make_device("office-color", seed=43)
    for d in days:
        other.run_day(d)
    assert json.dumps(other.export_state(), sort_keys=True).encode() != blobs[0]


def test_day_does_not_depend_on_history() -> None:
    """Same seed and same starting state give the same day, whatever came before."""
    a = make_device(seed=5)
    b = make_device(seed=5)
    a.run_day(date(2026, 1, 5))
    b.run_day(date(2026, 1, 5))
    ra, rb = a.run_day(date(2026, 1, 9)), b.run_day(date(2026, 1, 9))
    assert ra == rb
    with pytest.raises(DeviceStateError, match="days must advance"):
        a.run_day(date(2026, 1, 9))


async def test_state_survives_power_loss(tmp_path: Path) -> None:
    clock = VirtualClock(EPOCH)
    dev = make_device(state_dir=tmp_path, clock=clock)
    await dev.print_job(PrintJob(pages=3))
    dev.run_day(date(2026, 1, 6))
    await dev.set_nvm("700-010", 30)
    before = dev.export_state()
    dev.power_loss()
    assert dev.power is PowerState.OFF
    again = make_device(state_dir=tmp_path, clock=clock, powered_on=False)
    assert again.export_state() == before == dev.export_state()
    await again.power_on()
    assert again.counters() == dev.counters()
    assert {n.id: n.value for n in again.snapshot().nvm}["700-010"] == 30
    with pytest.raises(StateStorageError, match="serial"):
        make_device(state_dir=tmp_path, clock=clock, serial="OTHER")


async def test_a_power_loss_stops_a_printing_job_at_once() -> None:
    # The job holds the device while its engine runs; a power-on after the loss used to
    # wait out every page. On real time (a device run by QA): 2,000 pages are 44 minutes.
    base = load_profile("office-color")
    prof = dataclasses.replace(base, engine=dataclasses.replace(base.engine,
                                                                boot_seconds=0.05))
    dev = make_device(prof, clock=SystemClock(), powered_on=False)
    await dev.power_on()
    before = dev.counters().total_impressions
    job = asyncio.create_task(dev.print_job(PrintJob(pages=2000)))
    await asyncio.sleep(0.05)  # the engine is running
    dev.power_loss()
    await asyncio.wait_for(dev.power_on(), timeout=10)
    with pytest.raises(DeviceStateError, match="power was lost while the job was printing"):
        await job
    assert dev.snapshot().power is PowerState.READY
    assert dev.counters().total_impressions >= before  # what was marked stays counted


async def test_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    make_device(state_dir=tmp_path)
    (tmp_path / "model-state.json").write_text("{not json")
    with pytest.raises(StateStorageError, match=r"model-state\.json"):
        make_device(state_dir=tmp_path)


async def test_nvm_rules() -> None:
    dev = make_device()
    with pytest.raises(DeviceCommandError, match="unknown NVM"):
        await dev.set_nvm("123-456", 1)
    with pytest.raises(DeviceCommandError, match="protected"):
        await dev.set_nvm("830-100", 1)
    with pytest.raises(DeviceCommandError, match=r"1\.\.240"):
        await dev.set_nvm("700-010", 999)


async def test_firmware_trial_bank_falls_back_after_power_loss(tmp_path: Path) -> None:
    clock = VirtualClock(EPOCH)
    dev = make_device(state_dir=tmp_path, clock=clock)
    await dev.write_inactive_bank("100.003.001.00001", b"image-bytes")
    assert dev.firmware().inactive.version == "100.003.001.00001"
    await dev.boot_bank("B", trial=True)
    fw = dev.firmware()
    assert (fw.active, fw.trial, fw.running_version) == ("B", True, "100.003.001.00001")
    assert dev.identity().firmware["system"] == "100.003.001.00001"
    with pytest.raises(DeviceStateError, match="fallback"):
        await dev.write_inactive_bank("x", b"")
    dev.power_loss()  # before commit: the watchdog boots the old bank
    await dev.power_on()
    fw = dev.firmware()
    assert (fw.active, fw.trial) == ("A", False)
    assert "watchdog" in dev.engineering_log()
    # A committed trial stays.
    await dev.boot_bank("B", trial=True)
    await dev.commit_bank()
    dev.power_loss()
    await dev.power_on()
    assert (dev.firmware().active, dev.firmware().trial) == ("B", False)
    with pytest.raises(DeviceStateError, match="no trial"):
        await dev.rollback_bank()


async def test_rollback_returns_to_previous_bank() -> None:
    dev = make_device()
    await dev.write_inactive_bank("2.0", b"x")
    await dev.boot_bank("B", trial=True)
    await dev.rollback_bank()
    fw = dev.firmware()
    assert (fw.active, fw.trial, fw.running_version) == ("A", False, "100.002.057.09608")
    with pytest.raises(DeviceCommandError, match="empty"):
        await make_device(serial="SN2").boot_bank("B", trial=True)


def test_service_fault_waits_for_technician() -> None:
    dev = make_device("office-color")
    dev.inject_fault("010-320")
    assert dev.power is PowerState.FAULTED
    # The fault was raised on 2026-01-05; the technician comes a day later.
    r = dev.run_day(date(2026, 1, 5))
    assert not r.ran and dev.power is PowerState.FAULTED
    r = dev.run_day(date(2026, 1, 6))
    assert r.ran and dev.snapshot().power is PowerState.SLEEPING
    assert "service visit" in dev.engineering_log()
