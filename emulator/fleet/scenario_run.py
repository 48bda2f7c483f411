"""Run a QA fault scenario: a fleet on the virtual clock, a fault timeline, expectations.

Theory of operation
-------------------
The fleet is the runner's (``runner.py``): same identities, same office task applying
each device's day of printing at its end of office hours, same embedded reference
server over real TLS. Three things are added:

* each device runs under a *supervisor* task (the clock participant): it boots an
  agent (a new :class:`~emulator.fleet.scenario_agent.ScenarioAgent` from the data
  directory), waits for it, and when it was interrupted (a checkpoint raised
  :class:`PowerLoss`/:class:`AgentKilled`, or the injector cancelled it with a reason
  in ``slot.pending``) carries out the power cut or the kill - model power loss or
  orderly power off, the off window on the clock, power on (the boot takes the
  profile's boot time), and a new agent. Exactly one of supervisor and agent is
  active at a time, so the clock's participant count stays right;
* an *injector* task (a participant) walks a heap of due actions: the timeline's
  steps, and the ends of the windows they open (network faults, server faults, skew,
  full disk, jams to clear). It changes the per-device fault proxies, the server's
  fault plan and firmware QA, the models and the supervisors;
* at the end it gathers each device's facts (its ledger of queued Upload-Ids, what
  the server stored under its serial, its firmware, the fault codes its payloads
  carried) and checks the scenario's expectations (``emulator.faults.expect``).

DNS failure is simulated by the device's fault proxy refusing connections (the agent
sees a connect error, as it does when the name does not resolve); a full disk is the
documented :class:`~emulator.faults.devicefaults.DiskFullSeam`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from device_direct.clock import Clock, SystemClock
from device_direct.config import (
    AgentConfig,
    DeviceConfig,
    RetryConfig,
    ScheduleConfig,
    ServerConfig,
    ServicesConfig,
)
from device_direct.model import JobKind, PrintJob
from device_direct.transport import Timeouts
from emulator.clock import VirtualClock
from emulator.errors import EmulatorError, ScenarioError
from emulator.faults.devicefaults import (
    AgentKilled,
    DiskFullSeam,
    Interruption,
    PowerLoss,
    ScenarioDevice,
    SkewedClock,
)
from emulator.faults.expect import DeviceFacts, lost, run_checks, stored_twice
from emulator.faults.netplan import NetFaults
from emulator.faults.netproxy import FaultProxy
from emulator.faults.scenario import Scenario
from emulator.faults.server_faults import ServerFaults
from emulator.faults.timeline import Step, Timeline, expand
from emulator.fleet.fault_logs import ExpectedFaultLogs
from emulator.fleet.fleet_agent import DeviceDone
from emulator.fleet.identities import fleet_identities
from emulator.fleet.runner import WHOLE_FLEET, Fleet, _office
from emulator.fleet.scenario_agent import DeviceSlot, ScenarioAgent
from emulator.fleet.scenario_report import ScenarioReport
from emulator.model.errors import DeviceCommandError, DeviceStateError
from emulator.model.profile import Profile, load_profile
from emulator.server.app import ReferenceServer

log = logging.getLogger("emulator.fleet.scenario")

DONE_AFTER = timedelta(days=1)  # after a device's last evening: no new payloads
GRACE = timedelta(days=1)  # then this long for retries to finish


class PowerOff(Interruption):
    """An orderly power off (a person at the switch), delivered by cancellation."""


class ScenarioFleet(Fleet):
    """The fleet of a scenario: one :class:`DeviceSlot` per device, supervised."""

    def __init__(self, scenario: Scenario, work_dir: Path, clock: VirtualClock) -> None:
        super().__init__(scenario.fleet, WHOLE_FLEET, work_dir, clock)
        self.vclock = clock
        self.scenario = scenario
        self.slots: list[DeviceSlot] = []
        self.done_at: list[datetime] = []
        tuning = scenario.agent
        self.timeouts: Timeouts | None = None
        if tuning.upload_timeout_s is not None or tuning.request_timeout_s is not None:
            self.timeouts = Timeouts(upload=tuning.upload_timeout_s or 300.0,
                                     request=tuning.request_timeout_s or 60.0)

    def build_slots(self, server: ReferenceServer, proxies: dict[int, FaultProxy]) -> None:
        """Models, clocks and agent configurations (nothing runs yet)."""
        spec, tuning = self.scenario.fleet, self.scenario.agent
        services = ServicesConfig(firmware_public_key=server.firmware_public_key_pem.decode(),
                                  auto_firmware=tuning.auto_firmware)
        retry = RetryConfig(base_s=tuning.retry_base_s, cap_s=tuning.retry_cap_s)
        ttl = (spec.days + 4) * 86400
        profiles: dict[str, Profile] = {}
        for pos, ident in enumerate(self.identities):
            profile = profiles.get(ident.profile) or load_profile(ident.profile)
            profiles[ident.profile] = profile
            clock = SkewedClock(self.clock)
            model = ScenarioDevice(profile, serial=ident.serial, clock=clock,
                                   rng_seed=ident.model_seed, state_dir=None, mac=ident.mac,
                                   fsync=False, time_zone=ident.time_zone)
            proxy = proxies.get(pos)
            port = proxy.port if proxy is not None else server.port
            config = AgentConfig(
                server=ServerConfig(url=f"https://127.0.0.1:{port}/",
                                    ca_bundle=server.ca_cert_path, server_name="localhost",
                                    registration_key=server.create_registration_key(
                                        ttl_s=ttl)),
                device=DeviceConfig(data_dir=self.work_dir / "devices" / ident.serial,
                                    time_zone=ident.time_zone, profile=ident.profile),
                schedule=ScheduleConfig(upload_time=ident.upload_time),
                services=services, retry=retry)
            slot = DeviceSlot(pos, ident, model, clock, config, proxy=proxy)
            model.checkpoint = slot.hit
            self.slots.append(slot)
            self.models.append(model)
            self.done_at.append(ident.print_at(spec, spec.days - 1) + DONE_AFTER)

    def start_agent(self, i: int) -> None:
        """The office's first evening: the device's supervisor starts."""
        slot = self.slots[i]
        slot.started = True
        self.vclock.register()
        self.tasks.append(asyncio.create_task(self._supervise(slot)))

    # -- the supervisor -------------------------------------------------------------------

    async def _supervise(self, slot: DeviceSlot) -> None:
        try:
            while True:
                agent = ScenarioAgent(slot, gate=self.gate, done_at=self.done_at[slot.position],
                                      timeouts=self.timeouts)
                slot.agent = agent
                task = asyncio.create_task(agent.run())
                slot.task = task
                try:
                    await asyncio.wait({task})
                except asyncio.CancelledError:  # the run is over
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
                finally:
                    slot.absorb(agent)
                reason, slot.pending = slot.pending, None
                if task.cancelled():
                    if reason is None:
                        return
                else:
                    exc = task.exception()
                    if isinstance(exc, DeviceDone) or exc is None:
                        return
                    if not isinstance(exc, Interruption):
                        slot.crashed = f"agent crashed: {type(exc).__name__}: {exc}"
                        log.error("%s: %s", slot.ident.serial, slot.crashed, exc_info=exc)
                        return
                    reason = exc
                await self._reboot(slot, reason)
        except Exception as exc:  # a bug of the harness: the report must say so
            slot.crashed = f"supervisor crashed: {type(exc).__name__}: {exc}"
            log.error("%s: %s", slot.ident.serial, slot.crashed, exc_info=exc)
            if slot.task is not None and slot.task.done() and not slot.task.cancelled():
                slot.task.exception()  # seen: asyncio need not log it again at exit
        finally:
            slot.task = None
            self.vclock.unregister()

    async def _reboot(self, slot: DeviceSlot, reason: Interruption) -> None:
        slot.down = True
        model = slot.model
        try:
            if isinstance(reason, AgentKilled):
                await self.clock.sleep(reason.off_s)  # the watchdog restarts the agent
            else:
                if isinstance(reason, PowerOff):
                    try:
                        await model.power_off()
                    except (DeviceStateError, DeviceCommandError):
                        model.power_loss()  # not in a state to shut down: pull the plug
                else:
                    model.power_loss()
                await self.clock.sleep(reason.off_s)
                await model.power_on()
        finally:
            slot.down = False
            slot.boots += 1

    def interrupt(self, slot: DeviceSlot, reason: Interruption, kind: str) -> None:
        """Stop the device's agent now (at whatever it awaits) for ``reason``."""
        if slot.task is None or slot.down or slot.task.done() or slot.pending is not None:
            slot.skipped[kind] += 1
            return
        slot.pending = reason
        slot.injected[kind] += 1
        slot.task.cancel()


