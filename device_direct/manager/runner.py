"""``device-direct manager run``: register once, scan daily, upload each printer's payload.

Theory of operation
-------------------
State lives under ``[manager] data_dir``::

    identity/                 the manager's key, certificate, id (IdentityStore)
    printers/<serial>/outbox/ one OutboxStore per printer (payloads waiting, history)
    readings.json             each printer's last reading (``manager scan --json`` shape,
                              each printer with its own ``read_at``), atomically
    status.json               last read, last exchange, last success, next run, scope

A cycle is: scan the configured targets (and the out-of-scope ones, to count them), keep
the readings, build one payload per in-scope printer with a serial and a model (others
are listed in the readings with what was missing, never reported with invented values),
add each to its printer's outbox (durably, with its Upload-Id fixed before the first
try), then flush every outbox: oldest first, each entry through ``begin_send`` /
``mark_sent`` | ``mark_failed`` (backoff with jitter, :class:`~device_direct.core.retry.
Backoff`) | ``mark_rejected``. Killed at any point, the next start finds every payload
still queued under its Upload-Id, and the server answers a resend ``duplicate``: no loss,
no double count.

Daily at ``scan_time`` local time (:class:`~device_direct.core.schedule.DailySchedule`,
a missed run done at start); between runs it polls the server's actions for its
printers (not in locked-down mode) and retries what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import platform
import random
import re
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from device_direct import __version__
from device_direct.clock import Clock
from device_direct.core.payload import PayloadMeta, Trigger
from device_direct.core.retry import Backoff, Disposition, classify_error
from device_direct.core.schedule import DailySchedule
from device_direct.durable import atomic_write
from device_direct.errors import (
    ConfigError,
    DeviceDirectError,
    ServerRejected,
    StorageError,
)
from device_direct.identity import IdentityStore
from device_direct.manager.client import ManagerTransport
from device_direct.manager.config import ManagerConfig
from device_direct.manager.payload import (
    ManagerIdentity,
    build_manager_payload,
    reading_from_json,
)
from device_direct.manager.reading import PrinterReading
from device_direct.outbox_store import OutboxStore

log = logging.getLogger("device_direct.manager.runner")

OUTBOX_BUDGET = 4 << 20  # per printer: a manager payload is ~2-4 KiB
ACTION_POLL_S = 300.0
PJL_TEST_PAGE = (b"\x1b%-12345X@PJL\r\n@PJL JOB NAME=\"Device Direct test page\"\r\n"
                 b"@PJL ENTER LANGUAGE=PCL\r\n\x1bE"
                 b"Device Direct test page (sent by the device manager)\r\n\x1bE"
                 b"\x1b%-12345X@PJL EOJ NAME=\"Device Direct test page\"\r\n\x1b%-12345X")


def printer_dir_name(serial: str) -> str:
    """A directory name for a serial: readable, safe, distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", serial)[:48].lstrip(".") or "printer"
    return f"{safe}-{hashlib.sha256(serial.encode()).hexdigest()[:8]}"


