"""The real ``device_direct`` agent, as the fleet runs it.

:class:`FleetAgent` is :class:`device_direct.agent.Agent` with two things added by
composition-friendly overrides of its public methods, nothing of its logic replaced:

* a shared semaphore, the fleet's ``concurrency`` slots: a device holds one for its
  turn, from building its payload to the end of the sync that sends it (or for the sync
  alone when it only retries what is queued), so at most ``concurrency`` devices of the
  fleet build or talk to the server at once. Without the build in the turn, the 1,000
  devices woken at 02:00 would all build their payloads (about half a second of the
  fleet's CPU) before the first of them connected, while the server sat idle; inside
  it, the next device builds while the others' requests are on the wire. A device
  waiting for its turn is busy, not parked, so virtual time does not move on without it
  (its payload is built and uploaded "at" its upload time). A payload an action asks
  for (``send_meters_now``) is built inside the turn of the sync or the background
  pass that runs the action, as before: it takes no slot of its own;
* an end: once the device built its ``target`` daily payloads and its outbox is empty,
  :meth:`step` raises :class:`DeviceDone` instead of waiting for the next day (payloads
  a ``send_meters_now`` action asked for are delivered too, but are not days);
* a :class:`CountingTransport` (through the agent's ``transport_factory``), which
  counts action polls, action results, firmware checks and failed requests (by cause)
  for the fleet report, and times each request for the latency histogram;
* Upload-Ids from a generator of their own (``upload_rng``, seeded from the device's
  identity), not the one the retry jitter draws from: the k-th payload of a device gets
  the same Upload-Id in every run of the same seed, however many retries came before.
  A shard run again after its Dask worker died replays its payloads under the ids the
  server already holds (acknowledged as duplicates), so nothing is stored twice.

Each sync does what a real device does daily on one connection: the upload, then the
agent's own post-sync hooks (the action poll and the firmware check among them).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from device_direct.agent import Agent
from device_direct.clock import Clock, SystemClock
from device_direct.config import AgentConfig
from device_direct.core.outbox import RandomBits
from device_direct.core.payload import Trigger
from device_direct.errors import DeviceDirectError
from device_direct.model import DeviceModel
from device_direct.transport import Transport, UploadResult
from emulator.fleet.live_stats import Latency

T = TypeVar("T")
_WALL = SystemClock()  # request latency is real time, whatever clock the device runs on


class SeededBits:
    """A small seeded source of random bits for a device's Upload-Ids.

    The k-th call gives SHA-256(seed, k): the same ids in every run of the seed, as a
    ``random.Random(seed)`` would, in about 100 bytes instead of its 2.5 KiB of
    Mersenne Twister state (a fleet keeps one per device)."""

    __slots__ = ("_count", "_seed")

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode()
        self._count = 0

    def getrandbits(self, k: int, /) -> int:
        if k <= 0 or k > 256:
            raise ValueError(f"SeededBits gives 1 to 256 bits, not {k}")
        self._count += 1
        digest = hashlib.sha256(b"%s/%d" % (self._seed, self._count)).digest()
        return int.from_bytes(digest, "big") >> (256 - k)


class DeviceDone(Exception):  # a signal, not an error
    """Raised by :meth:`FleetAgent.step` when the device has nothing left to do."""


@dataclass(slots=True)
class FleetCounters:
    """What the fleet's own post-sync hook did for one device."""

    sessions: int = 0  # transports opened: one new TLS connection (at least) each
    action_polls: int = 0
    actions_seen: int = 0
    actions_run: int = 0  # results succeeded or failed
    actions_refused: int = 0  # results rejected or expired
    firmware_checks: int = 0
    firmware_offers: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # failed requests by cause


