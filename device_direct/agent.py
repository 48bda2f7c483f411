"""The agent: wires model, collector, outbox, transport and schedule together.

Theory of operation
-------------------
The agent is a single task per device. At boot it works out when the next daily sync
is (``DailySchedule.on_boot``: skip a missed run, or catch up when configured), then
loops:

1. sleep on the injected clock until the earliest of: the next scheduled sync, the
   moment the head of the outbox is due for a retry, or a "send now" request;
2. if a sync is due (or was requested), read the model, build the payload (Upload-Id
   and sequence allocated first) and store it in the outbox, durably, before anything
   is sent;
3. flush the outbox, oldest first, after settling the device's identity (below);
   201/200 remove the payload; network errors, TLS errors, 5xx and any answer that is
   not the server's own JSON error (a proxy's or portal's 4xx page) put it back with a
   capped, fully jittered exponential backoff (reset on success and on reboot); only
   the contract's JSON 4xx is final for that payload: it is recorded as rejected and
   never sent again as is;
4. after a sync with a trigger, run the post-sync hooks: action polling
   (``actions.ActionRunner``) and the daily firmware check (``firmware.FirmwareUpdater``);
5. background work has its own due times and wakes the loop too: re-sending action
   results, the optional action poll interval, managed-mode transfers, and a firmware
   update in progress (download retry, install at the maintenance window). At start,
   both settle what a restart cut off (a reboot action's result, a trial boot).

Identity: before a session uses the client certificate, the agent renews it in its
last RENEWAL_MARGIN (a failed renewal is retried later; the old certificate still
works). When the server refuses the certificate (TLS alert, 401/403 with a
certificate error code) or it has expired by the device's clock, the payload stays
queued and the agent renews if the certificate is still valid, else registers again
with the configured registration key, else enters ``needs-registration``: ``status``
says so (also when the agent is stopped), an e-mail alert goes out when alerts are
configured, and every payload is kept until the device is registered again. A
certificate refused before the server took an upload with it (a server that refuses
the certificates it issues) is settled again only after a backoff delay.

The process itself runs under :mod:`device_direct.core.lifecycle`: it never returns on
its own (a device with services switched off idles), and a step that fails is logged
and retried after a backoff.

Every decision about time (schedule, backoff, outbox order) is made in
``device_direct.core``; this module only carries the decisions out. Every exchange with
the server is recorded in the local audit log and logged as one line naming the cause
of a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from device_direct.actions import ActionRunner
from device_direct.audit import AuditLog
from device_direct.clock import Clock, run_in_background
from device_direct.collector import collect
from device_direct.config import AgentConfig
from device_direct.core.lifecycle import BACKOFF_STATES, AgentEvent, AgentState, Lifecycle
from device_direct.core.outbox import OutboxEntry, RandomBits
from device_direct.core.payload import (
    PayloadCache,
    PayloadMeta,
    ProxyRoute,
    Trigger,
    build_xml,
    pack_zip,
)
from device_direct.core.retry import Disposition, classify_error
from device_direct.durable import atomic_write, off_loop
from device_direct.errors import (
    AuthError,
    CertificateRefused,
    DeviceDirectError,
    ModelError,
    PayloadError,
    ServerRejected,
    StorageError,
    TLSError,
)
from device_direct.firmware import FirmwareUpdater
from device_direct.identity import IdentityStore
from device_direct.model import DeviceModel, PowerState
from device_direct.outbox_store import OutboxStore
from device_direct.transport import Transport

if TYPE_CHECKING:
    # Optional parts, imported by Agent.__init__ only when configured: proxy discovery
    # (PAC, public suffix list) and the SMTP mailer (smtplib, email) cost start-up time
    # and memory that most devices never use.
    from device_direct.alerts import AlertMailer
    from device_direct.proxy import ProxyDetector

log = logging.getLogger("device_direct.agent")
T = TypeVar("T")

STATE_FILE = "agent-state.json"
IDENTITY_DIR = "identity"
AUDIT_FILE = "audit.log"

# A hook run after each sync with an open transport (actions, firmware: later layers).
PostSyncHook = Callable[[Transport, Trigger], Awaitable[None]]
# Called synchronously at a named point of the agent's work (see Agent.checkpoint).
Checkpoint = Callable[[str], None]
# The points the agent itself names; the fleet adds "download" and "install" at the
# firmware edges (transport download, bank write/boot) and "upload-acked" after an
# upload's answer arrived.
CHECKPOINTS = ("build", "write", "upload")
# Background work that is due again this soon after a run that left it due is held
# back this long, so a step that keeps failing cannot spin the loop.
BACKGROUND_RETRY_S = 60.0
# The longest two daily runs can be apart on a correct clock: a local day, its DST hour
# and a run time in a skipped hour, with room to spare.
MAX_RUN_GAP = timedelta(hours=27)
# What a failed step of the agent may raise and the lifecycle catches, logs and backs
# off from. Anything else is a bug (or a signal from a test harness) and propagates.
STEP_FAILURES: tuple[type[Exception], ...] = (DeviceDirectError, OSError)
# The identity states ``status`` reports.
REGISTERED = "registered"
UNREGISTERED = "unregistered"
NEEDS_REGISTRATION = "needs-registration"


class _Background(Protocol):
    """Work with its own due time: the action runner and the firmware updater."""

    def next_due(self, now: datetime) -> datetime | None: ...

    async def run_due(self, transport: Transport, now: datetime) -> None: ...


@dataclass(slots=True)
class SyncStats:
    """What this agent did since it started (for status, the fleet report, tests)."""

    payloads_built: int = 0
    uploads_stored: int = 0
    uploads_duplicate: int = 0
    uploads_rejected: int = 0
    send_failures: int = 0
    registrations: int = 0
    renewals: int = 0
    certificate_refusals: int = 0
    step_failures: int = 0
    bytes_sent: int = 0
    last_error: str = ""


class Agent:
    """Device Direct for one device. Create, then ``await run()`` (cancel to stop)."""

    # Optional parts default here, on the class: an agent sets them on itself only when
    # configured. CPython shares one key table between the attribute dicts of a class's
    # instances only while they hold at most 29 names; a fleet keeps thousands of agents,
    # and a full dict of their own costs each about 1.3 KiB more.
    proxy: ProxyDetector | None = None
    mailer: AlertMailer | None = None
    # QA seam: called at "build" (before a payload is built), "write" (between the
    # outbox allocation and the durable add) and "upload" (just before the request
    # goes out). A fault scenario raises there to cut the power at that exact
    # point; None (the default) changes nothing.
    checkpoint: Checkpoint | None = None

    def __init__(
        self,
        config: AgentConfig,
        model: DeviceModel,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        transport_factory: Callable[[Agent], Transport] | None = None,
        upload_rng: RandomBits | None = None,
    ) -> None:
        """``upload_rng``: where the outbox draws its Upload-Ids (default: ``rng``)."""
        self.config = config
        self.model = model
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        data_dir = config.device.data_dir  # the config's Path: one object less per agent
        if not isinstance(data_dir, Path):
            data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.identity = IdentityStore(data_dir / IDENTITY_DIR)
        self.outbox = OutboxStore.open(
            data_dir, budget_bytes=config.outbox.budget_bytes, clock=clock,
            rng=upload_rng if upload_rng is not None else self.rng,
        )
        self.audit = AuditLog(data_dir / AUDIT_FILE)
        self.schedule = config.schedule.daily(config.device.zone)
        self.policy = config.services.privacy
        self.backoff = config.retry.backoff()
        self.stats = SyncStats()
        self.proxy_route: ProxyRoute | None = None
        # The parts of the last payloads that seldom change: made after the first
        # payload, so that a device which builds one payload (a one-day fleet) holds none.
        self._payload_cache: PayloadCache | None = None
        self._transport_factory = transport_factory or _default_transport
        self.firmware = FirmwareUpdater(
            config, model, clock=clock, data_dir=data_dir, rng=self.rng,
            transport_factory=self._new_transport, audit=self.audit)
        self.actions = ActionRunner(self)
        self.firmware.on_result = self.actions.firmware_result
        self.post_sync_hooks: list[PostSyncHook] = [self.actions.after_sync,
                                                    self._firmware_after_sync]
        proxy_cfg = config.proxy
        if proxy_cfg.mode != "off" or proxy_cfg.use_env:
            from device_direct.proxy import ProxyDetector

            self.proxy = ProxyDetector(proxy_cfg, clock)
        self._proxy_setting: tuple[str | None, tuple[str, str] | None] = (None, None)
        if config.alerts.recipients:
            from device_direct.alerts import AlertMailer

            self.mailer = AlertMailer(config.alerts, model, clock,
                                      random.Random(self.rng.random()),
                                      ca_bundle=config.server.ca_bundle)
        self._background_hold: dict[str, datetime] = {}
        self._send_now_trigger: Trigger | None = None
        # What _wait_until is waiting on, while it waits; send_now() resolves it.
        self._kick: asyncio.Future[None] | None = None
        self.next_sync: datetime | None = None
        self._register_not_before: datetime | None = None
        self._renew_not_before: datetime | None = None
        # Why the server last refused the client certificate (None: it did not).
        self._certificate_refused: str | None = None
        # From a registration or renewal until the server takes an upload with the new
        # certificate: a refusal then is not cured by getting another one at once.
        self._certificate_unproven = False
        state = self._load_state()
        self.last_run: datetime | None = state.get("last_run")
        self.needs_registration: str | None = state.get("needs_registration")
        self.lifecycle = Lifecycle(self.backoff)

    # -- control ------------------------------------------------------------------------

    def send_now(self, trigger: Trigger = "on-demand") -> None:
        """Ask for a sync at once (panel button, CLI, ``send_meters_now`` action)."""
        self._send_now_trigger = trigger
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    def status(self) -> dict[str, Any]:
        """A JSON-able summary of the agent's state."""
        reg = self.identity.registration
        return {
            "state": self.lifecycle.state.value,
            "identity": identity_state(reg is not None, self.needs_registration),
            "needs_registration": self.needs_registration,
            "registered": reg is not None,
            "device_id": reg.device_id if reg else None,
            "certificate_not_after": reg.not_after.isoformat() if reg else None,
            "next_sync": self.next_sync.isoformat() if self.next_sync else None,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "queued": [
                {"upload_id": e.upload_id, "sequence": e.sequence, "attempts": e.attempts}
                for e in self.outbox.entries()
            ],
            "stats": {k: getattr(self.stats, k) for k in SyncStats.__slots__},
        }

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; never returns on its own. Call once per boot.

        The lifecycle (:mod:`device_direct.core.lifecycle`) supervises the steps: a
        failure is logged and the step retried after a backoff; with remote services
        switched off the agent idles (and still answers status and send-now)."""
        self._kick = None
        self.backoff = self.backoff.reset()  # a reboot starts the retry bands again
        self.lifecycle = Lifecycle(self.backoff)
        self.next_sync = self.schedule.on_boot(self.clock.now(), self.last_run)
        log.info("agent started; next sync %s", self.next_sync.isoformat())
        mailer: asyncio.Task[Any] | None = None
        try:
            while True:
                state = self.lifecycle.state
                if state is AgentState.STARTING:
                    mailer = self._start(mailer)
                elif state is AgentState.IDLE:
                    await self._wait_until(None)
                    if self._send_now_trigger is not None:
                        self._send_now_trigger = None
                        log.info("send-now ignored: remote services are switched off")
                    self._lifecycle(AgentEvent.WAKE)
                elif state in BACKOFF_STATES:
                    await self._wait_until(self.lifecycle.retry_at)
                    self._lifecycle(AgentEvent.RETRY)
                else:
                    try:
                        await self.step()
                    except STEP_FAILURES as exc:
                        self._step_failed("step", exc)
                    else:
                        self._lifecycle(AgentEvent.STEP_DONE)
        finally:
            if mailer is not None:
                mailer.cancel()

    def _start(self, mailer: asyncio.Task[Any] | None) -> asyncio.Task[Any] | None:
        """The STARTING state: settle what a restart cut off, start the side tasks."""
        if not self.config.services.enabled:
            log.info("remote services are switched off; the agent stays idle")
            self._lifecycle(AgentEvent.SERVICES_OFF)
            return mailer
        try:
            # Firmware first: settling a trial boot may finish an upgrade_firmware action.
            self.firmware.on_boot()
            self.actions.on_boot(self.clock.now())
        except STEP_FAILURES as exc:
            self._step_failed("start", exc)
            return mailer
        if mailer is None and self.mailer is not None:
            # Alerts run beside the loop: a slow or dead SMTP server never delays an upload.
            mailer = run_in_background(self.mailer.run())
        self._lifecycle(AgentEvent.BOOTED)
        return mailer

    def _lifecycle(self, event: AgentEvent) -> None:
        self.lifecycle.handle(event, self.clock.now(), self.rng)

    def _step_failed(self, what: str, exc: BaseException) -> None:
        self.stats.step_failures += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self._lifecycle(AgentEvent.FAILED)
        retry_at = self.lifecycle.retry_at
        log.error("agent %s failed (%s): %s; retry at %s", what, type(exc).__name__, exc,
                  retry_at.isoformat() if retry_at else "?")

    async def step(self) -> None:
        """One pass: wait for the next thing to do, then do it."""
        assert self.next_sync is not None
        now = self.clock.now()
        if self.next_sync - now > MAX_RUN_GAP:
            # Further off than two runs can be apart: the clock was stepped back (NTP
            # correcting a clock set ahead). Waiting for the old time would skip every
            # day in between; the schedule is read again on the corrected time.
            log.warning("the clock went back (next sync was %s, now %s): schedule re-read",
                        self.next_sync.isoformat(), now.isoformat())
            self.next_sync = self.schedule.next_run(now)
        wake = self.next_sync
        due = self.outbox.next_wakeup()
        if due is not None and self._register_not_before is not None:
            due = max(due, self._register_not_before)
        if due is not None and due < wake:
            wake = due
        background = self._background_due()
        if background is not None and background < wake:
            wake = background
        await self._wait_until(wake)
        now = self.clock.now()
        trigger: Trigger | None = None
        if self._send_now_trigger is not None:
            trigger, self._send_now_trigger = self._send_now_trigger, None
        elif now >= self.next_sync:
            trigger = "scheduled"
            self.next_sync = self.schedule.next_run(now)
        if trigger is not None:
            queued = await self.queue_payload(trigger)
            if trigger == "scheduled" and queued is not None:
                # Recorded once the day's payload is durably queued: a power cut while
                # it was being built leaves the run "missed" (caught up at boot when
                # schedule.missed = "catch-up").
                self.last_run = now
                self._save_state()
        if self.outbox.next_due(now) is not None or trigger is not None:
            await self.sync(trigger)
        await self.run_background()

    async def run_background(self) -> None:
        """Run the background work that is due (results, polls, firmware steps).

        Work one task makes due for another (a firmware outcome for the action
        journal) runs in the same pass; a task that is still due after it ran (its
        step failed) is held back for BACKGROUND_RETRY_S so it cannot spin the loop."""
        tasks: dict[str, _Background] = {"actions": self.actions, "firmware": self.firmware}
        ran: set[str] = set()
        transport: Transport | None = None
        try:
            while True:
                now = self.clock.now()
                due = [name for name, task in tasks.items() if name not in ran
                       and (when := self._task_due(name, task, now)) is not None
                       and when <= now]
                if not due:
                    break
                if transport is None:
                    transport = self._new_transport()
                    if not await self._registered(transport):
                        return
                for name in due:
                    ran.add(name)
                    try:
                        await tasks[name].run_due(transport, now)
                    except DeviceDirectError as exc:
                        log.warning("background step (%s) failed: %s", name, exc)
                        self.stats.last_error = str(exc)
                        if isinstance(exc, CertificateRefused):
                            self._certificate_refused = exc.code
        finally:
            if transport is not None:
                await transport.close()
        after = self.clock.now()
        for name in ran:
            when = tasks[name].next_due(after)
            if when is not None and when <= after:
                self._background_hold[name] = after + timedelta(seconds=BACKGROUND_RETRY_S)
            else:
                self._background_hold.pop(name, None)

    def _task_due(self, name: str, task: _Background, now: datetime) -> datetime | None:
        when = task.next_due(now)
        hold = self._background_hold.get(name)
        if when is not None and hold is not None:
            when = max(when, hold)
        return when

    def _background_due(self) -> datetime | None:
        now = self.clock.now()
        times = [t for name, task in (("actions", self.actions), ("firmware", self.firmware))
                 if (t := self._task_due(name, task, now)) is not None]
        if not times:
            return None
        when = min(times)
        # Not registered yet and waiting out a registration backoff: wait for that too.
        if self._register_not_before is not None:
            when = max(when, self._register_not_before)
        return when

    async def flush(self, transport: Transport) -> bool:
        """Upload what is due in the outbox now (registering first if needed)."""
        return await self._flush(transport)

    async def _firmware_after_sync(self, transport: Transport, trigger: Trigger) -> None:
        await self.firmware.after_sync(transport, scheduled=trigger == "scheduled")

    async def queue_payload(self, trigger: Trigger) -> str | None:
        """Read the model and store a new payload in the outbox (durably, in the storage
        thread: the loop goes on meanwhile).

        Returns its Upload-Id, or None when none was built (device off, storage)."""
        if self.model.power in (PowerState.OFF, PowerState.BOOTING):
            log.info("device is %s: no payload built", self.model.power.value)
            return None
        self._reach("build")
        try:
            allocation = self.outbox.allocate()
            meta = PayloadMeta(
                upload_id=allocation.upload_id,
                sequence=allocation.sequence,
                generated_at=self.clock.now(),
                trigger=trigger,
            )
            # The build is the agent's longest stretch of CPU (about a millisecond on a
            # PC, far more on a printer's CPU). Between its stages the loop may serve
            # what else is ready: the device's web pages, a fleet's other connections
            # (whose server would otherwise wait on this process: see docs/fleet.md).
            snapshot = collect(self.model)
            await asyncio.sleep(0)
            if self._payload_cache is None and self.stats.payloads_built:
                self._payload_cache = PayloadCache()
            xml = build_xml(
                snapshot,
                meta,
                policy=self.policy,
                transfer_history=self.outbox.history(),
                proxy=self.proxy_route,
                engineering_log=(
                    self.model.engineering_log() if self.policy.send_engineering else None
                ),
                cache=self._payload_cache,
            )
            await asyncio.sleep(0)
            zip_bytes = pack_zip(xml)
            await asyncio.sleep(0)
        except (StorageError, PayloadError, ModelError) as exc:
            # A full disk or data the model cannot give today: no payload this time,
            # but the agent goes on (what is queued is still sent; tomorrow tries again).
            log.error("no payload built (%s): %s", type(exc).__name__, exc)
            self.stats.last_error = str(exc)
            return None
        self._reach("write")
        try:
            await off_loop(self.outbox.add, zip_bytes, meta)
        except StorageError as exc:
            log.error("payload %s not queued: %s", meta.upload_id, exc)
            self.stats.last_error = str(exc)
            return None
        self.stats.payloads_built += 1
        log.info("payload %s (seq %d, %s, %d bytes) queued", meta.upload_id,
                 meta.sequence, trigger, len(zip_bytes))
        return meta.upload_id

    async def sync(self, trigger: Trigger | None) -> bool:
        """Open a transport, register if needed, flush the outbox, run post-sync hooks.

        Returns True when the outbox was emptied of everything due.
        """
        transport = self._new_transport()
        try:
            ok = await self._flush(transport)
            if ok and trigger is not None:
                for hook in self.post_sync_hooks:
                    try:
                        await hook(transport, trigger)
                    except DeviceDirectError as exc:
                        log.warning("post-sync step failed: %s", exc)
            return ok
        finally:
            await transport.close()

    async def register(self) -> str:
        """Register now (if not registered yet); returns the device id."""
        transport = self._new_transport()
        try:
            await self._ensure_registered(transport)
        finally:
            await transport.close()
        assert self.identity.device_id is not None
        return self.identity.device_id

    def proxy_info(self) -> dict[str, Any]:
        """How the server is reached, for the troubleshoot result and status."""
        if self.proxy is None:
            return {"mode": "off", "route": "DIRECT", "source": "off"}
        info = self.proxy.describe()
        info["mode"] = self.config.proxy.mode
        return info

    # -- internals ----------------------------------------------------------------------

    def _reach(self, name: str) -> None:
        if self.checkpoint is not None:
            self.checkpoint(name)

    def _new_transport(self) -> Transport:
        """A transport for one session, on the route that worked last."""
        transport = self._transport_factory(self)
        if self.proxy is not None and self._proxy_setting[0] is not None:
            transport.set_proxy(*self._proxy_setting)
        return transport

    async def _via_proxy(self, transport: Transport, op: Callable[[], Awaitable[T]]) -> T:
        """Run one transport call, along the proxy failover list when a proxy is in play."""
        if self.proxy is None:
            return await op()
        try:
            return await self.proxy.call(
                transport, self.config.server.url, self.model.network(), op)
        finally:
            self.proxy_route = self.proxy.last_route
            self._proxy_setting = transport.proxy_setting

    async def _ensure_registered(self, transport: Transport) -> None:
        if self.identity.is_registered:
            return
        key = self.config.server.registration_key
        if not key:
            raise AuthError("not registered and no registration key is configured")
        ident = self.model.identity()
        now = self.clock.now()
        try:
            device_id = await self._via_proxy(transport, lambda: transport.register(
                ident.serial, ident.model, self.model.network().mac, ident.firmware, key
            ))
        except DeviceDirectError as exc:
            self.audit.record(now, "register", ok=False, error=str(exc))
            raise
        self.stats.registrations += 1
        self._certificate_refused = None
        self._certificate_unproven = True
        self._set_needs_registration(None)
        self.audit.record(now, "register", ok=True, device_id=device_id)
        log.info("registered as device %s", device_id)

    async def _settle_identity(self, transport: Transport) -> None:
        """Make sure the session has a certificate the server should take (see the
        module text, "Identity"). Raises what stops the session from going on."""
        now = self.clock.now()
        reg = self.identity.registration
        if reg is not None and self._certificate_refused is None and now < reg.not_after:
            if self.identity.needs_renewal(now) and (
                    self._renew_not_before is None or now >= self._renew_not_before):
                await self._renew(transport, now, must=False)
            return
        if reg is not None and now < reg.not_after:
            # Refused although still valid by our clock: a renewal may be all it takes;
            # a revoked or unknown certificate is refused for that too.
            try:
                await self._renew(transport, now, must=True)
                return
            except CertificateRefused as exc:
                log.warning("renewal refused too (%s): registering again", exc.code)
        why = (f"the server refused the client certificate ({self._certificate_refused})"
               if self._certificate_refused is not None and reg is not None
               else f"the client certificate expired at {reg.not_after.isoformat()}"
               if reg is not None else "the device is not registered")
        if not self.config.server.registration_key:
            if reg is not None:
                self._set_needs_registration(why)
            raise AuthError(f"{why}, and no registration key is configured: register the "
                            "device again (device-direct register with a new key)")
        if reg is not None:
            log.warning("%s: registering again with the configured key", why)
            self.identity.clear_registration()
        try:
            await self._ensure_registered(transport)
        except AuthError as exc:
            # The key itself was refused (used, expired): a person must act.
            self._set_needs_registration(f"{why}; registering again failed: {exc}")
            raise

    async def _renew(self, transport: Transport, now: datetime, *, must: bool) -> None:
        """Renew the client certificate; a failure raises only when ``must``."""
        try:
            await self._via_proxy(transport, transport.renew)
        except DeviceDirectError as exc:
            self.audit.record(now, "renew", ok=False, error=str(exc))
            delay = replace(self.config.retry.backoff(), attempt=4).next_delay(self.rng)
            self._renew_not_before = now + timedelta(seconds=delay)
            if must or isinstance(exc, CertificateRefused):
                raise
            log.warning("certificate renewal failed (%s): %s; tried again in %.0f s",
                        _cause(exc), exc, delay)
            return
        reg = self.identity.registration
        self.stats.renewals += 1
        self._renew_not_before = None
        self._certificate_refused = None
        self._certificate_unproven = True
        self._set_needs_registration(None)
        self.audit.record(now, "renew", ok=True,
                          not_after=reg.not_after.isoformat() if reg else None)
        log.info("client certificate renewed; valid until %s",
                 reg.not_after.isoformat() if reg else "?")

    def _set_needs_registration(self, why: str | None) -> None:
        """Enter or leave ``needs-registration`` (persisted, so status shows it stopped)."""
        if why == self.needs_registration:
            return
        self.needs_registration = why
        self._save_state()
        if why is None:
            log.info("the device is registered again")
            return
        log.error("the device needs registering again: %s; payloads are kept", why)
        if self.mailer is not None:
            self.mailer.agent_alert(
                f"Device Direct cannot reach its server: {why}. Register the device again; "
                "its data is kept until then.")

    async def _flush(self, transport: Transport) -> bool:
        if not await self._registered(transport):
            return False
        while True:
            now = self.clock.now()
            entry = self.outbox.next_due(now)
            if entry is None:
                return True
            try:
                data = await off_loop(self.outbox.begin_send, entry, now)
            except StorageError as exc:
                log.error("outbox: %s", exc)  # recorded as dropped; go on with the next
                continue
            self._reach("upload")
            try:
                result = await self._via_proxy(
                    transport, functools.partial(transport.upload, data, entry.upload_id))
            except DeviceDirectError as exc:
                if not await self._failed(entry, exc, self.clock.now()):
                    return False
                continue
            done_at = self.clock.now()
            await off_loop(self.outbox.mark_sent, entry, result.status, done_at)
            self.backoff = self.backoff.reset()
            self._certificate_unproven = False
            self.stats.bytes_sent += len(data)
            if result.status == "stored":
                self.stats.uploads_stored += 1
            else:
                self.stats.uploads_duplicate += 1
            self.audit.record(done_at, "upload", upload_id=entry.upload_id,
                              sequence=entry.sequence, result=result.status, bytes=len(data))
            log.info("payload %s %s (%d bytes)", entry.upload_id, result.status, len(data))

    async def _registered(self, transport: Transport) -> bool:
        """Settle the identity (register, renew, register again). A failure backs off on
        its own timer: payloads stay queued untouched (the identity is at fault, not
        the payloads)."""
        now = self.clock.now()
        if self._register_not_before is not None and now < self._register_not_before:
            return False
        try:
            await self._settle_identity(transport)
        except DeviceDirectError as exc:
            delay = self.backoff.next_delay(self.rng)
            self.backoff = self.backoff.increment()
            self._register_not_before = now + timedelta(seconds=delay)
            self.stats.last_error = f"identity {_cause(exc)}: {exc}"
            log.error("identity not settled (%s): %s; retry in %.0f s", _cause(exc), exc, delay)
            return False
        self._register_not_before = None
        return True

    async def _failed(self, entry: OutboxEntry, exc: DeviceDirectError, now: datetime) -> bool:
        """Record a failed send. Returns True when the flush may go on with the next one."""
        cause = _cause(exc)
        self.stats.last_error = f"{cause}: {exc}"
        if isinstance(exc, CertificateRefused):
            # The identity is refused, not the payload: it is due again as soon as the
            # identity is settled (renewed or registered again) at the next session.
            self._certificate_refused = exc.code
            self.stats.certificate_refusals += 1
            if self._certificate_unproven:
                # Refused the moment the server issued it (a server that does not take
                # its own certificates): registering again at once would only repeat
                # that, as fast as the server answers. The identity waits a backoff.
                delay = self.backoff.next_delay(self.rng)
                self.backoff = self.backoff.increment()
                self._register_not_before = now + timedelta(seconds=delay)
                log.error("the server refused the certificate it has just issued; the "
                          "identity is settled again in %.0f s", delay)
            await off_loop(self.outbox.mark_failed, entry, f"{cause}: {exc}"[:200], now, 0.0)
            self.audit.record(now, "upload", upload_id=entry.upload_id, result="failed",
                              cause=cause, error=str(exc)[:300])
            log.error("upload of %s: %s", entry.upload_id, exc)
            return False
        if classify_error(exc) is Disposition.FINAL and isinstance(exc, ServerRejected):
            await off_loop(self.outbox.mark_rejected, entry, exc.status,
                           f"{exc.error}: {exc.detail}"[:200], now)
            self.stats.uploads_rejected += 1
            self.audit.record(now, "upload", upload_id=entry.upload_id, result="rejected",
                              status=exc.status, error=exc.error)
            log.error("payload %s rejected by the server (%s): %s; not retried",
                      entry.upload_id, exc.status, exc.detail)
            return True
        # Retryable, or a local error: either way the payload stays queued and the
        # next attempt waits out a backoff delay, so nothing spins.
        delay = self.backoff.next_delay(self.rng)
        self.backoff = self.backoff.increment()
        await off_loop(self.outbox.mark_failed, entry, f"{cause}: {exc}"[:200], now, delay)
        self.stats.send_failures += 1
        self.audit.record(now, "upload", upload_id=entry.upload_id, result="failed",
                          cause=cause, error=str(exc)[:300], retry_in_s=round(delay, 3))
        log.warning("upload of %s failed (%s): %s; retry in %.0f s",
                    entry.upload_id, cause, exc, delay)
        return False

    async def _wait_until(self, when: datetime | None) -> None:
        """Sleep on the clock until ``when`` or a send-now request, whichever is first.

        One future (``_kick``) that send_now() or the end of the clock's sleep resolves,
        and one task for the sleep: every parked device of a fleet holds these, so they
        are kept few (two tasks, an event and asyncio.wait's bookkeeping before)."""
        if self._send_now_trigger is not None:
            return
        kick: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper: asyncio.Task[None] | None = None
        if when is not None:
            sleeper = asyncio.ensure_future(self.clock.sleep_until(when))
            sleeper.add_done_callback(functools.partial(_resolve, kick))
        self._kick = kick
        try:
            await kick
        finally:
            self._kick = None
            if sleeper is not None:
                if not sleeper.done():
                    sleeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sleeper
                elif not sleeper.cancelled():
                    sleeper.result()  # the clock's own error, if it had one

    def _load_state(self) -> dict[str, Any]:
        path = self.data_dir / STATE_FILE
        try:
            return load_agent_state(path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("agent state %s unreadable (%s); starting without it", path, exc)
            return {}

    def _save_state(self) -> None:
        doc = {"last_run": self.last_run.isoformat() if self.last_run else None,
               "needs_registration": self.needs_registration}
        try:
            atomic_write(self.data_dir / STATE_FILE, json.dumps(doc).encode())
        except OSError as exc:
            log.error("agent state not saved: %s", exc)


def _resolve(kick: asyncio.Future[None], _: object) -> None:
    if not kick.done():
        kick.set_result(None)


def load_agent_state(path: Path) -> dict[str, Any]:
    """agent-state.json: ``last_run`` (datetime) and ``needs_registration`` (str), when set.

    Raises OSError or ValueError/KeyError/TypeError for a missing or corrupt file."""
    raw = json.loads(path.read_bytes())
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    out: dict[str, Any] = {}
    if raw.get("last_run"):
        last_run = datetime.fromisoformat(raw["last_run"])
        if last_run.tzinfo is None:  # the schedule compares it with aware times
            raise ValueError(f"last_run has no time zone: {raw['last_run']!r}")
        out["last_run"] = last_run
    why = raw.get("needs_registration")
    if why is not None:
        if not isinstance(why, str):
            raise TypeError("needs_registration is not a string")
        out["needs_registration"] = why
    return out


def identity_state(registered: bool, needs_registration: str | None) -> str:
    """The identity state ``status`` shows: registered, unregistered, needs-registration."""
    if needs_registration is not None:
        return NEEDS_REGISTRATION
    return REGISTERED if registered else UNREGISTERED


def _cause(exc: DeviceDirectError) -> str:
    """A short name for the log line: which check failed."""
    if isinstance(exc, TLSError):
        return f"tls-{exc.reason}"
    if isinstance(exc, ServerRejected):
        return f"rejected-{exc.status}"
    return type(exc).__name__.rstrip("_")


def _default_transport(agent: Agent) -> Transport:
    cfg = agent.config.server
    return Transport(
        cfg.url, cfg.ca_bundle, cfg.server_name, agent.identity, agent.clock,
        tls_library=cfg.tls_library,
    )

