"""A scenario turned into concrete steps: which device, which instant, which values.

Theory of operation
-------------------
:func:`expand` is pure: given a :class:`~emulator.faults.scenario.Scenario` and the
fleet's device identities, it resolves every selector to device positions, every
:class:`~emulator.faults.scenario.When` to a UTC instant per device (device-local wall
time and upload times differ from device to device), and every ``[[chaos]]`` table to
``count`` drawn events. All randomness comes from ``random.Random`` seeded with the
scenario seed and the table's position, so the same file gives the same steps on every
run and on every machine, and adding a chaos table does not move the others.

Steps are ordered by (instant, order of appearance); the shell sleeps on the virtual
clock until each instant and carries the step out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from emulator.errors import ScenarioError
from emulator.faults.scenario import ChaosSpec, Scenario, Selector, When
from emulator.fleet.identities import DeviceIdentity

NEAR_UPLOAD_BEFORE_S = 30 * 60  # chaos "near_upload": from 30 minutes before...
NEAR_UPLOAD_AFTER_S = 5 * 60  # ...to 5 minutes after the device's upload time


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to do at one instant: to one device (``device``: position in the
    fleet's identity list) or to the server (``device`` None)."""

    at: datetime
    order: int
    kind: str
    device: int | None
    params: Mapping[str, Any]
    source: str  # "event[3]", "chaos[1]#17": where it came from, for reports

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("Step.at must be an aware datetime")


@dataclass(frozen=True, slots=True)
class Timeline:
    """Every step of a scenario, in the order they happen."""

    steps: tuple[Step, ...]
    picked: Mapping[str, tuple[int, ...]]  # event name -> device positions it selected
    end: datetime  # after this no step happens (the last instant of the run)

    def count(self, kind: str | None = None) -> int:
        return sum(1 for s in self.steps if kind is None or s.kind == kind)


def select(sel: Selector, identities: Sequence[DeviceIdentity], rng: random.Random,
           picked: Mapping[str, tuple[int, ...]] | None = None) -> tuple[int, ...]:
    """Positions (in ``identities``) of the devices ``sel`` chooses, in fleet order."""
    if sel.event is not None:
        if picked is None or sel.event not in picked:
            raise ScenarioError(f"no event named {sel.event!r} picked any devices")
        pool = list(picked[sel.event])
    else:
        pool = list(range(len(identities)))
    if sel.profile is not None:
        pool = [p for p in pool if identities[p].profile == sel.profile]
    if sel.serials:
        known = {identities[p].serial for p in pool}
        missing = [s for s in sel.serials if s not in known]
        if missing:
            raise ScenarioError(f"serial {missing[0]} is not in this fleet (or not in the "
                                "other filters); serials depend on the fleet seed")
        pool = [p for p in pool if identities[p].serial in sel.serials]
    if sel.indices:
        wanted = set(sel.indices)
        pool = [p for p in pool if identities[p].index in wanted]
    if sel.count is not None:
        n = min(sel.count, len(pool))
    else:
        n = round(sel.fraction * len(pool))
        if sel.fraction < 1.0 and pool:
            n = max(1, n)  # a fraction of a non-empty fleet is never nobody
    if n < len(pool):
        pool = sorted(rng.sample(pool, n))
    return tuple(pool)


def instant(when: When, spec_start: Any, ident: DeviceIdentity | None) -> datetime:
    """The UTC instant ``when`` means for ``ident`` (None: a server event, UTC)."""
    day = spec_start + timedelta(days=when.day)
    if when.upload_offset is not None:
        assert ident is not None
        local = datetime.combine(day, ident.upload_time, tzinfo=ZoneInfo(ident.time_zone))
        return local.astimezone(UTC) + timedelta(minutes=when.upload_offset)
    assert when.at is not None
    if when.local and ident is not None:
        return datetime.combine(day, when.at, tzinfo=ZoneInfo(ident.time_zone)).astimezone(UTC)
    return datetime.combine(day, when.at, tzinfo=UTC)


