"""Shared helpers for the emulated-device tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from device_direct.clock import Clock
from device_direct.model import SPECIAL_LEVELS, DeviceSnapshot
from emulator.clock import VirtualClock
from emulator.model import EmulatedDevice, Profile, load_profile

EPOCH = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def make_device(profile: str | Profile = "office-color", *, seed: int = 1, serial: str = "SN0001",
                state_dir: Path | None = None, clock: Clock | None = None,
                powered_on: bool = True) -> EmulatedDevice:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    return EmulatedDevice(prof, serial=serial, clock=clock or VirtualClock(EPOCH),
                          rng_seed=seed, state_dir=state_dir, powered_on=powered_on,
                          fsync=False)


def days_from(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def check_invariants(snap: DeviceSnapshot) -> None:
    """What must hold for any snapshot of any device."""
    c = snap.counters
    assert c.total_impressions == c.black_impressions + c.color_impressions
    assert c.total_large_impressions == c.black_large_impressions + c.color_large_impressions
    assert c.total_large_impressions <= c.total_impressions
    assert c.duplex_sheets <= c.sheets <= c.total_impressions + c.report_impressions
    for s in snap.supplies:
        assert 0 <= s.level <= s.capacity or s.level in SPECIAL_LEVELS, s
        if s.level == 0:
            assert s.status in ("empty", "full"), s
    for h in snap.hfsi:
        assert 0 <= h.count <= h.maximum, h
    assert len(snap.faults) <= 40
    times = [f.at for f in snap.faults]
    assert times == sorted(times, reverse=True), "fault history must be newest first"
    imps = [f.impressions for f in snap.faults]
    assert imps == sorted(imps, reverse=True)
    assert all(f.impressions <= c.total_impressions for f in snap.faults)
    indices = [a.index for a in snap.alerts]
    assert len(set(indices)) == len(indices)
