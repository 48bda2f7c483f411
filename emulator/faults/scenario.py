"""QA fault scenarios: what a scenario file says, read and checked (no I/O beyond reading).

A scenario is a fleet (size, days, seed, profile mix, zones) plus a timeline of fault
events and the expectations checked at the end. It is written in TOML::

    [scenario]
    name = "power-cut-at-upload-hour"
    description = "...the field problem it reproduces..."

    [fleet]
    devices = 12
    days = 4
    seed = 7

    [[event]]
    kind = "power_off"          # what happens (see KINDS)
    day = 2                     # day of the run, 0 = the first day
    upload_offset_minutes = -10 # ...ten minutes before the device's upload time
    minutes = 30                # how long the power stays off
    fraction = 0.5              # which devices: all | fraction | count | serials |
                                #   indices | profile (filters combine)

    [[chaos]]                   # many random events of one kind, from the seed
    kind = "kill"
    count = 300

    [[expect]]
    check = "stored_once"

Every value is validated here, and an error names the file and the key
(``scenario.toml: key 'event[2].minutes': must be >= 1, got 0``). Turning a scenario
into concrete per-device steps is ``timeline.py``; checking the end state is
``expect.py``; carrying it out is ``emulator.fleet.scenario_run``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from device_direct.errors import ConfigError
from device_direct.tomlreader import Table, load_toml, parse_toml
from emulator.errors import ScenarioError
from emulator.fleet.spec import (
    DEFAULT_MIX,
    DEFAULT_START,
    DEFAULT_ZONES,
    FleetSpec,
    FleetSpecError,
    UploadWindow,
    parse_mix,
)

# Named points where a power loss or a kill can be made to happen (Agent.checkpoint,
# plus the fleet's own at the firmware edges and after an upload's answer arrived).
CHECKPOINTS = ("build", "write", "upload", "upload-acked", "download", "install")
FIRMWARE_IMAGES = ("good", "corrupt", "bad-signature")
CERT_MODES = ("expired", "wrong-host")

# kind -> {parameter: (type, default)}; a default of None means optional, REQUIRED means
# the event must give it. "minutes" is the length of the fault's window where it has one.
REQUIRED: Any = object()
_INT, _FLOAT, _BOOL, _STR = "int", "float", "bool", "str"
KINDS: Mapping[str, Mapping[str, tuple[str, Any]]] = {
    # devices
    "jam_storm": {"count": (_INT, 5), "interval_minutes": (_INT, 10), "code": (_STR, None),
                  "clear_minutes": (_INT, 5)},
    "fault": {"code": (_STR, REQUIRED), "minutes": (_INT, None)},
    "toner_empty": {"replace_minutes": (_INT, None)},
    "door_open": {"minutes": (_INT, 30)},
    "power_off": {"minutes": (_INT, REQUIRED)},
    "power_loss": {"minutes": (_INT, 5), "checkpoint": (_STR, None)},
    "kill": {"checkpoint": (_STR, None), "restart_seconds": (_INT, 30)},
    "net": {"minutes": (_INT, REQUIRED), "cut": (_BOOL, False), "blackhole": (_BOOL, False),
            "dns_fail": (_BOOL, False), "latency_ms": (_INT, 0), "bandwidth_bps": (_INT, 0),
            "reset_after_bytes": (_INT, None)},
    "clock_skew": {"offset_minutes": (_INT, REQUIRED), "minutes": (_INT, None)},
    "disk_full": {"minutes": (_INT, REQUIRED)},
    # the server (the whole fleet sees it)
    "server_5xx": {"minutes": (_INT, None), "fail_next": (_INT, 0),
                   "fail_fraction": (_FLOAT, 0.0)},
    "server_slow": {"minutes": (_INT, REQUIRED), "latency_ms": (_INT, REQUIRED)},
    "server_drop": {"drop_next": (_INT, REQUIRED)},
    "server_cert": {"minutes": (_INT, REQUIRED), "mode": (_STR, REQUIRED)},
    "firmware_campaign": {"version": (_STR, REQUIRED), "image": (_STR, "good"),
                          "size_bytes": (_INT, 65536)},
}
SERVER_KINDS = frozenset({"server_5xx", "server_slow", "server_drop", "server_cert",
                          "firmware_campaign"})
NETWORK_KINDS = frozenset({"net"})
CHECKS = ("stored_once", "none_lost", "firmware_not_running", "firmware_running",
          "fault_reported", "faults_injected", "no_crash", "uploads_at_least")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,7}$")  # dotted numbers, as the catalog wants


@dataclass(frozen=True, slots=True)
class Selector:
    """Which devices an event or an expectation is about. Filters combine: ``profile``,
    ``serials`` and ``indices`` narrow the fleet, then ``count`` or ``fraction`` pick
    that many of what is left (seeded, so the same devices every run). ``event`` names
    another event: the devices it picked."""

    fraction: float = 1.0
    count: int | None = None
    serials: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    profile: str | None = None
    event: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.count is not None and self.fraction != 1.0:
            raise ValueError("give count or fraction, not both")
        if any(i < 0 for i in self.indices):
            raise ValueError("indices must be >= 0")

    @property
    def everyone(self) -> bool:
        return self == Selector()


@dataclass(frozen=True, slots=True)
class When:
    """A moment of the run: day ``day`` (0 = the fleet's first day) at ``at`` in UTC or
    device-local wall time, or ``upload_offset`` minutes from the device's upload time
    that local day."""

    day: int
    at: time | None = None
    local: bool = True
    upload_offset: int | None = None

    def __post_init__(self) -> None:
        if self.day < 0:
            raise ValueError(f"day must be >= 0, got {self.day}")
        if (self.at is None) == (self.upload_offset is None):
            raise ValueError("give a time (HH:MM) or an upload_offset_minutes, not both")
        if self.upload_offset is not None and not self.local:
            raise ValueError("upload_offset_minutes is relative to device-local time")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One fault event of the timeline."""

    kind: str
    when: When
    params: Mapping[str, Any]
    select: Selector = Selector()
    name: str = ""

    @property
    def is_server(self) -> bool:
        return self.kind in SERVER_KINDS


@dataclass(frozen=True, slots=True)
class ChaosSpec:
    """``count`` events of one kind at random moments (from the scenario seed).

    ``params`` values that are two-element lists are ranges: each event draws its own
    value in [low, high]. ``checkpoint`` may be a list to draw from. ``near_upload``
    puts each event within [-30, +5] minutes of the chosen device's upload time, where
    it bites; otherwise anywhere in the day (UTC)."""

    kind: str
    count: int
    first_day: int
    last_day: int  # inclusive
    params: Mapping[str, Any]
    select: Selector = Selector()
    near_upload: bool = True


@dataclass(frozen=True, slots=True)
class ExpectSpec:
    """One expectation checked at the end of the run."""

    check: str
    select: Selector = Selector()
    version: str | None = None
    code: str | None = None
    at_least: int | None = None


@dataclass(frozen=True, slots=True)
class AgentTuning:
    """Agent settings a scenario may change (the rest are the fleet's defaults)."""

    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    auto_firmware: bool = False
    upload_timeout_s: float | None = None  # the transport's whole-upload timeout
    request_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario file."""

    name: str
    description: str
    fleet: FleetSpec
    events: tuple[EventSpec, ...]
    chaos: tuple[ChaosSpec, ...] = ()
    expectations: tuple[ExpectSpec, ...] = ()
    agent: AgentTuning = AgentTuning()
    source: str = "<string>"
    named: Mapping[str, int] = field(default_factory=dict)  # event name -> index

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a scenario needs a name")
        if not self.expectations:
            raise ValueError("a scenario needs at least one [[expect]]")


# -- reading ------------------------------------------------------------------------------


def load_scenario(path: Path | str) -> Scenario:
    """Read and check a scenario file; errors name the file and the key."""
    try:
        return _read(load_toml(path))
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from exc


def parse_scenario(text: str, *, source: str = "<string>") -> Scenario:
    """:func:`load_scenario` for a string (tests)."""
    try:
        return _read(parse_toml(text, source=source))
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from exc


def _read(doc: Table) -> Scenario:
    head = doc.table("scenario")
    name = head.str("name")
    description = head.str("description")
    head.done()
    fleet = _fleet(doc.table("fleet"))
    agent = _agent(doc.table("agent", None))
    events = tuple(_event(t, fleet) for t in doc.tables("event", []))
    named: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev.name:
            if ev.name in named:
                raise ConfigError(f"event name {ev.name!r} is used twice", path=doc.source,
                                  key=f"event[{i}].name")
            named[ev.name] = i
    for i, ev in enumerate(events):
        if ev.select.event is not None:
            raise ConfigError("an event cannot select by another event", path=doc.source,
                              key=f"event[{i}].event")
    chaos = tuple(_chaos(t, fleet) for t in doc.tables("chaos", []))
    expects = tuple(_expect(t, fleet, named) for t in doc.tables("expect", []))
    if not expects:
        raise ConfigError("a scenario needs at least one [[expect]] table", path=doc.source)
    doc.done()
    return Scenario(name=name, description=description.strip(), fleet=fleet, events=events,
                    chaos=chaos, expectations=expects, agent=agent, source=doc.source,
                    named=named)


def _fleet(t: Table) -> FleetSpec:
    from emulator.model.profile import available_profiles

    try:
        mix = (parse_mix(t.str("mix"), tuple(available_profiles())) if "mix" in t
               else DEFAULT_MIX)
        zones = t.str_list("zones", DEFAULT_ZONES)
        window = (UploadWindow.parse(t.str("upload_window")) if "upload_window" in t
                  else UploadWindow(time(1, 0), time(5, 0)))
        start = date.fromisoformat(t.str("start")) if "start" in t else DEFAULT_START
        spec = FleetSpec(devices=t.int("devices", min=1), days=t.int("days", min=1),
                         seed=t.int("seed", 1), mix=mix, zones=tuple(zones),
                         upload_window=window, start=start)
    except (FleetSpecError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc), path=t.source, key=t.prefix) from exc
    t.done()
    return spec


def _agent(t: Table | None) -> AgentTuning:
    if t is None:
        return AgentTuning()
    base = t.float("retry_base_s", 5.0, min=1.0, max=3600.0)
    tuning = AgentTuning(
        retry_base_s=base,
        retry_cap_s=t.float("retry_cap_s", 3600.0, min=base, max=86400.0),
        auto_firmware=t.bool("auto_firmware", False),
        upload_timeout_s=t.float("upload_timeout_s", None, min=0.1, max=600.0),
        request_timeout_s=t.float("request_timeout_s", None, min=0.1, max=600.0))
    t.done()
    return tuning


def _selector(t: Table, fleet: FleetSpec, *, allow_event: bool = False) -> Selector:
    from emulator.model.profile import available_profiles

    profile = t.str("profile", None)
    if profile is not None and profile not in available_profiles():
        raise t.error("profile", f"unknown profile {profile!r}; known: "
                                 f"{', '.join(available_profiles())}")
    indices = t.raw("indices", [])
    if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise t.error("indices", f"expected a list of device indices, got {indices!r}")
    bad = [i for i in indices if not 0 <= i < fleet.devices]
    if bad:
        raise t.error("indices", f"device index {bad[0]} is outside 0..{fleet.devices - 1}")
    event = t.str("event", None) if allow_event else None
    try:
        return Selector(fraction=t.float("fraction", 1.0), count=t.int("count_devices", None),
                        serials=t.str_list("serials", ()), indices=tuple(indices),
                        profile=profile, event=event)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc), path=t.source, key=t.prefix) from exc


def _when(t: Table, *, server: bool) -> When:
    day = t.int("day", min=0)
    zone = t.choice("zone", ("utc", "local"), "utc" if server else "local")
    offset = t.int("upload_offset_minutes", None, min=-1440, max=1440)
    text = t.str("time", None if offset is not None else "00:00")
    at = None
    if text is not None:
        m = _HHMM.match(text)
        if m is None:
            raise t.error("time", f"expected HH:MM, got {text!r}")
        at = time(int(m.group(1)), int(m.group(2)))
    if server and zone == "local":
        raise t.error("zone", "server events happen at one instant for everyone: use utc")
    try:
        return When(day=day, at=at, local=zone == "local", upload_offset=offset)
    except ValueError as exc:
        raise ConfigError(str(exc), path=t.source, key=t.prefix) from exc


def _params(t: Table, kind: str, *, ranges: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pname, (ptype, default) in KINDS[kind].items():
        if pname == "checkpoint" and ranges and isinstance(t.raw(pname, None), list):
            names = t.str_list(pname)
            for n in names:
                _check_value(t, kind, pname, n)
            out[pname] = list(names)  # a list: one is drawn per event
            continue
        if ranges and ptype in (_INT, _FLOAT) and isinstance(t.raw(pname, None), list):
            pair = t.raw(pname)
            if (len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(
                    v, bool) for v in pair) or pair[0] > pair[1]):
                raise t.error(pname, f"a range is [low, high] with low <= high, got {pair!r}")
            for v in pair:
                _check_value(t, kind, pname, int(v) if ptype == _INT else float(v))
            out[pname] = (int(pair[0]), int(pair[1])) if ptype == _INT else (
                float(pair[0]), float(pair[1]))
            continue
        if default is REQUIRED:
            value = {_INT: t.int, _FLOAT: t.float, _BOOL: t.bool, _STR: t.str}[ptype](pname)
        else:
            value = {_INT: t.int, _FLOAT: t.float, _BOOL: t.bool, _STR: t.str}[ptype](
                pname, default)
        if value is not None:
            _check_value(t, kind, pname, value)
        out[pname] = value
    _check_kind(t, kind, out)
    return out


def _check_value(t: Table, kind: str, pname: str, value: Any) -> None:
    if pname in ("minutes", "count", "interval_minutes", "clear_minutes", "replace_minutes",
                 "drop_next", "size_bytes") and value < 1:
        raise t.error(pname, f"must be >= 1, got {value}")
    if pname in ("latency_ms", "bandwidth_bps", "fail_next", "reset_after_bytes",
                 "restart_seconds") and value < 0:
        raise t.error(pname, f"must be >= 0, got {value}")
    if pname == "latency_ms" and value > 600_000:
        raise t.error(pname, f"must be <= 600000, got {value}")
    if pname == "fail_fraction" and not 0.0 <= value <= 1.0:
        raise t.error(pname, f"must be within 0..1, got {value}")
    if pname == "checkpoint" and value not in CHECKPOINTS:
        raise t.error(pname, f"must be one of {', '.join(CHECKPOINTS)}; got {value!r}")
    if pname == "mode" and value not in CERT_MODES:
        raise t.error(pname, f"must be one of {', '.join(CERT_MODES)}; got {value!r}")
    if pname == "image" and value not in FIRMWARE_IMAGES:
        raise t.error(pname, f"must be one of {', '.join(FIRMWARE_IMAGES)}; got {value!r}")
    if pname == "version" and not _VERSION.match(value):
        raise t.error(pname, f"expected dotted numbers such as 102.0.1, got {value!r}")
    if pname == "offset_minutes" and (value == 0 or abs(value) > 525_600):
        raise t.error(pname, f"must be non-zero and within a year, got {value}")


def _check_kind(t: Table, kind: str, p: Mapping[str, Any]) -> None:
    if kind == "net" and not (p["cut"] or p["blackhole"] or p["dns_fail"] or p["latency_ms"]
                              or p["bandwidth_bps"] or p["reset_after_bytes"] is not None):
        raise t.error("kind", "a net event needs one of cut, blackhole, dns_fail, latency_ms, "
                              "bandwidth_bps, reset_after_bytes")
    if kind == "server_5xx":
        if not p["fail_next"] and not p["fail_fraction"]:
            raise t.error("kind", "server_5xx needs fail_next or fail_fraction")
        if p["fail_fraction"] and p["minutes"] is None:
            raise t.error("minutes", "fail_fraction needs a window (minutes)")


def _event(t: Table, fleet: FleetSpec) -> EventSpec:
    kind = t.choice("kind", tuple(KINDS))
    server = kind in SERVER_KINDS
    when = _when(t, server=server)
    params = _params(t, kind)
    select = _selector(t, fleet)
    if server and kind != "firmware_campaign" and not select.everyone:
        raise t.error("kind", f"{kind} happens on the server: every device sees it, so an "
                              "event of this kind cannot select devices")
    if kind == "firmware_campaign" and (select.fraction != 1.0 or select.count or
                                        select.serials or select.indices):
        raise t.error("kind", "a firmware campaign is offered per model: select devices with "
                              "profile only")
    name = t.str("name", "")
    t.done()
    return EventSpec(kind=kind, when=when, params=params, select=select, name=name)


def _chaos(t: Table, fleet: FleetSpec) -> ChaosSpec:
    kind = t.choice("kind", tuple(k for k in KINDS if k != "firmware_campaign"))
    count = t.int("count", min=1, max=1_000_000)
    days = t.raw("days", [1, fleet.days - 1])
    if (not isinstance(days, list) or len(days) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in days)
            or not 0 <= days[0] <= days[1] <= fleet.days):
        raise t.error("days", f"expected [first, last] within 0..{fleet.days}, got {days!r}")
    near = t.bool("near_upload", kind not in SERVER_KINDS)
    if near and kind in SERVER_KINDS:
        raise t.error("near_upload", "server events are not tied to a device's upload time")
    params = _params(t, kind, ranges=True)
    select = _selector(t, fleet)
    if kind in SERVER_KINDS and not select.everyone:
        raise t.error("kind", f"{kind} happens on the server: it cannot select devices")
    t.done()
    return ChaosSpec(kind=kind, count=count, first_day=days[0], last_day=days[1],
                     params=params, select=select, near_upload=near)


def _expect(t: Table, fleet: FleetSpec, named: Mapping[str, int]) -> ExpectSpec:
    check = t.choice("check", CHECKS)
    select = _selector(t, fleet, allow_event=True)
    if select.event is not None and select.event not in named:
        raise t.error("event", f"no event is named {select.event!r}; named events: "
                               f"{', '.join(named) or 'none'}")
    version = t.str("version", None)
    code = t.str("code", None)
    at_least = t.int("at_least", None, min=0)
    needs = {"firmware_not_running": "version", "firmware_running": "version",
             "fault_reported": "code", "faults_injected": "at_least",
             "uploads_at_least": "at_least"}.get(check)
    given = {"version": version, "code": code, "at_least": at_least}
    if needs is not None and given[needs] is None:
        raise t.error(needs, f"check {check!r} needs {needs}")
    t.done()
    return ExpectSpec(check=check, select=select, version=version, code=code,
                      at_least=at_least)
