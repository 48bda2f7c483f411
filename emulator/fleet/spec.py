"""What a fleet is: size, length, profile mix, seed, upload window, shard.

These are plain values, validated when built, so a fleet described on the command
line, in a test or in a benchmark is checked the same way. Everything that tells one
device from another (``identities.py``) is derived from a :class:`FleetSpec` and a
device's global index, never from the shard that happens to run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from emulator.errors import EmulatorError

# Where the fleet's printers stand, by default: a spread of offices, so that "daily at
# 02:00 local" means many different instants and DST rules in UTC.
DEFAULT_ZONES: tuple[str, ...] = (
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
)
DEFAULT_MIX: tuple[tuple[str, int], ...] = (
    ("office-color", 70),
    ("office-mono", 25),
    ("production", 5),
)
DEFAULT_START = date(2026, 1, 5)  # a Monday
# End of office hours, device-local: the day's printing is applied then.
DEFAULT_PRINT_TIME = time(19, 0)

# Remote actions a fleet run may issue by itself (``--actions``): the ones a device runs
# and answers within the same daily session. reboot, upgrade_firmware and start_managed
# change the device's life cycle and belong in a scenario; upload_logs needs consent.
FLEET_ACTION_TYPES: tuple[str, ...] = (
    "get_status",
    "troubleshoot",
    "print_test_page",
    "send_meters_now",
)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class FleetSpecError(EmulatorError, ValueError):
    """A fleet description is wrong; the message names the option and the value."""


def _hhmm(text: str, what: str) -> time:
    m = _HHMM.match(text.strip())
    if m is None:
        raise FleetSpecError(f"{what}: expected HH:MM (00:00-23:59), got {text!r}")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True, slots=True)
class UploadWindow:
    """Device-local window in which the daily upload times are spread (end excluded).

    An end before the start crosses midnight. Upload times fall on whole minutes.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t.second or t.microsecond or t.tzinfo is not None:
                raise FleetSpecError(f"upload window: times must be whole local minutes, got {t}")
        if self.start == self.end:
            raise FleetSpecError("upload window: start and end must differ (the end is "
                                 "excluded; use 02:00-02:01 for 'all at 02:00')")

    @classmethod
    def parse(cls, text: str) -> UploadWindow:
        """Parse ``"HH:MM-HH:MM"``."""
        start, sep, end = text.partition("-")
        if not sep:
            raise FleetSpecError(f"upload window: expected HH:MM-HH:MM, got {text!r}")
        return cls(_hhmm(start, "upload window start"), _hhmm(end, "upload window end"))

    @property
    def minutes(self) -> int:
        """How many whole minutes the window holds."""
        a = self.start.hour * 60 + self.start.minute
        b = self.end.hour * 60 + self.end.minute
        return (b - a) % 1440

    def at(self, offset_minutes: int) -> time:
        """The local time ``offset_minutes`` into the window."""
        if not 0 <= offset_minutes < self.minutes:
            raise FleetSpecError(f"offset {offset_minutes} is outside the {self.minutes}-minute "
                                 "upload window")
        m = (self.start.hour * 60 + self.start.minute + offset_minutes) % 1440
        return time(m // 60, m % 60)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_mix(text: str, known: tuple[str, ...] | None = None) -> tuple[tuple[str, int], ...]:
    """Parse ``"office-color:70,office-mono:25,production:5"`` into (profile, weight) pairs.

    Weights are non-negative integers with a positive sum; ``known`` lists the profile
    names allowed (all names when None).
    """
    pairs: list[tuple[str, int]] = []
    if not text.strip():
        raise FleetSpecError("mix: empty; expected PROFILE:WEIGHT[,PROFILE:WEIGHT...]")
    for part in text.split(","):
        name, sep, weight = part.strip().partition(":")
        name = name.strip()
        if not sep or not name:
            raise FleetSpecError(f"mix: {part.strip()!r} is not PROFILE:WEIGHT "
                                 "(e.g. office-color:70)")
        if not weight.strip().isdigit():
            raise FleetSpecError(f"mix: weight of {name!r} must be a whole number >= 0, "
                                 f"got {weight.strip()!r}")
        if known is not None and name not in known:
            raise FleetSpecError(f"mix: unknown profile {name!r}; known: {', '.join(known)}")
        if any(name == n for n, _ in pairs):
            raise FleetSpecError(f"mix: profile {name!r} is given twice")
        pairs.append((name, int(weight)))
    if sum(w for _, w in pairs) <= 0:
        raise FleetSpecError("mix: the weights add up to 0; at least one must be positive")
    return tuple(pairs)


def format_mix(mix: tuple[tuple[str, int], ...]) -> str:
    """The inverse of :func:`parse_mix`."""
    return ",".join(f"{name}:{weight}" for name, weight in mix)


def parse_actions(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``"get_status:0.05,send_meters_now:0.01"``: per action type, the chance
    that the server issues it to a given device on a given day (0 < p <= 1)."""
    pairs: list[tuple[str, float]] = []
    if not text.strip():
        raise FleetSpecError("actions: empty; expected TYPE:PER_DAY[,TYPE:PER_DAY...]")
    for part in text.split(","):
        name, sep, rate = (x.strip() for x in part.strip().partition(":"))
        if not sep or not name:
            raise FleetSpecError(f"actions: {part.strip()!r} is not TYPE:PER_DAY "
                                 "(e.g. get_status:0.05)")
        try:
            p = float(rate)
        except ValueError:
            raise FleetSpecError(f"actions: chance per device-day of {name!r} must be a "
                                 f"number in (0, 1], got {rate!r}") from None
        pairs.append((name, p))
    return check_actions(tuple(pairs))


def check_actions(actions: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """``actions`` if every type can be issued by a fleet run, once, with 0 < p <= 1."""
    seen: set[str] = set()
    for name, p in actions:
        if name not in FLEET_ACTION_TYPES:
            raise FleetSpecError(f"actions: {name!r} cannot be issued by a fleet run; "
                                 f"choose from {', '.join(FLEET_ACTION_TYPES)} "
                                 "(reboot and firmware belong in a --scenario)")
        if not 0.0 < p <= 1.0:
            raise FleetSpecError(f"actions: chance per device-day of {name!r} must be a "
                                 f"number in (0, 1], got {p!r}")
        if name in seen:
            raise FleetSpecError(f"actions: {name!r} is given twice")
        seen.add(name)
    return actions


def format_actions(actions: tuple[tuple[str, float], ...]) -> str:
    """The inverse of :func:`parse_actions` ("" for none)."""
    # repr: the shortest text that reads back as the same float, so shard processes
    # handed this text draw exactly what their parent would.
    return ",".join(f"{name}:{p!r}" for name, p in actions)


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` (1-based) of ``count``: the devices whose global index i has
    ``i % count == index - 1``. K shards cover a fleet once, with no overlap."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise FleetSpecError(f"shard: the number of shards must be >= 1, got {self.count}")
        if not 1 <= self.index <= self.count:
            raise FleetSpecError(f"shard: index must be 1..{self.count}, got {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/K"`` (i counts from 1)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None:
            raise FleetSpecError(f"shard: expected i/K such as 1/4 (i counts from 1), "
                                 f"got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def indices(self, devices: int) -> range:
        """The global device indices of this shard."""
        return range(self.index - 1, devices, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """The whole fleet, whichever shard runs which part of it."""

    devices: int
    days: int
    seed: int = 1
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    zones: tuple[str, ...] = DEFAULT_ZONES
    upload_window: UploadWindow = UploadWindow(time(1, 0), time(5, 0))
    start: date = DEFAULT_START
    print_time: time = DEFAULT_PRINT_TIME
    # (action type, chance per device-day): what the server issues by itself each day
    actions: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.devices, bool) or self.devices < 1:
            raise FleetSpecError(f"devices: must be >= 1, got {self.devices}")
        if isinstance(self.days, bool) or not 1 <= self.days <= 3660:
            raise FleetSpecError(f"days: must be 1..3660, got {self.days}")
        try:  # the run spans from the day before the start to the day after the end
            self.start - timedelta(days=2)
            self.start + timedelta(days=self.days + 2)
        except OverflowError:
            raise FleetSpecError(f"start: {self.start} leaves no room for a {self.days}-day "
                                 f"run between {date.min} and {date.max}") from None
        if not self.mix or sum(w for _, w in self.mix) <= 0:
            raise FleetSpecError("mix: needs at least one profile with a positive weight")
        if any(w < 0 for _, w in self.mix):
            raise FleetSpecError("mix: weights must be >= 0")
        if not self.zones:
            raise FleetSpecError("zones: at least one time zone is needed")
        for zone in self.zones:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise FleetSpecError(f"zones: unknown IANA time zone {zone!r}") from None
        win = self.upload_window
        pt = self.print_time
        inside = (pt.hour * 60 + pt.minute - (win.start.hour * 60 + win.start.minute)) % 1440
        if inside < win.minutes:
            # The upload would race the day's printing: which meters it carries would
            # depend on the order of events at one instant.
            raise FleetSpecError(f"upload window {win} must not contain the print time "
                                 f"{pt:%H:%M}")
        if self.actions:
            check_actions(self.actions)

    @property
    def device_days(self) -> int:
        return self.devices * self.days