class Injector:
    """Carries out the timeline on a running :class:`ScenarioFleet` (a clock participant)."""

    def __init__(self, fleet: ScenarioFleet, server: ReferenceServer, timeline: Timeline,
                 seam: DiskFullSeam) -> None:
        self.fleet = fleet
        self.server = server
        self.seam = seam
        models = {s.ident.profile: s.model.profile.identity.model for s in fleet.slots}
        self.server_faults = ServerFaults(server, fleet.scenario.fleet.seed, models)
        self._seq = itertools.count()
        self._heap: list[tuple[datetime, int, Callable[[], None]]] = []
        for step in timeline.steps:
            self._push(step.at, lambda s=step: self.apply(s))  # type: ignore[misc]
        self._helpers: set[asyncio.Task[None]] = set()
        self.server_injected: Counter[str] = Counter()

    def _push(self, at: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), action))

    async def run(self) -> None:
        clock = self.fleet.vclock
        try:
            while self._heap:
                at, _, action = heapq.heappop(self._heap)
                await clock.sleep_until(at)
                action()
        finally:
            clock.unregister()

    async def stop(self) -> None:
        for task in list(self._helpers):
            task.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)

    def _spawn(self, coro: object) -> None:
        # A helper that sleeps on the clock (printing) is a participant while it runs.
        self.fleet.vclock.register()

        async def run() -> None:
            try:
                await coro  # type: ignore[misc]
            except (DeviceStateError, DeviceCommandError) as exc:
                log.info("fault helper stopped: %s", exc)
            finally:
                self.fleet.vclock.unregister()

        task = asyncio.create_task(run())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _later(self, minutes: float, action: Callable[[], None]) -> None:
        self._push(self.fleet.clock.now() + timedelta(minutes=minutes), action)

    # -- one step ----------------------------------------------------------------------------

    def apply(self, step: Step) -> None:
        """Carry out ``step`` now."""
        p = step.params
        if step.device is None:
            self.server_faults.apply(step, self._later)
            self.server_injected[step.kind] += 1
            return
        slot = self.fleet.slots[step.device]
        model = slot.model
        kind = step.kind
        try:
            if kind == "power_off":
                self.fleet.interrupt(slot, PowerOff("now", p["minutes"] * 60.0), kind)
            elif kind in ("power_loss", "kill"):
                cls: type[Interruption] = PowerLoss if kind == "power_loss" else AgentKilled
                off = p["minutes"] * 60.0 if kind == "power_loss" else float(
                    p["restart_seconds"])
                if p["checkpoint"] is not None:
                    slot.arm(p["checkpoint"], cls, off)  # counted when it fires
                else:
                    self.fleet.interrupt(slot, cls("now", off), kind)
            elif kind == "net":
                self._net(slot, step)
            elif kind == "clock_skew":
                slot.skew_layers[step.order] = timedelta(minutes=p["offset_minutes"])
                slot.apply_skew()
                slot.injected[kind] += 1
                if p["minutes"] is not None:
                    def unskew() -> None:
                        slot.skew_layers.pop(step.order, None)
                        slot.apply_skew()

                    self._later(p["minutes"], unskew)
            elif kind == "disk_full":
                data_dir = slot.config.device.data_dir
                self.seam.fill(data_dir)
                slot.injected[kind] += 1
                self._later(p["minutes"], lambda: self.seam.free(data_dir))
            elif kind == "jam_storm":
                self._jam_storm(slot, p["count"], p["interval_minutes"], p["clear_minutes"],
                                p["code"])
            elif kind == "fault":
                model.inject_fault(p["code"])
                slot.injected[kind] += 1
                if p["minutes"] is not None:
                    self._later(p["minutes"], model.clear_fault)
            elif kind == "door_open":
                model.inject_fault(door_code(model.profile))
                slot.injected[kind] += 1
                self._later(p["minutes"], model.clear_fault)
            elif kind == "toner_empty":
                self._spawn(self._empty_toner(slot, p["replace_minutes"]))
            else:  # pragma: no cover - the scenario reader knows every kind
                raise ScenarioError(f"{step.source}: no injector for kind {kind!r}")
        except (DeviceStateError, DeviceCommandError) as exc:
            slot.skipped[kind] += 1  # e.g. a jam while the power is off
            log.info("%s: %s skipped: %s", slot.ident.serial, kind, exc)

    def _net(self, slot: DeviceSlot, step: Step) -> None:
        p = step.params
        if slot.proxy is None:  # pragma: no cover - proxies are made for every net target
            raise ScenarioError(f"{step.source}: {slot.ident.serial} has no fault proxy")
        faults = NetFaults(cut=p["cut"] or p["dns_fail"], blackhole=p["blackhole"],
                           latency_s=p["latency_ms"] / 1000, bandwidth_bps=p["bandwidth_bps"],
                           reset_after_bytes=p["reset_after_bytes"])
        slot.net_layers[step.order] = faults
        slot.apply_net()
        slot.injected["net"] += 1

        def end() -> None:
            slot.net_layers.pop(step.order, None)
            slot.apply_net()

        self._later(p["minutes"], end)

    def _jam_storm(self, slot: DeviceSlot, count: int, interval: int, clear: int,
                   code: str | None) -> None:
        model = slot.model

        def jam() -> None:
            try:
                model.jam(code)
                slot.injected["jam_storm"] += 1
            except (DeviceStateError, DeviceCommandError):
                slot.skipped["jam_storm"] += 1
            self._later(min(clear, interval), model.clear_fault)

        jam()
        for k in range(1, count):
            self._later(k * interval, jam)

    async def _empty_toner(self, slot: DeviceSlot, replace_minutes: int | None) -> None:
        model = slot.model
        toner = [s for s in model.snapshot().supplies
                 if s.type in ("toner", "tonerCartridge") and s.colorant in ("black", "")]
        if not toner:
            raise ScenarioError(f"{slot.ident.serial}: profile {model.profile.name} has no "
                                "black toner")
        index = toner[0].index
        for _ in range(200):  # a big job at full coverage, until the cartridge is empty
            supply = next(s for s in model.snapshot().supplies if s.index == index)
            if supply.status == "empty" or supply.level == 0:
                slot.injected["toner_empty"] += 1
                break
            model.clear_fault()  # a jam during the job: the operator clears it
            await model.print_job(PrintJob(kind=JobKind.PRINT, pages=500, coverage=1.0))
        else:
            slot.skipped["toner_empty"] += 1
            return
        if replace_minutes is not None:
            await self.fleet.clock.sleep(replace_minutes * 60)
            model.replace_supply(index)