class CountingTransport(Transport):
    """The agent's real :class:`Transport`, counting what it is asked to do."""

    def __init__(self, counters: FleetCounters, *args: Any, latency: Latency | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = counters
        self.latency = latency
        counters.sessions += 1

    async def _timed(self, call: Awaitable[T]) -> T:
        started = _WALL.monotonic()
        try:
            return await call
        except DeviceDirectError as exc:
            self.counters.errors[type(exc).__name__] += 1
            raise
        finally:
            if self.latency is not None:
                self.latency.observe(_WALL.monotonic() - started)

    async def register(self, serial: str, model: str, mac: str, firmware: Mapping[str, str],
                       registration_key: str) -> str:
        return await self._timed(super().register(serial, model, mac, firmware,
                                                  registration_key))

    async def upload(self, zip_bytes: bytes, upload_id: str) -> UploadResult:
        return await self._timed(super().upload(zip_bytes, upload_id))

    async def poll_actions(self) -> list[dict[str, Any]]:
        actions = await self._timed(super().poll_actions())
        self.counters.action_polls += 1
        self.counters.actions_seen += len(actions)
        return actions

    async def report_action(
        self, action_id: str, status: str, detail: Mapping[str, Any] | str = ""
    ) -> None:
        await self._timed(super().report_action(action_id, status, detail))
        if status in ("succeeded", "failed"):
            self.counters.actions_run += 1
        else:
            self.counters.actions_refused += 1

    async def check_firmware(self, model: str, version: str) -> dict[str, Any] | None:
        offer = await self._timed(super().check_firmware(model, version))
        self.counters.firmware_checks += 1
        if offer is not None:
            self.counters.firmware_offers += 1
        return offer


def _counting_transport(agent: Agent) -> Transport:
    fleet = agent if isinstance(agent, FleetAgent) else None
    counters = fleet.fleet if fleet is not None else FleetCounters()
    cfg = agent.config.server
    return CountingTransport(counters, cfg.url, cfg.ca_bundle, cfg.server_name,
                             agent.identity, agent.clock,
                             latency=fleet.latency if fleet is not None else None,
                             tls_library=cfg.tls_library)


class DeliveryTally:
    """The daily payloads a shard's agents have delivered, kept up to date by the agents
    as it changes, so that progress is read without a pass over every agent (a shard of
    a 100,000-device fleet holds 50,000: a pass four times a second took a quarter of
    its CPU, and the run's length grows with the fleet, so the passes grew as its square)."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


class FleetAgent(Agent):
    """An :class:`Agent` that shares a connection budget and stops after ``target``."""

    # Slots, so the agent's attribute dict keeps the size CPython shares between
    # instances (see :class:`Agent`): thousands of these live in one fleet.
    __slots__ = ("action_built", "counted", "daily_built", "fleet", "gate", "in_turn",
                 "latency", "tally", "target")

    def __init__(
        self,
        config: AgentConfig,
        model: DeviceModel,
        *,
        clock: Clock,
        rng: random.Random,
        gate: asyncio.Semaphore,
        target: int,
        transport_factory: Callable[[Agent], Transport] | None = None,
        upload_rng: RandomBits | None = None,
        latency: Latency | None = None,
        tally: DeliveryTally | None = None,
    ) -> None:
        self.fleet = FleetCounters()
        self.tally = tally
        self.counted = 0  # this agent's days_delivered as last added to the tally
        self.latency = latency
        self.daily_built = 0  # payloads of the daily schedule (not action-triggered ones)
        self.action_built = 0  # payloads a send_meters_now action asked for
        super().__init__(config, model, clock=clock, rng=rng,
                         transport_factory=transport_factory or _counting_transport,
                         upload_rng=upload_rng)  # the outbox opened once, with the ids' own
        self.gate = gate
        self.in_turn = False  # holds one of the gate's slots (see the module)
        self.target = target

    @property
    def finished(self) -> bool:
        """True once ``target`` daily payloads were built and none is left to send."""
        return self.daily_built >= self.target and not self.outbox.entries()

    async def queue_payload(self, trigger: Trigger) -> str | None:
        """The agent's payload, built in the device's turn (a fleet slot) unless an action
        asked for it; counted as a day unless an action asked for it."""
        if trigger != "action":
            await self._begin_turn()
        upload_id = await super().queue_payload(trigger)
        if upload_id is not None:
            if trigger == "action":
                self.action_built += 1
            else:
                self.daily_built += 1
        return upload_id

    @property
    def days_delivered(self) -> int:
        """Daily payloads the server has acknowledged, for progress (0..``target``).

        Counted from the agent's delivery figures less the action payloads, so an
        action payload still queued may hide a day for a moment; exact once finished.
        """
        if self.finished:
            return self.target
        s = self.stats
        sent = s.uploads_stored + s.uploads_duplicate - self.action_built
        return max(0, min(self.target, sent))

    async def step(self) -> None:
        """One pass of the agent, or :class:`DeviceDone` when the device is finished."""
        if self.finished:
            raise DeviceDone
        try:
            await super().step()
        finally:
            self._end_turn()  # a step that failed between its build and its sync
            self._recount()  # the step may have finished the device

    async def sync(self, trigger: Trigger | None) -> bool:
        """The agent's sync, in the device's turn: the slot its build took, or a new one."""
        await self._begin_turn()
        try:
            return await super().sync(trigger)
        finally:
            self._end_turn()
            self._recount()  # uploads are acknowledged in a sync, whoever called it

    def _recount(self) -> None:
        """Bring the fleet's :class:`DeliveryTally` up to date with this agent."""
        if self.tally is not None:
            now = self.days_delivered
            if now != self.counted:
                self.tally.total += now - self.counted
                self.counted = now

    async def _begin_turn(self) -> None:
        if not self.in_turn:
            await self.gate.acquire()
            self.in_turn = True

    def _end_turn(self) -> None:
        if self.in_turn:
            self.in_turn = False
            self.gate.release()
