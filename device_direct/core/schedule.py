"""The daily upload schedule, at a device-local wall time in an IANA time zone.

"Daily at 02:00" means 02:00 on the device's wall clock, which DST moves around:

* spring forward: a local time inside the gap never happens; that day's run fires once,
  at the first instant after the jump (02:30 skipped -> 03:00 local);
* fall back: a local time that happens twice fires once, at its first occurrence;
* a day the clock skips altogether (Pacific/Apia, 30 December 2011) has no run, so the
  next day still has exactly one.

Formally, the run of local date D is the earliest instant whose wall time is at or after
D at ``at``, provided that instant still falls on D. That gives exactly one run per
local calendar day that has one, strictly increasing.

A device that was off at the scheduled time follows a policy (:data:`MissedPolicy`):
``"skip"`` (the vendor's behaviour) waits for the next scheduled time; ``"catch-up"``
runs at boot if a scheduled run passed since the last successful one. "Send now" simply
runs now. Everything here is pure: ``now`` comes in as an argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

MissedPolicy = Literal["skip", "catch-up"]
MISSED_POLICIES: tuple[str, ...] = get_args(MissedPolicy)

_WALL_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# A run for date D lands on D or (after a gap) later; looking a few days ahead covers
# the longest clock jump on record (a whole day skipped) with room to spare.
_LOOKAHEAD_DAYS = 4


def parse_wall_time(text: str) -> time:
    """Parse ``"HH:MM"`` (24 h) into a :class:`datetime.time`; ValueError says why."""
    match = _WALL_TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a time as HH:MM (00:00-23:59), got {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def _require_utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _check_at(at: time) -> None:
    if not isinstance(at, time) or at.tzinfo is not None:
        raise ValueError(f"the scheduled time must be a naive wall time, got {at!r}")


def run_on(day: date, at: time, tz: ZoneInfo) -> datetime | None:
    """The run of local date ``day`` as a UTC instant, or None if the day has none."""
    _check_at(at)
    wall = datetime.combine(day, at)
    # fold=0 is the first occurrence of a repeated time (PEP 495).
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # ``wall`` lies in a gap. Inside the gap fold=0 maps with the offset from before the
    # jump and fold=1 with the offset after it, so the jump lies between the two.
    later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, later), max(first, later)
    jump = _first_instant_at_or_after(wall, lo, hi, tz)
    return jump if jump.astimezone(tz).date() == day else None


def _first_instant_at_or_after(
    wall: datetime, lo: datetime, hi: datetime, tz: ZoneInfo
) -> datetime:
    """Earliest instant in (lo, hi] whose wall time is >= ``wall`` (bisection, 1 s)."""

    def reached(instant: datetime) -> bool:
        return instant.astimezone(tz).replace(tzinfo=None) >= wall

    # Transitions fall on whole seconds in the tz database, so integer seconds suffice.
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if reached(lo + timedelta(seconds=mid)):
            hi_s = mid
        else:
            lo_s = mid
    return lo + timedelta(seconds=hi_s)


def next_run(after: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first scheduled run strictly after ``after`` (aware), as UTC."""
    after = _require_utc(after, "after")
    start = after.astimezone(tz).date() - timedelta(days=1)
    for offset in range(_LOOKAHEAD_DAYS + 1):
        run = run_on(start + timedelta(days=offset), at, tz)
        if run is not None and run > after:
            return run
    raise AssertionError(f"no run of {at} in {tz.key} within {_LOOKAHEAD_DAYS} days of {after}")


def missed_since(last_run: datetime, now: datetime, at: time, tz: ZoneInfo) -> bool:
    """Whether a scheduled run fell in (last_run, now]."""
    return next_run(last_run, at, tz) <= _require_utc(now, "now")


def on_boot(
    now: datetime,
    last_run: datetime | None,
    at: time,
    tz: ZoneInfo,
    policy: MissedPolicy = "skip",
) -> datetime:
    """When to run next after the device (re)starts at ``now`` (UTC).

    ``last_run`` is the last successful scheduled run, or None if the device has none on
    record. With ``"catch-up"`` a run missed since ``last_run`` happens now; with
    ``"skip"``, or when there is no record of a previous run (nothing known to catch
    up), the device waits for the next scheduled time.
    """
    now = _require_utc(now, "now")
    if policy not in MISSED_POLICIES:
        raise ValueError(f"missed-run policy must be one of {MISSED_POLICIES}, got {policy!r}")
    if policy == "catch-up" and last_run is not None and missed_since(last_run, now, at, tz):
        return now
    return next_run(now, at, tz)


@dataclass(frozen=True, slots=True)
class DailySchedule:
    """The configured schedule: wall time, zone and missed-run policy."""

    at: time
    tz: ZoneInfo
    missed: MissedPolicy = "skip"

    def __post_init__(self) -> None:
        _check_at(self.at)
        if not isinstance(self.tz, ZoneInfo):
            raise ValueError(f"tz must be a ZoneInfo, got {self.tz!r}")
        if self.missed not in MISSED_POLICIES:
            raise ValueError(f"missed must be one of {MISSED_POLICIES}, got {self.missed!r}")

    def next_run(self, after: datetime) -> datetime:
        """The first run strictly after ``after``."""
        return next_run(after, self.at, self.tz)

    def on_boot(self, now: datetime, last_run: datetime | None) -> datetime:
        """When to run next after a boot at ``now``; see :func:`on_boot`."""
        return on_boot(now, last_run, self.at, self.tz, self.missed)