def door_code(profile: Profile) -> str:
    """The profile's door or cover open fault (alert coverOpen 3 or doorOpen 501)."""
    for f in profile.faults:
        if f.alert_code in (3, 501):
            return f.code
    raise ScenarioError(f"profile {profile.name} has no door or cover open fault; select "
                        "other profiles for door_open")


def _check_codes(scenario: Scenario, fleet: ScenarioFleet, timeline: Timeline) -> None:
    """Refuse, before running, codes a selected device's profile does not know."""
    for step in timeline.steps:
        if step.device is None:
            continue
        profile = fleet.models[step.device].profile
        code = step.params.get("code")
        if step.kind == "door_open":
            door_code(profile)
        elif code is not None:
            try:
                profile.fault(code)
            except KeyError:
                raise ScenarioError(
                    f"{scenario.source}: {step.source}: {fleet.identities[step.device].serial} "
                    f"(profile {profile.name}) has no fault {code}; known: "
                    f"{', '.join(f.code for f in profile.faults)}") from None


async def run_scenario(scenario: Scenario, work_dir: Path, *, wall: Clock | None = None,
                       progress: Callable[[int, int, datetime], None] | None = None,
                       quiet_faults: bool = True) -> ScenarioReport:
    """Run ``scenario`` with an embedded reference server under ``work_dir``.

    The warnings and errors the injected faults cause are counted by kind in the report;
    ``quiet_faults`` keeps them off the log (one INFO line per kind instead)."""
    with ExpectedFaultLogs(quiet=quiet_faults).installed() as fault_logs:
        report = await _run_scenario(scenario, work_dir, wall=wall, progress=progress)
    return replace(report, expected_fault_logs=dict(fault_logs.counts.most_common()))


