"""A device's days as a billing (AMR) and replenishment (ASR) backend reads them.

The property test runs one device in a random zone for weeks to months on a virtual
clock, the way a fleet does: each local day is applied at the end of its office hours,
and a payload snapshot is taken the next local morning. It then reads the snapshots
back as a service engineer would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from hypothesis import given, settings
from hypothesis import strategies as st
from model_helpers import check_invariants

from device_direct.model import DeviceSnapshot, PowerState, PrintJob
from emulator.clock import VirtualClock
from emulator.model import EmulatedDevice, Profile, load_profile
from emulator.model.calendar import zone_facts

PROFILES = ("office-color", "office-mono", "production")
ZONES = ("Europe/Berlin", "Asia/Tokyo", "America/Chicago", "Australia/Sydney",
         "America/Los_Angeles", "Asia/Kolkata", "UTC")
COLOURS = ("cyan", "magenta", "yellow")


def _events(snap: DeviceSnapshot, dev: EmulatedDevice) -> list[datetime]:
    out = [f.at for f in snap.faults] + [a.raised_at for a in snap.alerts]
    out += [s.installed_at for s in snap.supplies if s.installed_at is not None]
    out += [h.last_replaced_at for h in snap.hfsi if h.last_replaced_at is not None]
    out += [j.at for j in snap.jobs] + [r.at for r in dev.replacements()]
    return out


def _working_days_between(country: str, first: date, last: date) -> int:
    """Working days after ``first`` up to and including ``last`` (weekends, holidays)."""
    table = holidays.country_holidays(country, years=range(first.year, last.year + 1)) \
        if country else {}
    n, d = 0, first
    while d < last:
        d += timedelta(days=1)
        if d.weekday() < 5 and d not in table:
            n += 1
    return n


@settings(max_examples=20, deadline=None)
@given(profile=st.sampled_from(PROFILES), seed=st.integers(0, 2**32),
       zone=st.sampled_from(ZONES), start=st.dates(date(2025, 1, 1), date(2029, 12, 1)),
       days=st.integers(20, 150), upload_hour=st.integers(0, 5))
def test_a_year_of_payloads_reads_back_true(profile: str, seed: int, zone: str, start: date,
                                            days: int, upload_hour: int) -> None:
    prof = load_profile(profile)
    tz = ZoneInfo(zone)
    end_hour = prof.usage.office_end_hour
    first_end = datetime.combine(start, time(0), tz) + timedelta(hours=end_hour)
    clock = VirtualClock(first_end.astimezone(UTC) - timedelta(days=1))
    dev = EmulatedDevice(prof, serial=f"PT{seed % 10**8:08d}", clock=clock, rng_seed=seed,
                         state_dir=None, fsync=False, time_zone=zone)
    assert dev.time_zone == zone
    country = zone_facts(zone).country
    lead = dev.traits.lead_time_days
    blocking = [(i, s.colorant in COLOURS and s.rule == "coverage")
                for i, s in enumerate(prof.supplies) if s.stops_marking]
    life_seen: dict[str, date] = {}
    prev: DeviceSnapshot | None = None
    for k in range(days):
        day = start + timedelta(days=k)
        day_end = datetime.combine(day, time(0), tz) + timedelta(hours=end_hour)
        clock.advance_to(day_end.astimezone(UTC))
        dev.run_day(day)
        upload = datetime.combine(day + timedelta(days=1), time(upload_hour), tz)
        clock.advance_to(upload.astimezone(UTC))
        snap = dev.snapshot()
        check_invariants(snap)
        # Nothing in a payload is later than the instant it was generated.
        late = [e for e in _events(snap, dev) if e > snap.taken_at]
        assert not late, (snap.taken_at, late[:3])
        if prev is not None:
            now, before = snap.counters, prev.counters
            for name in now.__dataclass_fields__:
                assert getattr(now, name) >= getattr(before, name), name
            # No page is counted while a blocking supply stays empty (same unit).
            for i, colour_only in blocking:
                a, b = prev.supplies[i], snap.supplies[i]
                if a.status in ("empty", "full") and a.serial == b.serial:
                    if colour_only:
                        assert now.color_impressions == before.color_impressions, (b, day)
                    else:
                        assert now.total_impressions == before.total_impressions, (b, day)
            # A replaced unit has a new serial.
            for a, b in zip(prev.supplies, snap.supplies, strict=True):
                if a.installed_at != b.installed_at:
                    assert a.serial != b.serial, (a, b)
        # An HFSI item at its life has an overdue-maintenance alert until a visit
        # replaces it, and the visit comes within the profile's delay.
        alerts = {a.description.split()[0] for a in snap.alerts if a.code == 11}
        for h in snap.hfsi:
            if h.count >= h.life:
                assert h.id in alerts, (h, snap.alerts)
                seen = life_seen.setdefault(h.id, day)
                delay = prof.engine.maintenance_response_days
                assert (day - seen).days <= 2 * delay + 10, (h, seen, day)
            else:
                life_seen.pop(h.id, None)
        prev = snap
    # Every delivered unit came no earlier than the order's lead time allows.
    for r in dev.replacements():
        if r.ordered_at is None:
            continue
        assert r.due is not None
        ordered = r.ordered_at.astimezone(tz).date()
        swapped = r.at.astimezone(tz).date()
        assert swapped >= r.due, r
        assert _working_days_between(country, ordered, r.due) == lead, (r, lead)


def _device(profile: str | Profile, zone: str, *, seed: int = 7, serial: str = "YR0001",
            start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> EmulatedDevice:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    return EmulatedDevice(prof, serial=serial, clock=VirtualClock(start), rng_seed=seed,
                          state_dir=None, fsync=False, time_zone=zone)


def _no_spares(name: str) -> Profile:
    base = load_profile(name)
    return dataclasses.replace(base, usage=dataclasses.replace(base.usage, spare_share=0.0))


def test_a_tokyo_device_works_tokyo_hours_and_skips_japanese_holidays() -> None:
    dev = _device("office-color", "Asia/Tokyo")
    tz = ZoneInfo("Asia/Tokyo")
    pages = {}
    for k in range(60):
        day = date(2026, 4, 1) + timedelta(days=k)
        pages[day] = dev.run_day(day).impressions
        for f in dev.faults():
            local = f.at.astimezone(tz)
            assert 8 <= local.hour < 18 or (local.hour, local.minute) == (18, 0), f
    working = sorted(v for d, v in pages.items() if d.weekday() < 5
                     and d not in holidays.country_holidays("JP", years=2026))
    # Golden Week: Constitution Day, Greenery Day, Children's Day (3-5 May 2026) and
    # the substitute holiday on Wednesday 6 May fall on days that would be worked.
    for d in (date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6)):
        assert pages[d] < working[len(working) // 2] / 4, (d, pages[d])


def test_good_friday_in_berlin_is_not_a_working_day() -> None:
    devices = [_device("office-color", "Europe/Berlin", seed=s, serial=f"GF{s:04d}")
               for s in range(10)]
    thursday = friday = 0
    for dev in devices:
        for k in range(5):
            day = date(2026, 3, 30) + timedelta(days=k)
            r = dev.run_day(day)
            thursday += r.impressions if day == date(2026, 4, 2) else 0
            friday += r.impressions if day == date(2026, 4, 3) else 0
    assert friday * 5 < thursday, (friday, thursday)


def test_an_empty_toner_stops_marking_until_the_delivery_is_swapped_in() -> None:
    dev = _device(_no_spares("office-mono"), "Europe/Berlin")
    assert not dev.traits.keeps_spare
    lead = dev.traits.lead_time_days
    drained = asyncio.run(_drain_black(dev))
    toner = dev.snapshot().supplies[0]
    assert toner.status == "empty" and drained
    day = date(2026, 1, 5)  # a Monday; the order went out on 1 January (a holiday)
    stopped = []
    while True:
        before = dev.counters().total_impressions
        r = dev.run_day(day)
        if dev.snapshot().supplies[0].serial != toner.serial:
            break  # delivered and swapped in this morning
        assert dev.counters().total_impressions == before and r.impressions == 0
        assert any(a.code == 1101 for a in dev.alerts()), "the empty alert stays"
        stopped.append(day)
        day += timedelta(days=1)
        assert len(stopped) < 30
    assert stopped and dev.pages_unprinted > 0
    swap = next(r for r in dev.replacements() if r.kind == "supply" and r.index == 1)
    assert swap.ordered_at is not None and swap.due is not None
    assert _working_days_between("DE", date(2026, 1, 1), swap.due) == lead
    assert swap.at.astimezone(ZoneInfo("Europe/Berlin")).date() == day == swap.due
    assert not any(a.code == 1101 for a in dev.alerts())
    assert r.impressions > 0  # printing goes on from the swap


async def _drain_black(dev: EmulatedDevice) -> bool:
    for _ in range(200):
        if dev.snapshot().supplies[0].status == "empty":
            return True
        dev.clear_fault()
        result = await dev.print_job(PrintJob(pages=500, coverage=1.0))
        assert result.completed or dev.snapshot().supplies[0].status == "empty" \
            or result.fault is not None
    return False


def test_a_service_fault_brings_a_technician_who_replaces_the_part_and_power_cycles() -> None:
    dev = _device("office-color", "America/Chicago",
                  start=datetime(2026, 1, 9, 18, tzinfo=UTC))  # Friday noon in Chicago
    before = dev.snapshot()
    power_on = int(dict((p.name, p.value) for p in before.properties)["power-on-count"])
    dev.inject_fault("010-320")  # fuser over-temperature: needs service
    assert dev.power is PowerState.FAULTED
    day = date(2026, 1, 10)
    while dev.power is PowerState.FAULTED:
        r = dev.run_day(day)
        assert r.impressions == 0 or dev.power is not PowerState.FAULTED
        day += timedelta(days=1)
        assert day < date(2026, 1, 20)
    visit_day = day - timedelta(days=1)
    assert visit_day.weekday() < 5  # no technician on a weekend
    extra = dev.traits.service_extra_days
    assert visit_day == date(2026, 1, 12) + timedelta(days=extra), visit_day
    snap = dev.snapshot()
    fuser = next(h for h in snap.hfsi if h.id == "950-801")
    assert fuser.replacements == 1 and fuser.last_replaced_at is not None
    assert int(dict((p.name, p.value) for p in snap.properties)["power-on-count"]) \
        >= power_on + 1
    fuser_unit = next(s for s in snap.supplies if s.type == "fuser")
    assert fuser_unit.serial != next(s for s in before.supplies if s.type == "fuser").serial


def test_devices_of_a_class_differ_and_replay_exactly() -> None:
    def run(seed: int) -> tuple[int, int, tuple[int, ...]]:
        dev = _device("office-color", "Europe/London", seed=seed, serial=f"DF{seed:04d}")
        for k in range(40):
            dev.run_day(date(2026, 2, 2) + timedelta(days=k))
        c = dev.counters()
        return c.total_impressions, c.color_impressions, tuple(
            s.level for s in dev.snapshot().supplies[1:4])

    runs = [run(s) for s in range(12)]
    assert runs == [run(s) for s in range(12)]  # a pure function of (seed, device, day)
    totals = [t for t, _, _ in runs]
    shares = [round(c / t, 2) for t, c, _ in runs]
    assert max(totals) > 1.5 * min(totals)
    assert len(set(shares)) > 6
    assert sum(len(set(levels)) == 3 for _, _, levels in runs) >= 8  # C, M, Y differ
