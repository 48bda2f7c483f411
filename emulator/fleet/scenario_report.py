"""A scenario run's outcome: the checks, the faults injected, the two key counts.

A value, printed by ``python -m emulator fleet --scenario FILE`` and written as JSON
with ``--report``. ``payloads lost`` and ``stored twice`` are always printed, whatever
the scenario expects, since they are what a fault scenario exists to watch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.faults.expect import CheckResult


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    """What a scenario run did and whether its expectations held."""

    scenario: str
    description: str
    source: str
    devices: int
    days: int
    seed: int
    checks: tuple[CheckResult, ...]
    injected: Mapping[str, int]  # fault kind -> times applied to a device or the server
    skipped: Mapping[str, int]  # kind -> times it could not apply (device off, ...)
    armed_not_fired: Mapping[str, int]  # checkpoint -> armed faults never reached
    payloads_queued: int
    uploads_stored: int
    payloads_lost: int
    stored_twice: int
    devices_lost: tuple[str, ...] = ()
    devices_twice: tuple[str, ...] = ()
    totals: Mapping[str, int] = field(default_factory=dict)
    not_built_disk_full: int = 0
    reboots: int = 0
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if min(self.payloads_queued, self.uploads_stored, self.payloads_lost,
               self.stored_twice, self.reboots) < 0 or self.wall_s < 0:
            raise ValueError("ScenarioReport counts must be >= 0")

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def faults_injected(self) -> int:
        return sum(self.injected.values())

    def lines(self) -> list[str]:
        """The printed summary: counts, faults by kind, then each check."""
        t = self.totals
        out = [f"scenario {self.scenario} ({self.source})",
               f"  {self.description}" if self.description else "",
               "-" * 60,
               f"fleet            {self.devices} devices x {self.days} days, seed {self.seed}",
               f"faults injected  {self.faults_injected} "
               f"({', '.join(f'{k} {v}' for k, v in self.injected.items()) or 'none'})"]
        if self.skipped:
            out.append("skipped          " + ", ".join(f"{k} {v}" for k, v in
                                                        self.skipped.items())
                       + " (device off or agent not running)")
        if self.armed_not_fired:
            out.append("armed, unused    " + ", ".join(f"{k} {v}" for k, v in
                                                        self.armed_not_fired.items()))
        out += [f"reboots          {self.reboots}",
                f"payloads queued  {self.payloads_queued}",
                f"uploads stored   {self.uploads_stored}",
                f"retries          {t.get('send_failures', 0)}",
                f"duplicates acked {t.get('uploads_duplicate', 0)}"]
        if self.not_built_disk_full:
            out.append(f"not built (disk) {self.not_built_disk_full}")
        out += [f"payloads lost    {self.payloads_lost}",
                f"stored twice     {self.stored_twice}",
                f"wall time        {self.wall_s:.1f} s",
                "-" * 60]
        for check in self.checks:
            out += check.lines()
        return [line for line in out if line]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``--report FILE``)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["faults_injected"] = self.faults_injected
        data["checks"] = [asdict(c) for c in self.checks]
        return data

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1, default=str)
            fh.write("\n")
