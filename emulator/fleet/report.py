"""A fleet run's outcome: per-device results, expectations, the summary table, JSON.

A report is a value. Shards produce one each; :func:`merge_reports` joins them (the
devices are disjoint) and the expectations are checked again on the whole, so K
processes report like one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from emulator.fleet.report_schema import check_envelope, envelope, expectation


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """What one device did during the run."""

    index: int
    serial: str
    profile: str
    time_zone: str
    device_id: str | None
    payloads_built: int
    uploads_stored: int
    uploads_duplicate: int
    uploads_rejected: int
    send_failures: int
    registrations: int
    bytes_sent: int
    actions_run: int
    action_polls: int
    firmware_checks: int
    faults: int
    jams: int
    queued: int  # payloads still in the outbox at the end
    finished: bool
    last_error: str = ""
    actions_issued: int = 0  # by the server, on the fleet's --actions plan
    actions_refused: int = 0  # answered rejected or expired

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"DeviceOutcome.{f.name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class Expectation:
    """One check of the run: its name, whether it held, and why not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FleetReport:
    """The outcome of a fleet run (one shard, or all of them merged)."""

    devices: int  # fleet size (all shards)
    days: int
    seed: int
    mix: str
    shards: tuple[str, ...]
    outcomes: tuple[DeviceOutcome, ...]
    wall_s: float
    server_uploads: Mapping[str, int] | None = None  # serial -> uploads the server holds
    expectations: tuple[Expectation, ...] = field(default=())
    actions: str = ""  # the --actions plan ("" for none)
    loop: str = ""  # the event loop it ran on: uvloop | asyncio (shards: each one's)
    tls: str = ""  # the devices' TLS library: "bundled (OpenSSL 4.0.3 ...)" (shards: each's)

    def __post_init__(self) -> None:
        if self.wall_s < 0:
            raise ValueError(f"wall_s must be >= 0, got {self.wall_s}")

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.expectations)

    @property
    def device_days(self) -> int:
        return len(self.outcomes) * self.days

    def totals(self) -> dict[str, int]:
        """Sums over the devices of every counter."""
        keys = ("payloads_built", "uploads_stored", "uploads_duplicate", "uploads_rejected",
                "send_failures", "registrations", "bytes_sent", "actions_issued",
                "actions_run", "actions_refused", "action_polls", "firmware_checks", "faults",
                "jams", "queued")
        out = {k: sum(getattr(o, k) for o in self.outcomes) for k in keys}
        out["devices_run"] = len(self.outcomes)
        out["devices_finished"] = sum(o.finished for o in self.outcomes)
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``--report FILE``)."""
        rate = self.device_days / self.wall_s if self.wall_s > 0 else 0.0
        data = envelope(
            "fleet", ok=self.ok,
            fleet={"devices": self.devices, "days": self.days, "seed": self.seed,
                   "mix": self.mix, "actions": self.actions, "shards": list(self.shards),
                   "loop": self.loop, "tls": self.tls},
            totals=self.totals(), wall_s=self.wall_s,
            expectations=[expectation(e.name, e.ok, e.detail) for e in self.expectations])
        data.update({
            "device_days": self.device_days,
            "device_days_per_s": round(rate, 2),
            "server_uploads": dict(self.server_uploads) if self.server_uploads is not None
            else None,
            "devices": [asdict(o) for o in self.outcomes],
        })
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetReport:
        """Read back what :meth:`to_json` wrote (a shard's report file)."""
        check_envelope(data, "fleet")
        fleet = data["fleet"]
        server = data.get("server_uploads")
        return cls(
            devices=int(fleet["devices"]), days=int(fleet["days"]), seed=int(fleet["seed"]),
            mix=str(fleet["mix"]), shards=tuple(fleet["shards"]),
            outcomes=tuple(DeviceOutcome(**d) for d in data["devices"]),
            wall_s=float(data["wall_s"]),
            server_uploads=dict(server) if server is not None else None,
            expectations=tuple(Expectation(str(e["name"]), bool(e["ok"]), str(e["detail"]))
                               for e in data["expectations"]),
            actions=str(fleet.get("actions", "")),
            loop=str(fleet.get("loop", "")),
            tls=str(fleet.get("tls", "")),
        )


def check(report: FleetReport, *, complete_fleet: bool) -> FleetReport:
    """The report with its expectations (re)computed.

    ``complete_fleet``: the report should cover every device of the fleet (all shards).
    """
    found: list[Expectation] = []
    outcomes = report.outcomes
    if complete_fleet:
        indices = sorted(o.index for o in outcomes)
        found.append(Expectation(
            "every device of the fleet ran once", indices == list(range(report.devices)),
            f"{len(indices)} outcomes for a fleet of {report.devices}"))
    unfinished = [o.serial for o in outcomes if not o.finished]
    found.append(Expectation(
        "every device built and delivered one payload per day", not unfinished,
        _some(unfinished, "unfinished") + _errors(outcomes)))
    lost = [o.serial for o in outcomes
            if o.uploads_stored + o.uploads_duplicate != o.payloads_built or o.queued]
    found.append(Expectation(
        "no payload lost (stored or acknowledged as duplicate, none left queued)", not lost,
        _some(lost, "with payloads not delivered")))
    rejected = [o.serial for o in outcomes if o.uploads_rejected]
    found.append(Expectation("no payload rejected by the server", not rejected,
                             _some(rejected, "with rejected payloads")))
    if any(o.actions_issued for o in outcomes):
        unanswered = [f"{o.serial} ({o.actions_run + o.actions_refused} of "
                      f"{o.actions_issued})" for o in outcomes
                      if o.actions_run + o.actions_refused != o.actions_issued]
        found.append(Expectation(
            "every action issued was run or refused, and its result reported",
            not unanswered, _some(unanswered, "with actions unanswered")))
    if report.server_uploads is not None:
        wrong = [f"{o.serial} (server {report.server_uploads.get(o.serial, 0)}, "
                 f"built {o.payloads_built})" for o in outcomes
                 if report.server_uploads.get(o.serial, 0) != o.payloads_built]
        found.append(Expectation(
            "the server stored every payload built exactly once", not wrong,
            _some(wrong, "differ")))
    return replace(report, expectations=tuple(found))


def _some(items: Sequence[str], what: str, limit: int = 5) -> str:
    if not items:
        return ""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)} devices {what}: {', '.join(items[:limit])}{more}"


