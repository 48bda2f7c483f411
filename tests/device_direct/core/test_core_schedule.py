"""Daily schedule: DST gaps and repeats, skipped days, missed-run policies."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_direct.core.schedule import (
    DailySchedule,
    next_run,
    on_boot,
    parse_wall_time,
    run_on,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MUST = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia",
        "America/Santiago", "UTC", "Asia/Kolkata", "America/St_Johns"]  # fmt: skip
# A fixed, sorted sample keeps runs reproducible while still covering many zones.
_ALL = sorted(zoneinfo.available_timezones())
ZONES = sorted(set(MUST) | set(_ALL[:: max(1, len(_ALL) // 60)]))


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- examples --------------------------------------------------------------------------------


def test_spring_forward_gap_fires_at_the_end_of_the_gap_once() -> None:
    run = next_run(utc(2026, 3, 28, 12), time(2, 30), BERLIN)
    assert local(run, BERLIN).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 0)
    after = next_run(run, time(2, 30), BERLIN)
    assert local(after, BERLIN).replace(tzinfo=None) == datetime(2026, 3, 30, 2, 30)


def test_fall_back_repeat_fires_once_at_the_first_occurrence() -> None:
    run = next_run(utc(2026, 11, 1, 0), time(1, 30), NEW_YORK)
    assert run == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST an hour later
    following = next_run(run, time(1, 30), NEW_YORK)
    assert local(following, NEW_YORK).date() == date(2026, 11, 2)


def test_lord_howe_half_hour_gap() -> None:
    tz = ZoneInfo("Australia/Lord_Howe")
    run = next_run(utc(2025, 10, 4), time(2, 15), tz)
    assert local(run, tz).replace(tzinfo=None) == datetime(2025, 10, 5, 2, 30)


def test_apia_skipped_day_has_no_run_and_the_next_day_one() -> None:
    tz = ZoneInfo("Pacific/Apia")
    assert run_on(date(2011, 12, 30), time(2, 0), tz) is None
    runs = [next_run(utc(2011, 12, 28), time(2, 0), tz)]
    for _ in range(3):
        runs.append(next_run(runs[-1], time(2, 0), tz))
    assert [local(r, tz).day for r in runs] == [28, 29, 31, 1]


def test_next_run_is_strictly_after() -> None:
    run = next_run(utc(2026, 1, 1), time(2, 0), BERLIN)
    assert run == utc(2026, 1, 1, 1, 0)
    assert next_run(run, time(2, 0), BERLIN) == utc(2026, 1, 2, 1, 0)
    assert next_run(run - timedelta(microseconds=1), time(2, 0), BERLIN) == run


def test_skip_policy_waits_for_the_next_scheduled_time() -> None:
    boot = utc(2026, 1, 10, 4)  # off at 02:00 Berlin (01:00 UTC), back at 05:00
    last = utc(2026, 1, 9, 1)
    assert on_boot(boot, last, time(2, 0), BERLIN, "skip") == utc(2026, 1, 11, 1)


def test_catch_up_runs_now_only_when_a_run_was_missed() -> None:
    boot = utc(2026, 1, 10, 4)
    assert on_boot(boot, utc(2026, 1, 9, 1), time(2, 0), BERLIN, "catch-up") == boot
    ran_today = utc(2026, 1, 10, 1)
    assert on_boot(boot, ran_today, time(2, 0), BERLIN, "catch-up") == utc(2026, 1, 11, 1)
    # No run on record: nothing is known to be missed.
    assert on_boot(boot, None, time(2, 0), BERLIN, "catch-up") == utc(2026, 1, 11, 1)
    assert DailySchedule(time(2, 0), BERLIN, "catch-up").on_boot(boot, utc(2026, 1, 1)) == boot


@pytest.mark.parametrize("text", ["2:00", "24:00", "12:60", "noon", "", "12:00:00"])
def test_parse_wall_time_refuses_bad_times(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_wall_time(text)


def test_parse_wall_time_and_validation() -> None:
    assert parse_wall_time("02:05") == time(2, 5)
    with pytest.raises(ValueError, match="aware"):
        next_run(datetime(2026, 1, 1), time(2, 0), BERLIN)
    with pytest.raises(ValueError, match="missed"):
        DailySchedule(time(2, 0), BERLIN, "later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        on_boot(utc(2026, 1, 1), None, time(2, 0), BERLIN, "sometimes")  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------------

zones = st.sampled_from(ZONES).map(ZoneInfo)
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))
starts = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2037, 1, 1), timezones=st.just(UTC)
)


def _no_run_possible(day: date, at: time, tz: ZoneInfo) -> bool:
    """Oracle by brute force: no instant on local ``day`` has a wall time >= ``at``."""
    wall = datetime.combine(day, at)
    base = datetime.combine(day, time(0), tzinfo=UTC)
    for quarter in range(-4 * 16, 4 * 40):
        t = local(base + timedelta(minutes=15 * quarter), tz)
        if t.date() == day and t.replace(tzinfo=None) >= wall:
            return False
    return True


@settings(max_examples=50, deadline=None)
@given(tz=zones, at=wall_times, start=starts)
def test_one_run_per_local_day_at_the_wall_time_or_just_after_the_gap(
    tz: ZoneInfo, at: time, start: datetime
) -> None:
    runs = [next_run(start, at, tz)]
    while len(runs) < 400:  # more than a year: every DST change of the zone
        runs.append(next_run(runs[-1], at, tz))
    assert all(a < b for a, b in itertools.pairwise(runs))
    days = [local(r, tz).date() for r in runs]
    assert all(a < b for a, b in itertools.pairwise(days)), "two runs on one day"
    for run in runs:
        wall = local(run, tz)
        target = datetime.combine(wall.date(), at)
        if wall.replace(tzinfo=None) == target:
            assert wall.fold == 0, f"{run} is the second occurrence of {target}"
        else:
            # Not at the wall time: the wall time was skipped and this is the first
            # instant after the jump.
            before = local(run - timedelta(seconds=1), tz).replace(tzinfo=None)
            assert before < target < wall.replace(tzinfo=None), (run, target)
            assert wall.replace(tzinfo=None) - before > timedelta(seconds=1)
    seen = set(days)
    day = days[0]
    while day < days[-1]:
        if day not in seen:
            assert _no_run_possible(day, at, tz), f"{day} has no run in {tz.key}"
        day += timedelta(days=1)


@settings(max_examples=60, deadline=None)
@given(
    tz=zones,
    at=wall_times,
    now=starts,
    gap=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9))),
    policy=st.sampled_from(["skip", "catch-up"]),
)
def test_on_boot_is_now_exactly_when_catching_up_a_missed_run(
    tz: ZoneInfo, at: time, now: datetime, gap: timedelta | None, policy: str
) -> None:
    last = None if gap is None else now - gap
    when = on_boot(now, last, at, tz, policy)  # type: ignore[arg-type]
    assert when >= now
    missed = last is not None and next_run(last, at, tz) <= now
    if policy == "catch-up" and missed:
        assert when == now
    else:
        assert when == next_run(now, at, tz)