async def _run_scenario(scenario: Scenario, work_dir: Path, *, wall: Clock | None,
                        progress: Callable[[int, int, datetime], None] | None
                        ) -> ScenarioReport:
    wall = wall or SystemClock()
    started = wall.monotonic()
    spec = scenario.fleet
    identities = fleet_identities(spec)
    timeline = expand(scenario, identities)
    first = min(i.print_at(spec, 0) for i in identities)
    if timeline.steps:
        first = min(first, timeline.steps[0].at)
    last = max(i.print_at(spec, spec.days - 1) for i in identities)
    deadline = last + DONE_AFTER + DONE_AFTER + GRACE
    clock = VirtualClock(first - timedelta(minutes=1))
    fleet = ScenarioFleet(scenario, work_dir, clock)
    server = ReferenceServer(work_dir / "server", clock=clock, rng=random.Random(spec.seed))
    proxies: dict[int, FaultProxy] = {}
    injector: Injector | None = None
    ticker: asyncio.Task[None] | None = None
    with DiskFullSeam() as seam:
        try:
            await server.start()
            for pos in sorted({s.device for s in timeline.steps
                               if s.kind == "net" and s.device is not None}):
                proxies[pos] = FaultProxy("127.0.0.1", server.port)
                await proxies[pos].start()
            fleet.build_slots(server, proxies)
            _check_codes(scenario, fleet, timeline)
            injector = Injector(fleet, server, timeline, seam)
            if progress is not None:
                ticker = asyncio.create_task(_tick(fleet, progress, wall))
            clock.register()  # the office
            clock.register()  # the injector
            office = asyncio.create_task(_office(fleet, clock, deadline))
            inject = asyncio.create_task(injector.run())
            await office
            if not inject.done():
                inject.cancel()
            await asyncio.gather(inject, return_exceptions=True)
            await asyncio.gather(*fleet.tasks, return_exceptions=True)
            if progress is not None:  # the last tick may have come before the end
                progress(fleet.scenario.fleet.days, fleet.scenario.fleet.days, clock.now())
            facts = _gather_facts(fleet, server)
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            if injector is not None:
                await injector.stop()
            for task in fleet.tasks:
                task.cancel()
            await asyncio.gather(*fleet.tasks, return_exceptions=True)
            for proxy in proxies.values():
                await proxy.stop()
            await server.stop()
    injected = Counter[str]()
    skipped = Counter[str]()
    for slot in fleet.slots:
        injected.update(slot.injected)
        skipped.update(slot.skipped)
    assert injector is not None
    injected.update(injector.server_injected)
    armed = Counter(cp for slot in fleet.slots for cp, _, _ in slot.armed)
    checks = run_checks(scenario, fleet.identities, facts, timeline.picked,
                        sum(injected.values()))
    return ScenarioReport(
        scenario=scenario.name, description=scenario.description, source=scenario.source,
        devices=spec.devices, days=spec.days, seed=spec.seed, checks=checks,
        injected=dict(sorted(injected.items())), skipped=dict(sorted(skipped.items())),
        armed_not_fired=dict(sorted(armed.items())),
        payloads_queued=sum(len(f.queued) for f in facts),
        uploads_stored=sum(len(f.stored) for f in facts),
        payloads_lost=sum(len(set(f.queued) - {u for u, _ in f.stored}) for f in facts),
        stored_twice=sum(len(f.stored) - len({s for _, s in f.stored}) +
                         sum(1 for u, _ in f.stored if u not in set(f.queued)) for f in facts),
        devices_lost=tuple(f.serial for f in facts if lost(f)),
        devices_twice=tuple(f.serial for f in facts if stored_twice(f)),
        totals=dict(sum((s.totals for s in fleet.slots), Counter())),
        not_built_disk_full=sum(s.not_built_storage for s in fleet.slots),
        reboots=sum(s.boots for s in fleet.slots),
        wall_s=wall.monotonic() - started)


