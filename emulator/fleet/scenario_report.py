"""A scenario run's outcome: the checks, the faults injected, the two key counts.

A value, printed by ``python -m emulator fleet --scenario FILE`` and written as JSON
with ``--report``. ``payloads lost`` and ``stored twice`` are always printed, whatever
the scenario expects, since they are what a fault scenario exists to watch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.faults.expect import CheckResult
from emulator.fleet.report_schema import envelope, expectation


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
    # kind -> warning/error log lines the injected faults caused (see fault_logs.py)
    expected_fault_logs: Mapping[str, int] = field(default_factory=dict)

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
        logs = sum(self.expected_fault_logs.values())
        if logs:
            kinds = len(self.expected_fault_logs)
            out.append(f"fault log lines  {logs} expected ({kinds} kind"
                       f"{'s' if kinds != 1 else ''}; --log-level info shows one per kind, "
                       "debug each)")
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
        """JSON-ready dict (``--report FILE``), in the layout of ``report_schema.py``."""
        totals = {**self.totals, "payloads_queued": self.payloads_queued,
                  "uploads_stored": self.uploads_stored, "payloads_lost": self.payloads_lost,
                  "stored_twice": self.stored_twice, "reboots": self.reboots,
                  "faults_injected": self.faults_injected,
                  "not_built_disk_full": self.not_built_disk_full,
                  "expected_fault_logs": sum(self.expected_fault_logs.values())}
        data = envelope(
            "scenario", ok=self.ok,
            fleet={"devices": self.devices, "days": self.days, "seed": self.seed},
            totals=totals, wall_s=self.wall_s,
            expectations=[expectation(c.name, c.ok, c.detail, c.failures)
                          for c in self.checks])
        data["scenario"] = {
            "name": self.scenario, "description": self.description, "source": self.source,
            "injected": dict(self.injected), "skipped": dict(self.skipped),
            "armed_not_fired": dict(self.armed_not_fired),
            "devices_lost": list(self.devices_lost), "devices_twice": list(self.devices_twice),
            "expected_fault_logs": dict(self.expected_fault_logs),
        }
        return data

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1, default=str)
            fh.write("\n")
