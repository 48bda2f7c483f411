"""Port 9100 ("JetDirect" raw printing) for one emulated printer.

Theory of operation
-------------------
Each connection runs :class:`emulator.jetdirect.stream.StreamSplitter` over the bytes
it reads and handles the events in order: PJL commands are answered at once
(:mod:`emulator.jetdirect.pjl`); a print job is counted (:mod:`emulator.jetdirect.jobs`)
and printed by the model (``await device.print_job(...)``) before the next event is
handled, so an ``@PJL ECHO`` sent after a job comes back once the meters have moved.
A DLM firmware file is parsed and handed to the injected ``on_firmware`` callback,
which accepts it by returning and refuses it by raising :class:`DlmRejected`; the
default refuses ("firmware by print job is disabled"), and the admin switch
:attr:`JetDirectServer.firmware_by_print_job` refuses before the callback is asked.

With ``@PJL USTATUS DEVICE=ON`` a connection gets ``@PJL USTATUS DEVICE`` whenever
the status code differs from the last one it was sent (checked after every batch of
commands, after every job, and every ``STATUS_POLL_S`` while the client is quiet, so a
change in the model reaches it unasked), with ``JOB=ON`` START/END messages around each job,
with ``PAGE=ON`` one message per printed page, and with ``TIMED=n`` the device status
every n seconds of the injected clock.

Limits: concurrent connections (extra ones are closed at once), idle time (real
seconds: it guards a socket, so it runs on the event loop's timer, not on the
device's clock, which may be virtual), PJL line length and job size. Bytes that are
neither PJL nor a print language, and any limit broken, end the connection cleanly
with one rate-limited warning naming the peer and the cause
(:class:`emulator.snmp.bad_input.BadInputLog`), never a traceback.

The panel (RDYMSG, OPMSG, STMSG) is the device's (:attr:`EmulatedDevice.console`),
so SNMP's display text and status follow what a PJL client sets here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from device_direct.clock import Clock
from device_direct.errors import ModelError
from device_direct.model import JobKind, PrintJob
from emulator.errors import EmulatorError
from emulator.jetdirect import pjl
from emulator.jetdirect.jobs import (
    DlmError,
    DlmFile,
    Language,
    count_pages,
    detect_language,
    parse_dlm,
    settings_from_pjl,
)
from emulator.jetdirect.stream import JobData, Limits, PjlCommand, State, StreamSplitter
from emulator.model.device import EmulatedDevice
from emulator.snmp.bad_input import BadInputLog
from emulator.snmp.printer_status import status_of_device

log = logging.getLogger("emulator.jetdirect")

DISABLED_REASON = "firmware by print job is disabled"
STATUS_POLL_S = 0.5  # real seconds between looks at the model for USTATUS DEVICE
SWITCHED_OFF_REASON = "firmware updates by print job are switched off by the administrator"


class JetDirectError(EmulatorError):
    """The port 9100 server could not start."""


class DlmRejected(EmulatorError):
    """Raised by an ``on_firmware`` callback to refuse a DLM file; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


FirmwareHandler = Callable[[DlmFile], Awaitable[None]]


async def reject_firmware(dlm: DlmFile) -> None:
    """The default ``on_firmware``: refuse every DLM file."""
    raise DlmRejected(DISABLED_REASON)


@dataclass(frozen=True, slots=True)
class JetDirectConfig:
    host: str = "127.0.0.1"
    port: int = 9100  # 0: any free port
    max_connections: int = 8
    idle_timeout_s: float = 300.0
    limits: Limits = field(default_factory=Limits)
    firmware_by_print_job: bool = True  # the admin switch (see module doc)
    bad_input_interval_s: float = 60.0  # at most one warning line per this many seconds

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.max_connections < 1 or self.idle_timeout_s <= 0:
            raise ValueError("max_connections must be >= 1 and idle_timeout_s > 0")


@dataclass(frozen=True, slots=True)
class FirmwareOutcome:
    name: str
    version: str
    accepted: bool
    reason: str


@dataclass(slots=True)
class JetDirectStats:
    connections: int = 0
    refused_connections: int = 0
    jobs: int = 0
    pages: int = 0  # logical pages counted in jobs (before copies)
    impressions: int = 0  # what the model printed
    failed_jobs: int = 0
    garbage: int = 0
    violations: int = 0
    firmware: deque[FirmwareOutcome] = field(default_factory=lambda: deque(maxlen=20))