@dataclass
class RunStatus:
    """What ``manager status`` shows (kept in ``status.json``)."""

    manager_id: str | None = None
    last_read: str | None = None
    last_exchange: str | None = None
    last_success: str | None = None
    next_scheduled: str | None = None
    in_scope: list[str] = field(default_factory=list)
    out_of_scope: list[str] = field(default_factory=list)
    not_reportable: list[str] = field(default_factory=list)
    queued: int = 0
    last_error: str | None = None
    security_mode: str = "normal"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ManagerRunner:
    """One manager: its config, identity, outboxes and status."""

    def __init__(self, config: ManagerConfig, clock: Clock, rng: random.Random | None = None,
                 *, os_name: str | None = None) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.data_dir = config.data_dir
        self.identity = IdentityStore(self.data_dir / "identity")
        self.backoff = Backoff()
        self.status = load_status(self.data_dir)
        self.status.security_mode = config.security_mode
        self.os_name = os_name or f"{platform.system()} {platform.release()}".strip()
        self.schedule = DailySchedule(at=config.scan_time, tz=config.time_zone, missed="catch-up")
        self.readings: dict[str, PrinterReading] = {}  # serial -> last reading
        self.read_at: dict[str, str] = {}  # serial -> when that reading was taken
        self._stores: dict[Path, OutboxStore] = {}  # printer directory -> its open outbox
        self._load_readings()

    # -- transport and identity -----------------------------------------------------------

    def transport(self) -> ManagerTransport:
        c = self.config
        return ManagerTransport(c.url, c.ca_bundle, c.server_name, self.identity, self.clock,
                                proxy=c.proxy, proxy_credentials=c.proxy_credentials)

    def _my_ip(self) -> str:
        if self.config.ip:
            return self.config.ip
        host = self.config.server_name
        try:  # the address this host uses toward the server (no packet is sent)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((socket.gethostbyname(host), 443))
                return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"

    async def ensure_registered(self, transport: ManagerTransport) -> str:
        """Register once; renew the certificate when it nears its end (the device's
        margin); the manager id."""
        if self.identity.device_id is not None:
            if self.identity.needs_renewal(self.clock.now()):
                await transport.renew()  # the device's call, at /managers/{id}/renew
                log.info("manager certificate renewed")
            return self.identity.device_id
        key = self.config.registration_key
        if not key:
            raise ConfigError("the manager is not registered and has no registration key",
                              path=self.config.source, key="server.registration_key")
        manager_id = await transport.register_manager({
            "hostname": self.config.hostname, "ip": self._my_ip(), "os": self.os_name,
            "app_version": __version__, "location": self.config.location,
            "contact_email": self.config.contact_email}, key)
        self.status.manager_id = manager_id
        self._exchanged(success=True)
        log.info("registered as manager %s", manager_id)
        return manager_id

    # -- scanning and payloads ------------------------------------------------------------

    async def scan(self, targets: tuple[str, ...] | None = None) -> list[PrinterReading]:
        """Scan (the configured scope by default); keep the readings; return in-scope ones."""
        from device_direct.manager.scan import Scanner, ScanOptions
        from device_direct.manager.snmp import Credential
        from device_direct.manager.targets import parse_targets
        from device_direct.manager.vendors import VendorCatalog

        c = self.config
        words = targets if targets is not None else c.targets + c.out_of_scope
        excluded = {t.host for t in parse_targets(c.out_of_scope, c.snmp_port)} \
            if c.out_of_scope else set()
        options = ScanOptions(credentials=tuple(Credential(community=x)
                                                for x in c.communities) + tuple(
            Credential(user=u, auth_key=a, priv_key=p) for u, a, p in c.v3_users),
                              timeout=c.timeout, retries=c.retries,
                              concurrency=c.concurrency, v1=c.snmp_v1,
                              resolve_names=c.resolve_names)
        scanner = Scanner(options, VendorCatalog.load())
        try:
            report = await scanner.scan(parse_targets(words, c.snmp_port))
        finally:
            scanner.close()
        inside = [p for p in report.printers if _host(p.address) not in excluded]
        if targets is None:
            self.status.in_scope = sorted(p.serial or p.address for p in inside)
            self.status.out_of_scope = sorted(p.serial or p.address for p in report.printers
                                              if _host(p.address) in excluded)
            self.status.not_reportable = sorted(p.address for p in inside
                                                if not (p.serial and p.model))
        self.status.last_read = self.clock.now().isoformat()
        for p in inside:
            if p.serial:
                self.readings[p.serial] = p
                self.read_at[p.serial] = self.status.last_read
        # Each printer with its own read time: a printer not seen this run keeps its
        # earlier reading, and the time of that one.
        atomic_write(self.data_dir / "readings.json", json.dumps(
            {"printers": [{**p.to_json(), "read_at": self.read_at.get(p.serial or "")}
                          for p in sorted(self.readings.values(), key=lambda r: r.address)],
             "read_at": self.status.last_read, "not_printers": len(report.not_printers),
             "no_answer": len(report.no_answer),
             "errors": [asdict(e) for e in report.errors]}, indent=1).encode())
        self._save_status()
        return inside

    def outbox(self, serial: str) -> OutboxStore:
        return self._store(self.data_dir / "printers" / printer_dir_name(serial))

    def _store(self, directory: Path) -> OutboxStore:
        """The printer's outbox, opened (recovered from disk) once per process and kept:
        with 2,000 printers, reopening each on every flush rescans 2,000 directories."""
        store = self._stores.get(directory)
        if store is None:
            store = self._stores[directory] = OutboxStore.open(
                directory, budget_bytes=OUTBOX_BUDGET, clock=self.clock, rng=self.rng)
        return store

    def enqueue(self, readings: list[PrinterReading], trigger: Trigger = "scheduled"
                ) -> list[str]:
        """One payload per reportable printer into its own outbox; the Upload-Ids."""
        ids: list[str] = []
        me = ManagerIdentity(
            hostname=self.config.hostname, os=self.os_name, app_version=__version__,
            ip=self.config.ip, manager_id=self.identity.device_id,
            printers_in_scope=len(self.status.in_scope),
            printers_out_of_scope=len(self.status.out_of_scope),
            database_bytes=_tree_size(self.data_dir), security_mode=self.config.security_mode)
        for reading in readings:
            if not (reading.serial and reading.model):
                continue
            store = self.outbox(reading.serial)
            alloc = store.allocate()
            now = self.clock.now()
            meta = PayloadMeta(upload_id=alloc.upload_id, sequence=alloc.sequence,
                               generated_at=now, trigger=trigger)
            zip_bytes = build_manager_payload(reading, meta, me, read_at=now,
                                              method=_method(reading))
            store.add(zip_bytes, meta)
            ids.append(alloc.upload_id)
            log.info("payload %s (printer %s, seq %d, %d bytes) queued", alloc.upload_id,
                     reading.serial, alloc.sequence, len(zip_bytes))
        return ids

    async def flush(self, transport: ManagerTransport) -> int:
        """Send what is due in every printer's outbox; the number still queued."""
        root = self.data_dir / "printers"
        queued = 0
        for directory in sorted(root.iterdir()) if root.is_dir() else []:
            store = self._store(directory)
            while (entry := store.next_due(self.clock.now())) is not None:
                try:
                    data = store.begin_send(entry, self.clock.now())
                except StorageError as exc:
                    log.error("outbox %s: %s", directory.name, exc)
                    continue
                try:
                    result = await transport.upload(data, entry.upload_id)
                except DeviceDirectError as exc:
                    now = self.clock.now()
                    self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    if classify_error(exc) is Disposition.FINAL and isinstance(
                            exc, ServerRejected):
                        store.mark_rejected(entry, exc.status, f"{exc.error}: {exc.detail}"[
                            :200], now)
                        self._exchanged(success=False)
                        continue
                    delay = self.backoff.next_delay(self.rng)
                    self.backoff = self.backoff.increment()
                    store.mark_failed(entry, str(exc)[:200], now, delay)
                    log.warning("upload %s failed: %s; retry in %.0f s", entry.upload_id,
                                exc, delay)
                    break
                store.mark_sent(entry, result.status, self.clock.now())
                log.info("payload %s %s", entry.upload_id, result.status)
                self.backoff = self.backoff.reset()
                self._exchanged(success=True)
            queued += len(store.entries())
        self.status.queued = queued
        self._save_status()
        return queued

    # -- actions --------------------------------------------------------------------------

    async def handle_actions(self, transport: ManagerTransport) -> int:
        """Poll and carry out the server's actions (never in locked-down mode)."""
        if self.config.locked_down:
            return 0
        actions = await transport.poll_actions()
        self._exchanged(success=True)
        for action in actions:
            status, detail = await self._do(transport, action)
            await transport.report_action(str(action["id"]), status, detail)
        return len(actions)

    async def _do(self, transport: ManagerTransport, action: dict[str, Any]
                  ) -> tuple[str, dict[str, Any]]:
        kind = str(action["type"])
        serial = str(action.get("serial", ""))
        if not self.config.action_enabled(kind):
            return "rejected", {"message": f"action {kind} is disabled in this manager's "
                                           "configuration"}
        reading = self.readings.get(serial)
        if reading is None:
            return "failed", {"message": f"printer {serial} is not one this manager has read"}
        try:
            if kind == "print-test-page":
                sent = await send_test_page(_host(reading.address),
                                            self.config.test_page_port)
                return "succeeded", {"bytes": sent}
            fresh = await self.scan((reading.address,))
            mine = [p for p in fresh if p.serial == serial]
            if not mine:
                return "failed", {"message": f"printer {serial} did not answer at "
                                             f"{reading.address}"}
            if kind == "get-status":
                p = mine[0]
                return "succeeded", {"status": p.status, "counters": p.counters,
                                     "supplies": [s.state for s in p.supplies]}
            ids = self.enqueue(mine, trigger="action")
            await self.flush(transport)
            return "succeeded", {"upload_ids": ids}
        except (OSError, DeviceDirectError) as exc:
            return "failed", {"message": f"{type(exc).__name__}: {exc}"[:300]}

    # -- the loop -------------------------------------------------------------------------

    async def cycle(self, transport: ManagerTransport) -> None:
        """One scheduled run: scan, enqueue, flush, actions."""
        await self.ensure_registered(transport)
        self.enqueue(await self.scan())
        await self.flush(transport)
        await self.handle_actions(transport)

    async def run(self, *, once: bool = False) -> None:
        transport = self.transport()
        try:
            if once:
                await self.cycle(transport)
                return
            last = self.status.last_read
            # A first start scans at once; later starts catch up a missed daily run.
            due = self.schedule.on_boot(self.clock.now(), datetime.fromisoformat(last)
                                        ) if last else self.clock.now()
            next_poll = self.clock.now()
            while True:
                now = self.clock.now()
                try:
                    if now >= due:
                        await self.cycle(transport)
                        due = self.schedule.next_run(self.clock.now())
                        next_poll = self.clock.now() + timedelta(seconds=ACTION_POLL_S)
                    elif now >= next_poll:
                        await self.ensure_registered(transport)
                        await self.flush(transport)
                        await self.handle_actions(transport)
                        next_poll = now + timedelta(seconds=ACTION_POLL_S)
                except DeviceDirectError as exc:
                    if isinstance(exc, ConfigError):
                        raise
                    self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.error("manager cycle: %s", exc)
                    next_poll = self.clock.now() + timedelta(
                        seconds=self.backoff.next_delay(self.rng))
                    self.backoff = self.backoff.increment()
                self.status.next_scheduled = due.isoformat()
                self._save_status()
                await self.clock.sleep_until(min(due, next_poll))
        finally:
            await transport.close()

    # -- status ---------------------------------------------------------------------------

    def _exchanged(self, *, success: bool) -> None:
        now = self.clock.now().isoformat()
        self.status.last_exchange = now
        if success:
            self.status.last_success = now
            self.status.last_error = None
        self.status.manager_id = self.identity.device_id

    def _save_status(self) -> None:
        self.status.manager_id = self.identity.device_id
        if self.status.next_scheduled is None:
            self.status.next_scheduled = self.schedule.next_run(self.clock.now()).isoformat()
        atomic_write(self.data_dir / "status.json",
                     json.dumps(self.status.to_json(), indent=1).encode())

    def _load_readings(self) -> None:
        path = self.data_dir / "readings.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            for p in doc.get("printers", []):
                p = dict(p)
                at = p.pop("read_at", None)
                reading = reading_from_json(p)
                if reading.serial:
                    self.readings[reading.serial] = reading
                    if isinstance(at, str):
                        self.read_at[reading.serial] = at
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError) as exc:
            log.error("%s unreadable (%s): starting without stored readings", path, exc)


def load_status(data_dir: Path) -> RunStatus:
    try:
        doc = json.loads((data_dir / "status.json").read_text(encoding="utf-8"))
        return RunStatus(**{k: v for k, v in doc.items() if k in RunStatus.__annotations__})
    except FileNotFoundError:
        return RunStatus()
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"{data_dir / 'status.json'}: unreadable ({exc})") from exc


async def send_test_page(host: str, port: int, timeout: float = 10.0) -> int:
    """Send a small PJL job to ``host:port`` (raw printing); the bytes sent."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(PJL_TEST_PAGE)
        await asyncio.wait_for(writer.drain(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    return len(PJL_TEST_PAGE)


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _method(reading: PrinterReading) -> str:
    cred = reading.properties.get("snmp")  # Credential.label(): "v1", "v2c" or "v3:USER"
    if isinstance(cred, str) and cred.startswith("v3"):
        return "snmpv3"
    return "snmpv1" if cred == "v1" else "snmpv2c"


def _tree_size(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total