def _gather_facts(fleet: ScenarioFleet, server: ReferenceServer) -> list[DeviceFacts]:
    ids_by_serial: dict[str, list[str]] = {}
    for d in server.storage.devices():
        ids_by_serial.setdefault(str(d["serial"]), []).append(str(d["device_id"]))
    facts = []
    for slot in fleet.slots:
        stored: list[tuple[str, int]] = []
        codes: set[str] = set()
        for device_id in ids_by_serial.get(slot.ident.serial, []):
            for u in server.storage.uploads(device_id):
                stored.append((str(u["upload_id"]), int(u["sequence"])))
                codes.update(str(f["code"]) for f in u["faults"])
        agent = slot.agent
        facts.append(DeviceFacts(
            position=slot.position, serial=slot.ident.serial, profile=slot.ident.profile,
            queued=tuple(slot.queued), stored=tuple(stored),
            left_in_outbox=len(agent.outbox.entries()) if agent is not None else 0,
            firmware=slot.model.firmware().running_version, reported_codes=frozenset(codes),
            faults_injected=sum(slot.injected.values()), crashed=slot.crashed,
            firmware_seen=frozenset(slot.model.versions_run),
            last_error=slot.last_error))
    return facts


async def _tick(fleet: ScenarioFleet, progress: Callable[[int, int, datetime], None],
                wall: Clock) -> None:
    # Scenario devices run to a time, not to a count of payloads (faults may cost days),
    # so progress is the share of the scenario's virtual span that has passed.
    spec = fleet.scenario.fleet
    start = min(i.print_at(spec, 0) for i in fleet.identities)
    end = max(fleet.done_at, default=start)
    span = max((end - start).total_seconds(), 1.0)
    while True:  # real time, not a participant: it only looks
        now = fleet.clock.now()
        passed = min(max((now - start).total_seconds() / span, 0.0), 1.0)
        progress(round(passed * spec.days), spec.days, now)
        await wall.sleep(0.25)


__all__ = ["EmulatorError", "Injector", "ScenarioFleet", "door_code", "run_scenario"]
