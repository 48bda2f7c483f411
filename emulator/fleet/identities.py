"""Who each device of a fleet is: serial, MAC, time zone, upload time, profile.

Everything is a pure function of (spec, global index): a shard, another process or
another machine derives the same identity for device 42 without talking to anyone.
Per-device values come from SHA-256 of ``"<seed>:<index>"``; the profile mix is exact
(largest-remainder counts), laid over the fleet by one seeded shuffle, so 50 devices
at 70/25/5 are 35/13/2, not "about" that.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from emulator.fleet.spec import FleetSpec
from emulator.model.profile import load_profile


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """One fleet device as the fleet sees it."""

    index: int  # global index in the fleet, 0-based
    serial: str
    mac: str
    time_zone: str
    upload_time: time  # device-local
    profile: str
    model_seed: int  # seeds the emulated model's days
    agent_seed: int  # seeds the agent's jitter and Upload-Ids
    # device-local time its day's printing is applied: the fleet's print time, or the end
    # of the profile's office hours when later (a production shop prints until 22:00)
    print_time: time = time(19, 0)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        if not self.serial or len(self.serial) > 32:
            raise ValueError(f"serial must be 1..32 characters, got {self.serial!r}")

    def local_day(self, spec: FleetSpec, k: int) -> date:
        """The k-th device-local day of printing (0-based)."""
        return spec.start + timedelta(days=k)

    def print_at(self, spec: FleetSpec, k: int) -> datetime:
        """When (UTC) the k-th day's printing is applied: end of office hours, local."""
        day = self.local_day(spec, k)
        local = datetime.combine(day, self.print_time, tzinfo=ZoneInfo(self.time_zone))
        return local.astimezone(UTC)

    def actions_on(self, spec: FleetSpec, k: int) -> tuple[str, ...]:
        """The action types the server issues to this device on the evening of day k.

        A pure function of (seed, index, k), like everything here; none on day 0,
        before the device has registered (its first upload is the next morning).
        """
        if k < 1 or not spec.actions:
            return ()
        rng = random.Random(f"actions:{spec.seed}:{self.index}:{k}")
        return tuple(name for name, p in spec.actions if rng.random() < p)


def _digest(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"{seed}:{index}".encode()).digest()


def serial_prefix(seed: int) -> str:
    """Four hex digits naming the fleet: two fleets with other seeds do not collide."""
    return hashlib.sha256(f"fleet:{seed}".encode()).hexdigest()[:4].upper()


def profile_counts(spec: FleetSpec) -> dict[str, int]:
    """How many devices of each profile (largest remainder, ties to the earlier entry)."""
    total = sum(w for _, w in spec.mix)
    exact = [(name, spec.devices * w / total) for name, w in spec.mix]
    counts = {name: int(x) for name, x in exact}
    left = spec.devices - sum(counts.values())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
    for i in order[:left]:
        counts[exact[i][0]] += 1
    return counts


def profile_layout(spec: FleetSpec) -> list[str]:
    """The profile name of every device, by global index."""
    names: list[str] = []
    for name, n in profile_counts(spec).items():
        names.extend([name] * n)
    # One shuffle seeded by the fleet seed alone: every shard computes the same layout.
    random.Random(f"mix:{spec.seed}").shuffle(names)
    return names


def identity_for(spec: FleetSpec, index: int, profile: str) -> DeviceIdentity:
    """Device ``index`` of the fleet (``profile`` from :func:`profile_layout`)."""
    if not 0 <= index < spec.devices:
        raise ValueError(f"device index must be 0..{spec.devices - 1}, got {index}")
    d = _digest(spec.seed, index)
    mac = "02:" + ":".join(f"{b:02x}" for b in d[:5])  # locally administered, unicast
    zone = spec.zones[d[5] % len(spec.zones)]
    offset = int.from_bytes(d[6:10], "big") % spec.upload_window.minutes
    return DeviceIdentity(
        index=index,
        serial=f"DD{serial_prefix(spec.seed)}{index:07d}",
        mac=mac,
        time_zone=zone,
        upload_time=spec.upload_window.at(offset),
        profile=profile,
        model_seed=int.from_bytes(d[10:14], "big"),
        agent_seed=int.from_bytes(d[14:22], "big"),
        print_time=max(spec.print_time, _office_end(profile)),
    )


def _office_end(profile: str) -> time:
    """The end of the office hours of ``profile`` (local), 23:59 for a 24-hour shop."""
    hour = load_profile(profile).usage.office_end_hour
    return time(23, 59) if hour >= 24 else time(hour, 0)


def fleet_identities(spec: FleetSpec, indices: range | None = None) -> list[DeviceIdentity]:
    """Identities of the devices at ``indices`` (the whole fleet when None)."""
    layout = profile_layout(spec)
    wanted = indices if indices is not None else range(spec.devices)
    return [identity_for(spec, i, layout[i]) for i in wanted]