def _errors(outcomes: Iterable[DeviceOutcome]) -> str:
    errors = sorted({o.last_error for o in outcomes if o.last_error and not o.finished})
    return f"; last errors: {' | '.join(errors[:3])}" if errors else ""


def merge_reports(parts: Sequence[FleetReport], *, wall_s: float,
                  server_uploads: Mapping[str, int] | None) -> FleetReport:
    """Join shard reports of one fleet and check the whole."""
    if not parts:
        raise ValueError("no shard reports to merge")
    first = parts[0]
    for p in parts[1:]:
        if (p.devices, p.days, p.seed, p.mix, p.actions) != (
                first.devices, first.days, first.seed, first.mix, first.actions):
            raise ValueError("shard reports are from different fleets")
    outcomes = tuple(sorted((o for p in parts for o in p.outcomes), key=lambda o: o.index))
    merged = FleetReport(
        devices=first.devices, days=first.days, seed=first.seed, mix=first.mix,
        shards=tuple(s for p in parts for s in p.shards), outcomes=outcomes, wall_s=wall_s,
        server_uploads=server_uploads, actions=first.actions,
        loop=",".join(sorted({p.loop for p in parts if p.loop})),
        tls=", ".join(sorted({p.tls for p in parts if p.tls})))
    return check(merged, complete_fleet=True)


def summary_table(report: FleetReport) -> str:
    """The end-of-run summary: one aligned table, then the expectations."""
    t = report.totals()
    rate = report.device_days / report.wall_s if report.wall_s > 0 else 0.0
    rows = [
        ("devices", f"{t['devices_run']} of {report.devices} (shards {', '.join(report.shards)})"),
        ("days", str(report.days)),
        ("device-days", str(report.device_days)),
        ("payloads built", str(t["payloads_built"])),
        ("uploads stored", str(t["uploads_stored"])),
        ("duplicates", str(t["uploads_duplicate"])),
        ("rejected", str(t["uploads_rejected"])),
        ("retries", str(t["send_failures"])),
        ("registrations", str(t["registrations"])),
        ("actions run", f"{t['actions_run']} of {t['actions_issued']} issued, "
                        f"{t['actions_refused']} refused ({t['action_polls']} polls)"),
        ("firmware checks", str(t["firmware_checks"])),
        ("faults", f"{t['faults']} ({t['jams']} jams)"),
        ("bytes sent", f"{t['bytes_sent']:,}"),
        ("wall time", f"{report.wall_s:.1f} s" + (f" ({report.loop})" if report.loop else "")),
        ("device-days/s", f"{rate:.1f}"),
    ]
    if report.tls:
        rows.insert(-2, ("TLS library", report.tls))
    if report.server_uploads is not None:
        rows.insert(5, ("server holds", str(sum(report.server_uploads.values()))))
    width = max(len(k) for k, _ in rows)
    lines = ["fleet summary", "-" * (width + 30)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("-" * (width + 30))
    for e in report.expectations:
        mark = "ok  " if e.ok else "FAIL"
        lines.append(f"[{mark}] {e.name}" + (f": {e.detail}" if e.detail and not e.ok else ""))
    return "\n".join(lines)


def write_report(report: FleetReport, path: str) -> None:
    """Write the JSON report to ``path``."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.to_json(), fh, indent=1)
        fh.write("\n")