class JetDirectServer:
    """The raw print port of one emulated device."""

    def __init__(self, device: EmulatedDevice, *, clock: Clock, config: JetDirectConfig,
                 on_firmware: FirmwareHandler = reject_firmware) -> None:
        self.device = device
        self.clock = clock
        self.config = config
        self.on_firmware = on_firmware
        self.firmware_by_print_job = config.firmware_by_print_job
        self.stats = JetDirectStats()
        self.bad_input = BadInputLog(log, "port 9100", time.monotonic,
                                     interval_s=config.bad_input_interval_s)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = 0
        self._paused = False

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        """Listen on the configured TCP port."""
        if self._server is not None:
            raise JetDirectError("the port 9100 server is already running")
        try:
            self._server = await asyncio.start_server(
                self._accept, self.config.host, self.config.port)
        except OSError as exc:
            raise JetDirectError(f"cannot listen on tcp/{self.config.host}:"
                                 f"{self.config.port}: {exc}") from exc
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("port 9100 service for %s on tcp/%s:%d", self.device.serial,
                 self.config.host, self._port)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def pause(self) -> None:
        """Stop listening and drop every connection, keeping the port for :meth:`resume`
        (the network is cut: :mod:`emulator.network_cut`)."""
        if self._server is None:
            return
        await self.stop()
        self._paused = True

    async def resume(self) -> None:
        """Listen again on the port :meth:`pause` left (no-op unless paused)."""
        if not self._paused:
            return
        self._paused = False
        try:
            self._server = await asyncio.start_server(self._accept, self.config.host,
                                                      self._port)
        except OSError as exc:
            raise JetDirectError(f"cannot listen again on tcp/{self.config.host}:"
                                 f"{self._port}: {exc}") from exc

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def ready_message(self) -> str:
        """The panel's ready message (``@PJL RDYMSG``)."""
        return self.device.console.ready_message

    def view(self) -> pjl.DeviceView:
        """The device as PJL answers describe it, now."""
        d = self.device
        profile = d.profile
        ident = d.identity()
        labels = {m.name: m.label for m in profile.identity.firmware}
        return pjl.DeviceView(
            model=ident.model, status=status_of_device(d),
            power=d.power, page_count=d.counters().total_impressions,
            color=profile.engine.color, trays=profile.engine.trays,
            duplex="duplex" in profile.identity.features,
            a3="a3" in profile.identity.features, equipment=profile.equipment,
            serial=ident.serial, product_code=ident.product_code,
            options=ident.installed_options,
            firmware=tuple((labels.get(k, k), v) for k, v in ident.firmware.items()))

    # -- connections -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.config.max_connections:
            self.stats.refused_connections += 1
            log.info("port 9100: refusing a connection (%d open)", len(self._tasks))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.stats.connections += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError) as exc:
            log.info("port 9100: connection from %s lost: %s", _peer(writer), exc)
        except Exception as exc:  # a bug must cost one connection, not the port
            self.bad_input.report(_peer(writer), f"connection failed: "
                                  f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = pjl.PjlSession()
        splitter = StreamSplitter(self.config.limits)
        timed: asyncio.Task[None] | None = None
        timed_every = 0
        try:
            idle = 0.0
            while splitter.state is not State.CLOSED:
                # With unsolicited device status on, the model is looked at every
                # STATUS_POLL_S while the client is quiet, so an alert raised or
                # cleared in the model reaches it without waiting for its next command.
                wait = self.config.idle_timeout_s - idle
                if session.ustatus.device != "OFF":
                    wait = min(wait, STATUS_POLL_S)
                try:
                    async with asyncio.timeout(wait):
                        chunk = await reader.read(65536)
                except TimeoutError:
                    idle += wait
                    if idle >= self.config.idle_timeout_s:
                        log.info("port 9100: idle for %ss, closing",
                                 self.config.idle_timeout_s)
                        return
                    self._maybe_device_status(session, writer)
                    await writer.drain()
                    continue
                idle = 0.0
                events = splitter.feed(chunk) if chunk else splitter.eof()
                for event in events:
                    if not await self._handle(event, session, writer):
                        return
                self._maybe_device_status(session, writer)
                if session.ustatus.timed != timed_every:
                    if timed is not None:
                        timed.cancel()
                    timed_every = session.ustatus.timed
                    timed = (asyncio.create_task(self._timed(timed_every, writer))
                             if timed_every else None)
                await writer.drain()
                if not chunk:
                    return
        finally:
            if timed is not None:
                timed.cancel()

    async def _handle(self, event: object, session: pjl.PjlSession,
                      writer: asyncio.StreamWriter) -> bool:
        """Handle one event; False closes the connection."""
        if isinstance(event, PjlCommand):
            outcome = session.command(event.line, self.view())
            if outcome.ready_message is not None:
                self.device.console.set_ready_message(outcome.ready_message)
            if outcome.operator_message is not None:
                self.device.console.set_operator_message(outcome.operator_message)
            if outcome.reply:
                writer.write(outcome.reply.encode("latin-1", "replace"))
            return True
        if isinstance(event, JobData):
            return await self._job(event, session, writer)
        self.stats.violations += 1
        self.bad_input.report(_peer(writer), f"{getattr(event, 'reason', event)}; "
                              f"connection closed")
        return False

    def _maybe_device_status(self, session: pjl.PjlSession,
                             writer: asyncio.StreamWriter) -> None:
        if session.ustatus.device == "OFF":
            return
        view = self.view()
        code = pjl.pjl_status(view).code
        if code != session.last_device_code:
            session.last_device_code = code
            writer.write(pjl.ustatus_device(view).encode("latin-1", "replace"))

    async def _timed(self, every: int, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.clock.sleep(every)
            writer.write(pjl.ustatus_device(self.view()).encode("latin-1", "replace"))

    # -- jobs --------------------------------------------------------------------------

    async def _job(self, event: JobData, session: pjl.PjlSession,
                   writer: asyncio.StreamWriter) -> bool:
        language = detect_language(event.data, event.language)
        if language is Language.DLM:
            await self._firmware(event.data)
            session.end_job()
            return True
        if language is Language.GARBAGE:
            self.stats.garbage += 1
            self.bad_input.report(_peer(writer), f"{len(event.data)} bytes that are neither "
                                  f"PJL nor a print language (start "
                                  f"{event.data[:8].hex(' ')}); connection closed")
            return False
        settings = settings_from_pjl(session.job_lines)
        session.end_job()
        count = count_pages(event.data, language)
        name = settings.job_name or f"{language.value} job"
        self.stats.jobs += 1
        self.stats.pages += count.pages
        if session.ustatus.job:
            writer.write(pjl.ustatus_job("START", name).encode("latin-1", "replace"))
        printed = 0
        if count.pages:
            color = count.color if settings.render_color is None else settings.render_color
            job = PrintJob(kind=JobKind.PRINT, pages=count.pages, copies=settings.copies,
                           duplex=settings.duplex, color=color, large=settings.large,
                           user=settings.user, job_name=settings.job_name)
            try:
                result = await self.device.print_job(job)
                printed = result.impressions
            except ModelError as exc:
                self.stats.failed_jobs += 1
                log.warning("port 9100: job %r not printed: %s", name, exc)
        self.stats.impressions += printed
        log.info("port 9100: %s, %d page(s) counted, %d impression(s) printed",
                 name, count.pages, printed)
        if session.ustatus.page:
            for n in range(1, printed + 1):
                writer.write(pjl.ustatus_page(n).encode("latin-1"))
        if session.ustatus.job:
            writer.write(pjl.ustatus_job("END", name, printed).encode("latin-1", "replace"))
        self._maybe_device_status(session, writer)
        return True

    async def _firmware(self, data: bytes) -> None:
        try:
            dlm = parse_dlm(data)
        except DlmError as exc:
            self._firmware_done("", "", False, f"malformed DLM: {exc}")
            return
        if not self.firmware_by_print_job:
            self._firmware_done(dlm.name, dlm.version, False, SWITCHED_OFF_REASON)
            return
        try:
            await self.on_firmware(dlm)
        except DlmRejected as exc:
            self._firmware_done(dlm.name, dlm.version, False, exc.reason)
        except Exception as exc:  # the installer is another module: never take 9100 down
            log.exception("port 9100: the firmware handler failed")
            self._firmware_done(dlm.name, dlm.version, False, f"handler failed: {exc}")
        else:
            self._firmware_done(dlm.name, dlm.version, True, "")

    def _firmware_done(self, name: str, version: str, accepted: bool, reason: str) -> None:
        self.stats.firmware.append(FirmwareOutcome(name, version, accepted, reason))
        if accepted:
            log.info("port 9100: DLM %s %s accepted", name, version)
        else:
            log.warning("port 9100: DLM %s %s rejected: %s", name or "?", version or "?", reason)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
