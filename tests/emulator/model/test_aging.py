"""Used printers: a history lived by the model's own day simulation, consistent with itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from emulator.clock import VirtualClock
from emulator.errors import ProfileError
from emulator.model.aging import age_device
from emulator.model.device import EmulatedDevice
from emulator.model.errors import DeviceStateError
from emulator.model.profile import PROFILE_DIR, load_profile, read_profile

# Five years: with per-device volumes (issue 18) a low-volume office printer can go two
# years without wearing a part out; in five every device of the class has.
DAYS = 5 * 365


def _aged(clock: VirtualClock, serial: str = "AGED0001", seed: int = 4) -> EmulatedDevice:
    return EmulatedDevice(load_profile("office-color"), serial=serial, clock=clock,
                          rng_seed=seed, state_dir=None, age_days=DAYS)


def test_an_aged_printer_tells_one_story() -> None:
    clock = VirtualClock()
    device = _aged(clock)
    snap = device.snapshot()
    today = clock.now().date()
    first = today - timedelta(days=DAYS)
    assert snap.identity.install_date == first
    c = snap.counters
    usage = device.profile.usage
    # About the profile's usage over two years (working days at pages_per_day, plus
    # weekends): far from zero, and not more than the days could hold.
    assert 0.3 * usage.pages_per_day * DAYS < c.total_impressions < 2 * usage.pages_per_day * DAYS
    assert c.total_impressions == c.black_impressions + c.color_impressions
    assert c.color_impressions > 0 and c.sheets <= c.total_impressions
    # Fault history: newest first, within the printer's life, impressions growing with time.
    assert len(snap.faults) == 40
    assert all(first <= f.at.date() < today for f in snap.faults)
    assert all(f.impressions <= c.total_impressions for f in snap.faults)
    pairs = list(zip(snap.faults, snap.faults[1:], strict=False))
    assert all(a.at >= b.at and a.impressions >= b.impressions for a, b in pairs)
    # Wear parts were replaced when they reached their life; none is past it.
    assert all(h.count < h.life for h in snap.hfsi)
    assert sum(h.replacements for h in snap.hfsi) > 0
    # Supplies are part way through their current units, some already swapped.
    assert all(0 <= s.level <= s.capacity for s in snap.supplies)
    assert any(s.installed_at is not None and s.installed_at.date() > first
               for s in snap.supplies)
    assert device.last_day == today - timedelta(days=1)


def test_the_same_seed_gives_the_same_history() -> None:
    a, b = _aged(VirtualClock()), _aged(VirtualClock())
    assert a.counters() == b.counters() and a.faults() == b.faults()
    other = _aged(VirtualClock(), seed=5)
    assert other.counters() != a.counters()


def test_only_a_new_printer_can_be_aged() -> None:
    device = _aged(VirtualClock())
    with pytest.raises(DeviceStateError, match="only a new device"):
        age_device(device, 10)


def test_profile_history_key_is_checked(tmp_path: Path) -> None:
    text = (PROFILE_DIR / "office-color.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("age_days = 0", "age_days = -3"))
    with pytest.raises(ProfileError, match=r"history.*age_days"):
        read_profile(bad)
    aged = tmp_path / "aged.toml"
    aged.write_text(text.replace("age_days = 0", "age_days = 30"))
    device = EmulatedDevice(read_profile(aged), serial="AGED0002", clock=VirtualClock(),
                            rng_seed=1, state_dir=None)
    assert device.counters().total_impressions > 0
