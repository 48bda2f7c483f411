"""Scenario expectations, checked on what the devices and the server hold at the end.

Pure functions over :class:`DeviceFacts` (one per device, gathered by the shell from
the agent's ledger, its outbox, the model and the server's storage). Each check returns
a :class:`CheckResult` naming every device that broke it and why, so a failed run says
"DD1A2B0000003: sequence 5 stored twice (ids ..., ...)", not just "failed".

The two checks every scenario should carry:

* ``stored_once``: no sequence number of a device is stored twice on the server, and
  the server holds nothing the device never queued (a payload re-sent under a new
  Upload-Id shows up here);
* ``none_lost``: every payload a device queued durably (its outbox acknowledged it) is
  stored on the server by the end of the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from emulator.faults.scenario import ExpectSpec, Scenario
from emulator.faults.timeline import select
from emulator.fleet.identities import DeviceIdentity

SHOW = 10  # devices listed per failed check; the rest are counted


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What is known about one device at the end of a scenario run."""

    position: int
    serial: str
    profile: str
    queued: tuple[str, ...]  # Upload-Ids the device queued durably, every boot included
    stored: tuple[tuple[str, int], ...]  # (Upload-Id, sequence) the server stored for it
    left_in_outbox: int
    firmware: str  # running system firmware version at the end
    reported_codes: frozenset[str]  # fault codes found in the stored payloads
    faults_injected: int = 0
    firmware_seen: frozenset[str] = frozenset()  # every version it ran during the run
    crashed: str = ""
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.left_in_outbox < 0 or self.faults_injected < 0:
            raise ValueError("counts must be >= 0")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One expectation's outcome: ``failures`` are (serial, why) pairs."""

    name: str
    ok: bool
    failures: tuple[tuple[str, str], ...] = ()
    detail: str = ""

    def lines(self) -> list[str]:
        """Human lines: the verdict, then one line per failing device (bounded)."""
        mark = "ok  " if self.ok else "FAIL"
        out = [f"[{mark}] {self.name}" + (f": {self.detail}" if self.detail else "")]
        for serial, why in self.failures[:SHOW]:
            out.append(f"         {serial}: {why}")
        if len(self.failures) > SHOW:
            out.append(f"         ... and {len(self.failures) - SHOW} more devices")
        return out


def stored_twice(facts: DeviceFacts) -> list[str]:
    """Why ``facts`` breaks "stored exactly once" (empty: it does not)."""
    why = []
    seqs = Counter(seq for _, seq in facts.stored)
    for seq, n in sorted(seqs.items()):
        if n > 1:
            ids = [uid for uid, s in facts.stored if s == seq]
            why.append(f"sequence {seq} stored {n} times (Upload-Ids {', '.join(ids)})")
    per_id = Counter(uid for uid, _ in facts.stored)
    why += [f"Upload-Id {uid} stored {n} times" for uid, n in per_id.items() if n > 1]
    queued = set(facts.queued)
    strangers = [uid for uid, _ in facts.stored if uid not in queued]
    if strangers:
        why.append(f"server holds {len(strangers)} upload(s) the device never queued "
                   f"({', '.join(strangers[:3])})")
    return why


def lost(facts: DeviceFacts) -> str:
    """Why payloads of ``facts`` are lost ("" when none is)."""
    stored = {uid for uid, _ in facts.stored}
    missing = [uid for uid in facts.queued if uid not in stored]
    if not missing:
        return ""
    where = (f"{facts.left_in_outbox} still in the outbox at the end" if facts.left_in_outbox
             else "none left in the outbox (dropped or deleted unsent)")
    err = f"; last error: {facts.last_error}" if facts.last_error else ""
    return (f"{len(missing)} of {len(facts.queued)} queued payloads never stored ({where}; "
            f"first {missing[0]}){err}")


def _not_running(e: ExpectSpec) -> Callable[[DeviceFacts], str]:
    def why(f: DeviceFacts) -> str:
        if f.firmware == e.version:
            return f"runs {f.firmware}"
        if e.version in f.firmware_seen:
            return f"ran {e.version} during the run (now {f.firmware})"
        return ""

    return why


def run_checks(scenario: Scenario, identities: Sequence[DeviceIdentity],
               facts: Sequence[DeviceFacts], picked: Mapping[str, tuple[int, ...]],
               injected: int) -> tuple[CheckResult, ...]:
    """Every expectation of ``scenario``, in file order."""
    return tuple(_one(e, n, scenario, identities, facts, picked, injected)
                 for n, e in enumerate(scenario.expectations))


def _one(e: ExpectSpec, n: int, scenario: Scenario, identities: Sequence[DeviceIdentity],
         facts: Sequence[DeviceFacts], picked: Mapping[str, tuple[int, ...]],
         injected: int) -> CheckResult:
    import random

    chosen = select(e.select, identities, random.Random(f"expect:{scenario.fleet.seed}:{n}"),
                    picked)
    mine = [facts[p] for p in chosen]
    who = "" if e.select.everyone else f" ({len(mine)} selected devices)"
    if e.check == "faults_injected":
        assert e.at_least is not None
        return CheckResult(f"at least {e.at_least} faults injected", injected >= e.at_least,
                           detail=f"{injected} injected")
    table: dict[str, tuple[str, Callable[[DeviceFacts], str]]] = {
        "stored_once": ("every payload stored exactly once",
                        lambda f: "; ".join(stored_twice(f))),
        "none_lost": ("no upload lost", lost),
        "firmware_not_running": (f"no device runs firmware {e.version}", _not_running(e)),
        "firmware_running": (f"devices run firmware {e.version}",
                             lambda f: f"runs {f.firmware}" if f.firmware != e.version
                             else ""),
        "fault_reported": (f"devices reported fault {e.code}",
                           lambda f: "" if e.code in f.reported_codes else
                           f"no stored payload carries {e.code} (reported: "
                           f"{', '.join(sorted(f.reported_codes)) or 'none'})"),
        "no_crash": ("no agent crashed", lambda f: f.crashed),
        "uploads_at_least": (f"devices have at least {e.at_least} uploads stored",
                             lambda f: f"only {len(f.stored)} stored"
                             if len(f.stored) < (e.at_least or 0) else ""),
    }
    name, why = table[e.check]
    failures = tuple((f.serial, w) for f in mine if (w := why(f)))
    detail = ""
    if e.check == "stored_once":
        detail = f"{sum(1 for f in mine if stored_twice(f))} devices with a payload stored twice"
    elif e.check == "none_lost":
        count = sum(len(set(f.queued) - {u for u, _ in f.stored}) for f in mine)
        detail = f"{count} payloads lost"
    elif failures:
        detail = f"{len(failures)} of {len(mine)} devices"
    return CheckResult(name + who, not failures, failures, detail)