def expand(scenario: Scenario, identities: Sequence[DeviceIdentity]) -> Timeline:
    """All steps of ``scenario`` for the fleet ``identities`` (the whole fleet)."""
    spec = scenario.fleet
    end = max(i.print_at(spec, spec.days - 1) for i in identities) + timedelta(days=1)
    begin = min(i.print_at(spec, 0) for i in identities) - timedelta(days=1)
    steps: list[Step] = []
    picked: dict[str, tuple[int, ...]] = {}
    order = 0
    for n, ev in enumerate(scenario.events):
        rng = random.Random(f"event:{spec.seed}:{n}")
        source = f"event[{n}]" + (f" ({ev.name})" if ev.name else "")
        if ev.is_server:
            at = _instant(ev.when, spec.start, None, scenario.source, source)
            params = dict(ev.params)
            if ev.kind == "firmware_campaign":
                params["profile"] = ev.select.profile
            steps.append(Step(at, order, ev.kind, None, params, source))
            order += 1
            _check_inside(at, begin, end, f"{scenario.source}: {source}")
            continue
        chosen = select(ev.select, identities, rng)
        if not chosen:
            raise ScenarioError(f"{scenario.source}: {source} selects no device")
        if ev.name:
            picked[ev.name] = chosen
        for p in chosen:
            what = f"{source} for {identities[p].serial}"
            at = _instant(ev.when, spec.start, identities[p], scenario.source, what)
            _check_inside(at, begin, end, f"{scenario.source}: {what}")
            steps.append(Step(at, order, ev.kind, p, dict(ev.params), source))
            order += 1
    for n, ch in enumerate(scenario.chaos):
        for step in _chaos_steps(ch, n, scenario, identities, order):
            steps.append(step)
            order += 1
    steps.sort(key=lambda s: (s.at, s.order))
    return Timeline(steps=tuple(steps), picked=picked, end=end)


def _instant(when: When, start: Any, ident: DeviceIdentity | None, path: str, what: str
             ) -> datetime:
    """:func:`instant`, or an error naming the file and the event for a day so far out
    that it is past the last date a datetime can hold."""
    try:
        return instant(when, start, ident)
    except OverflowError:
        raise ScenarioError(f"{path}: {what}: day {when.day} is far outside the run"
                            ) from None


def _check_inside(at: datetime, begin: datetime, end: datetime, what: str) -> None:
    if not begin <= at <= end:
        raise ScenarioError(f"{what} happens at {at:%Y-%m-%d %H:%M} UTC, outside the run "
                            f"({begin:%Y-%m-%d} to {end:%Y-%m-%d %H:%M} UTC)")


def _chaos_steps(ch: ChaosSpec, n: int, scenario: Scenario,
                 identities: Sequence[DeviceIdentity], order: int) -> list[Step]:
    spec = scenario.fleet
    rng = random.Random(f"chaos:{spec.seed}:{n}")
    server = ch.kind in {"server_5xx", "server_slow", "server_drop", "server_cert"}
    pool = () if server else select(ch.select, identities, rng)
    if not server and not pool:
        raise ScenarioError(f"{scenario.source}: chaos[{n}] selects no device")
    out = []
    for k in range(ch.count):
        day = rng.randint(ch.first_day, ch.last_day)
        device = None if server else pool[rng.randrange(len(pool))]
        if device is not None and ch.near_upload:
            base = instant(When(day=day, upload_offset=0), spec.start, identities[device])
            at = base + timedelta(seconds=rng.randint(-NEAR_UPLOAD_BEFORE_S,
                                                      NEAR_UPLOAD_AFTER_S))
        else:
            midnight = datetime.combine(spec.start + timedelta(days=day),
                                        datetime.min.time(), tzinfo=UTC)
            at = midnight + timedelta(seconds=rng.randrange(86400))
        params = {name: _draw(value, rng) for name, value in ch.params.items()}
        out.append(Step(at, order + k, ch.kind, device, params, f"chaos[{n}]#{k}"))
    return out


def _draw(value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):  # a list of choices (checkpoints)
        return rng.choice(value)
    if isinstance(value, tuple):  # a [low, high] range
        low, high = value
        return rng.randint(low, high) if isinstance(low, int) else rng.uniform(low, high)
    return value
