"""One device of a fault scenario: what survives its reboots, and its agent's edges.

A :class:`DeviceSlot` is the device as the scenario sees it across power cycles: the
model (non-volatile state lives there), its own clock, its agent configuration and data
directory, the checkpoints armed against it, and a ledger of every payload any of its
agents queued. Each boot builds a NEW :class:`ScenarioAgent` from the data directory,
as a real reboot would: nothing of the old agent's memory survives.

:class:`ScenarioAgent` is the fleet's agent with three things added:

* it records each payload it queued durably (the Upload-Id) in the slot's ledger, the
  ground truth for "no upload lost";
* it is done at a fixed instant (after the device's last day of the run) once its
  outbox is empty, whatever number of payloads power cuts made it skip;
* its transport (:class:`ScenarioTransport`) fires the fleet's own checkpoints:
  ``upload-acked`` (the server answered, the outbox has not recorded it yet) and
  ``download`` (each firmware image chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from device_direct.agent import Agent, SyncStats
from device_direct.config import AgentConfig
from device_direct.core.payload import Trigger
from device_direct.errors import StorageError
from device_direct.transport import Timeouts, Transport, UploadResult
from emulator.faults.devicefaults import (
    AgentKilled,
    Interruption,
    PowerLoss,
    ScenarioDevice,
    SkewedClock,
)
from emulator.faults.netplan import NetFaults
from emulator.faults.netproxy import FaultProxy
from emulator.fleet.fleet_agent import CountingTransport, FleetAgent, FleetCounters
from emulator.fleet.identities import DeviceIdentity

log = logging.getLogger("emulator.fleet.scenario")


@dataclass(slots=True)
class DeviceSlot:
    """A scenario device across its boots."""

    position: int
    ident: DeviceIdentity
    model: ScenarioDevice
    clock: SkewedClock
    config: AgentConfig
    proxy: FaultProxy | None = None
    queued: list[str] = field(default_factory=list)  # Upload-Ids, every boot
    armed: list[tuple[str, type[Interruption], float]] = field(default_factory=list)
    agent: ScenarioAgent | None = None
    task: asyncio.Task[None] | None = None  # the running agent's task
    pending: Interruption | None = None  # why the agent task is being cancelled
    down: bool = False  # off, or rebooting
    started: bool = False
    boots: int = 0
    crashed: str = ""
    injected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    not_built_storage: int = 0  # payloads a full disk kept from being queued
    totals: Counter[str] = field(default_factory=Counter)  # SyncStats + fleet counters
    last_error: str = ""
    net_layers: dict[int, NetFaults] = field(default_factory=dict)
    skew_layers: dict[int, timedelta] = field(default_factory=dict)

    def hit(self, name: str) -> None:
        """Checkpoint hook of the device's agent, transport and model."""
        for i, (checkpoint, kind, off_s) in enumerate(self.armed):
            if checkpoint == name:
                del self.armed[i]
                self.injected["power_loss" if kind is PowerLoss else "kill"] += 1
                log.info("%s: %s at checkpoint %s", self.ident.serial, kind.__name__, name)
                raise kind(name, off_s)

    def arm(self, checkpoint: str, kind: type[Interruption], off_s: float) -> None:
        self.armed.append((checkpoint, kind, off_s))

    def absorb(self, agent: ScenarioAgent) -> None:
        """Add what a finished boot's agent did to the device's totals."""
        for name in SyncStats.__slots__:
            value = getattr(agent.stats, name)
            if isinstance(value, int):
                self.totals[name] += value
        for name in FleetCounters.__slots__:
            value = getattr(agent.fleet, name)
            if isinstance(value, int):
                self.totals[name] += value
        self.totals["request_errors"] += sum(agent.fleet.errors.values())
        if agent.stats.last_error:
            self.last_error = agent.stats.last_error

    def apply_net(self) -> None:
        """Give the device's proxy the union of the network faults in force."""
        if self.proxy is None:
            return
        layers = list(self.net_layers.values())
        if not layers:
            self.proxy.faults = NetFaults()
            return
        resets = [f.reset_after_bytes for f in layers if f.reset_after_bytes is not None]
        bandwidths = [f.bandwidth_bps for f in layers if f.bandwidth_bps]
        self.proxy.faults = NetFaults(
            cut=any(f.cut for f in layers), blackhole=any(f.blackhole for f in layers),
            latency_s=max(f.latency_s for f in layers),
            bandwidth_bps=min(bandwidths) if bandwidths else 0,
            reset_after_bytes=min(resets) if resets else None)

    def apply_skew(self) -> None:
        self.clock.offset = sum(self.skew_layers.values(), timedelta(0))


class ScenarioTransport(CountingTransport):
    """The counting transport plus the fleet's checkpoints."""

    def __init__(self, slot: DeviceSlot, counters: FleetCounters, *args: Any,
                 **kwargs: Any) -> None:
        super().__init__(counters, *args, **kwargs)
        self.slot = slot

    async def upload(self, zip_bytes: bytes, upload_id: str) -> UploadResult:
        result = await super().upload(zip_bytes, upload_id)
        # The server has it; the device has not written that down yet.
        self.slot.hit("upload-acked")
        return result

    async def download(self, url: str, start: int, max_bytes: int
                       ) -> AsyncGenerator[bytes, None]:
        async with contextlib.aclosing(super().download(url, start, max_bytes)) as chunks:
            async for chunk in chunks:
                self.slot.hit("download")
                yield chunk


class ScenarioAgent(FleetAgent):
    """A fleet agent for one boot of a scenario device."""

    def __init__(self, slot: DeviceSlot, *, gate: asyncio.Semaphore, done_at: datetime,
                 timeouts: Timeouts | None) -> None:
        self.slot = slot
        self.done_at = done_at
        self._timeouts = timeouts
        rng = random.Random(f"{slot.ident.agent_seed}:{slot.boots}")
        super().__init__(slot.config, slot.model, clock=slot.clock, rng=rng, gate=gate,
                         target=0, transport_factory=self._scenario_transport)
        self.checkpoint = slot.hit

    def _scenario_transport(self, agent: Agent) -> Transport:
        cfg = self.config.server
        return ScenarioTransport(self.slot, self.fleet, cfg.url, cfg.ca_bundle,
                                 cfg.server_name, self.identity, self.clock,
                                 timeouts=self._timeouts, tls_library=cfg.tls_library)

    def _fleet_now(self) -> datetime:
        return self.slot.clock.base.now()  # the run's end does not move with a skewed clock

    @property
    def finished(self) -> bool:
        """Past the device's last day of the run, and nothing left to send."""
        return self._fleet_now() >= self.done_at and not self.outbox.entries()

    async def queue_payload(self, trigger: Trigger) -> str | None:
        """The agent's payload, recorded in the device's ledger once it is queued."""
        if self._fleet_now() >= self.done_at:
            return None  # the run is over for this device: only deliver what is queued
        try:
            upload_id = await super().queue_payload(trigger)
        except StorageError as exc:
            # Agent.queue_payload lets a StorageError from outbox.allocate() escape (a
            # full disk would end the agent's loop); caught here so a scenario can go
            # on, and counted so the report shows it.
            self.slot.not_built_storage += 1
            self.stats.last_error = str(exc)
            log.error("%s: payload not built: %s", self.slot.ident.serial, exc)
            return None
        if upload_id is not None:
            self.slot.queued.append(upload_id)
        return upload_id


__all__ = ["AgentKilled", "DeviceSlot", "PowerLoss", "ScenarioAgent", "ScenarioTransport"]
