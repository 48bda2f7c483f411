"""The emulated printer's SNMP agent (v1, v2c, v3 USM) on a UDP port.

Theory of operation
-------------------
pysnmp carries the protocol: message parsing (long-form BER lengths included),
communities, USM authentication and privacy, VACM access rights. Every request is
answered by :class:`emulator.snmp.instrum.LiveMibInstrum` from a snapshot table that
:func:`emulator.snmp.printer_mib.build_table` computes from the model. The snapshot is
rebuilt when the model has changed since it was taken (the device's and its panel's
revision numbers, the power state, the system strings) or when it is older than
``snapshot_max_age_s`` on the device's clock, so no value is older than the last
change and a walk does not rebuild the table for every request. The few values that
move on their own (sysUpTime, hrSystemUptime, hrSystemDate, snmpEngineTime, the SNMP
and interface counters) are read live on every request.

While the device is off the agent drops requests (a switched-off printer does not
answer), while it boots it answers with hrPrinterStatus warmup.

Bad datagrams never produce a traceback: pysnmp's message dispatcher is wrapped so that
anything it raises on a datagram is counted (snmpInASNParseErrs) and reported by one
rate-limited warning naming the peer and the cause (:mod:`emulator.snmp.bad_input`);
datagrams pysnmp rejects itself as unparsable or of an unknown version are reported
the same way.

The engine (SNMP-FRAMEWORK-MIB): snmpEngineID is built from the vendor's enterprise
number and the MAC (RFC 3411 format 3); snmpEngineBoots is the device's power-on count
(it grows on every boot, and snmpEngineTime restarts then); snmpEngineTime counts real
seconds, as USM's time window needs.

Rights: a community or user with ``write=True`` may SET sysContact, sysName and
sysLocation (:class:`emulator.snmp.settings.SystemSettings`); anyone else gets
noAccess (v2c/v3) or noSuchName (v1). Everything is readable by every configured
principal.

Counters the model does not keep are tracked here from what the agent sees:
prtAlertAllEvents is the highest prtAlertIndex seen (indexes are handed out 1, 2, 3...),
prtAlertCriticalEvents counts critical rows seen, and prtMarkerPowerOnCount counts
impressions since the agent first saw the current boot.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine
from pysnmp.entity.rfc3413 import context as snmp_context
from pysnmp.proto import rfc1902

from device_direct.clock import Clock
from device_direct.model import PowerState, Severity
from emulator.errors import EmulatorError
from emulator.model.device import EmulatedDevice
from emulator.model.profile import JOB_KINDS
from emulator.snmp import system_mibs as sm
from emulator.snmp.bad_input import BadInputLog
from emulator.snmp.instrum import (
    BulkResponder,
    GetResponder,
    LiveMibInstrum,
    LiveValues,
    NextResponder,
    SetResponder,
)
from emulator.snmp.oid_table import MibValue, Oid, OidTable, counter, integer, text, ticks
from emulator.snmp.printer_mib import (
    HR_SYSTEM_DATE,
    HR_SYSTEM_UPTIME,
    SYS_CONTACT,
    SYS_LOCATION,
    SYS_NAME,
    HardwareFacts,
    MibInput,
    build_table,
    date_and_time,
)
from emulator.snmp.settings import SystemSettings, check_display_string

log = logging.getLogger("emulator.snmp")

_EVERYTHING = (1, 3, 6)
_WRITABLE: dict[Oid, str] = {SYS_CONTACT: "contact", SYS_NAME: "name", SYS_LOCATION: "location"}
_AUTH = {"SHA": snmp_config.USM_AUTH_HMAC96_SHA,
         "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256}
_PRIV = {"AES": snmp_config.USM_PRIV_CFB128_AES, "NONE": snmp_config.USM_PRIV_NONE}
MAX_MESSAGE_SIZE = 65507  # the largest UDP payload; answers stay far below it


class SnmpAgentError(EmulatorError):
    """The SNMP agent could not start (port in use, bad configuration)."""


@dataclass(frozen=True, slots=True)
class Community:
    """An SNMPv1/v2c community; ``write`` lets it SET."""

    name: str
    write: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable() or len(self.name) > 32:
            raise ValueError(f"community must be 1..32 printable characters, got {self.name!r}")


@dataclass(frozen=True, slots=True)
class UsmUser:
    """An SNMPv3 user. Keys are pass phrases (RFC 3414: at least 8 characters)."""

    name: str
    auth_key: str
    priv_key: str | None = None  # None: authNoPriv
    auth: str = "SHA"  # SHA | SHA256
    priv: str = "AES"  # AES (128-bit CFB)
    write: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable() or len(self.name) > 32:
            raise ValueError(f"user name must be 1..32 printable characters, got {self.name!r}")
        if self.auth not in _AUTH:
            raise ValueError(f"user {self.name}: auth must be one of {sorted(_AUTH)}")
        if self.priv not in _PRIV or self.priv == "NONE":
            raise ValueError(f"user {self.name}: priv must be AES")
        for what, key in (("auth_key", self.auth_key), ("priv_key", self.priv_key)):
            if key is not None and len(key) < 8:
                raise ValueError(f"user {self.name}: {what} must have at least 8 characters")

    @property
    def level(self) -> str:
        return "authPriv" if self.priv_key is not None else "authNoPriv"


@dataclass(frozen=True, slots=True)
class SnmpAgentConfig:
    """Where the agent listens and who may talk to it."""

    host: str = "127.0.0.1"
    port: int = 161  # 0: any free port (see SnmpAgent.port)
    communities: tuple[Community, ...] = (Community("public"),
                                          Community("private", write=True))
    users: tuple[UsmUser, ...] = field(default=())
    # A snapshot older than this (device clock) is rebuilt even without a change.
    snapshot_max_age_s: float = 5.0
    # Bad datagrams: at most one warning line per this many real seconds.
    bad_input_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.snapshot_max_age_s < 0 or self.bad_input_interval_s <= 0:
            raise ValueError("snapshot_max_age_s must be >= 0 and bad_input_interval_s > 0")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not self.communities and not self.users:
            raise ValueError("configure at least one community or SNMPv3 user")
        names = [c.name for c in self.communities]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate community in {names}")


def hardware_facts(device: EmulatedDevice) -> HardwareFacts:
    """The static facts the MIB needs, from the device's profile."""
    p = device.profile
    return HardwareFacts(
        sys_object_id=p.identity.sys_object_id,
        firmware_labels=tuple((m.name, m.label) for m in p.identity.firmware),
        color=p.engine.color, trays=p.engine.trays, ppm=p.engine.ppm,
        duplex="duplex" in p.identity.features, a3="a3" in p.identity.features,
        services=tuple(kind for kind, share in zip(JOB_KINDS, p.usage.job_mix, strict=True)
                       if share > 0))


def engine_id(hardware: HardwareFacts, mac: str) -> bytes:
    """snmpEngineID (RFC 3411): enterprise number with the high bit, format 3 (MAC)."""
    return ((0x80000000 | hardware.enterprise).to_bytes(4, "big") + b"\x03"
            + bytes.fromhex(mac.replace(":", "")))


class SnmpAgent:
    """Printer-MIB / HOST-RESOURCES-MIB agent for one emulated device."""

    def __init__(self, device: EmulatedDevice, *, clock: Clock, config: SnmpAgentConfig,
                 settings_path: Path | None = None) -> None:
        self.device = device
        self.clock = clock
        self.config = config
        self.hardware = hardware_facts(device)
        net = device.network()
        self.settings = SystemSettings(name=net.hostname, path=settings_path)
        self._engine: Any = None
        self._port = 0
        self._max_alert_index = 0
        self._critical_seen = 0
        self._max_critical_index = 0
        self._boot_key: str | None = None
        self._boot_impressions = 0
        self._boots = 0
        self._snapshot: OidTable | None = None
        self._snapshot_key: tuple[object, ...] = ()
        self._snapshot_at = 0.0
        self.snapshots_built = 0
        # Datagrams and octets through the agent (IF-MIB counters of its interface).
        self.io = {"in_pkts": 0, "in_octets": 0, "out_pkts": 0, "out_octets": 0}
        # The network gate (emulator.network_cut): False drops every request, as an
        # unplugged cable does.
        self.reachable: Callable[[], bool] = _always
        self.bad_input = BadInputLog(log, "SNMP", time.monotonic,
                                     interval_s=config.bad_input_interval_s)
        writers = [f"community-{i}" for i, c in enumerate(config.communities, start=1)
                   if c.write] + [u.name for u in config.users if u.write]
        self.instrum = LiveMibInstrum(self.table, self._apply_set, frozenset(_WRITABLE),
                                      frozenset(writers), live=self._live_values())
        self.requests_dropped = 0

    # -- live values -------------------------------------------------------------------

    def mib_input(self) -> MibInput:
        """Read the model now and track the counters it does not keep."""
        d = self.device
        snap = d.snapshot()
        for a in snap.alerts:
            if a.severity is Severity.CRITICAL and a.index > self._max_critical_index:
                self._critical_seen += 1
        self._max_critical_index = max(
            [self._max_critical_index, *(a.index for a in snap.alerts
                                         if a.severity is Severity.CRITICAL)])
        self._max_alert_index = max([self._max_alert_index, *(a.index for a in snap.alerts)])
        boot_key = next((p.value for p in snap.properties if p.name == "power-on-count"), "")
        total = snap.counters.total_impressions
        if boot_key != self._boot_key:
            self._boot_key = boot_key
            self._boot_impressions = total
            if int(boot_key or 0) != self._boots:  # the device booted since last look
                self._engine_booted(int(boot_key or 0))
        return MibInput(
            now=self.clock.now(), power=snap.power, uptime_ticks=d.uptime_ticks(),
            identity=snap.identity, network=snap.network, counters=snap.counters,
            supplies=snap.supplies, alerts=snap.alerts, fault_count=len(snap.faults),
            alert_events=self._max_alert_index, critical_events=self._critical_seen,
            power_on_impressions=total - self._boot_impressions,
            system=self.settings.current(), hardware=self.hardware,
            equipment=d.profile.equipment,
            engine=sm.EngineFacts(self._engine_id(), max(1, self._boots), MAX_MESSAGE_SIZE),
            ready_message=d.console.ready_message,
            operator_message=d.console.operator_message)

    def table(self) -> OidTable:
        """Every instance the agent serves: the snapshot, rebuilt when the model changed
        or the snapshot is older than ``snapshot_max_age_s`` (see module doc)."""
        d = self.device
        key = (d.revision, d.console.revision, d.power, self.settings.revision)
        now = self.clock.monotonic()
        if (self._snapshot is None or key != self._snapshot_key
                or now - self._snapshot_at > self.config.snapshot_max_age_s):
            self._snapshot = build_table(self.mib_input())
            self._snapshot_key = key
            self._snapshot_at = now
            self.snapshots_built += 1
        return self._snapshot

    def _engine_id(self) -> bytes:
        return engine_id(self.hardware, self.device.network().mac)

    def _engine_booted(self, boots: int) -> None:
        """The device booted (again): snmpEngineBoots follows, snmpEngineTime restarts."""
        self._boots = boots
        if self._engine is None:
            return
        builder = self._engine.get_mib_builder()
        boots_i, time_i = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineBoots",
                                                 "snmpEngineTime")
        boots_i.syntax = boots_i.syntax.clone(max(1, boots))
        time_i.syntax = time_i.syntax.clone(int(time.time()))

    def _live_values(self) -> LiveValues:
        """The values read on every request (see module doc)."""
        def uptime() -> MibValue:
            return ticks(self.device.uptime_ticks())

        def pysnmp_counter(module: str, name: str) -> Any:
            def read() -> MibValue:
                if self._engine is None:
                    return counter(0)
                (inst,) = self._engine.get_mib_builder().import_symbols(module, name)
                return counter(int(inst.syntax))
            return read

        def engine_time() -> MibValue:
            if self._engine is None:
                return integer(0)
            (inst,) = self._engine.get_mib_builder().import_symbols(
                "__SNMP-FRAMEWORK-MIB", "snmpEngineTime")
            return integer(max(0, min(int(inst.syntax.clone()), 2**31 - 1)))

        def io(name: str) -> Any:
            return lambda: counter(self.io[name])

        live: LiveValues = {
            sm.SYS_UPTIME: uptime, HR_SYSTEM_UPTIME: uptime,
            HR_SYSTEM_DATE: lambda: text(date_and_time(self.clock.now())),
            sm.ENGINE_TIME: engine_time,
            sm.IF_IN_OCTETS: io("in_octets"), sm.IF_IN_UCAST: io("in_pkts"),
            sm.IF_OUT_OCTETS: io("out_octets"), sm.IF_OUT_UCAST: io("out_pkts"),
        }
        for oid, module, name in sm.SNMP_COUNTERS:
            live[oid] = pysnmp_counter(module, name)
        return live

    def _apply_set(self, changes: dict[Oid, bytes]) -> None:
        decoded = {_WRITABLE[oid]: check_display_string(_WRITABLE[oid], raw)
                   for oid, raw in changes.items()}
        self.settings.update(decoded)
        log.info("SNMP SET %s", ", ".join(f"{k}={v!r}" for k, v in decoded.items()))

    def _answering(self) -> bool:
        if self.device.power is PowerState.OFF or not self.reachable():
            self.requests_dropped += 1
            return False
        return True

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP port the agent listens on (known after :meth:`start`)."""
        return self._port

    async def start(self) -> None:
        """Bind the UDP port and start answering."""
        if self._engine is not None:
            raise SnmpAgentError("the SNMP agent is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise SnmpAgentError(f"cannot bind SNMP agent to udp/{self.config.host}:"
                                 f"{self.config.port}: {exc}") from exc
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        eng = snmp_engine.SnmpEngine(snmpEngineID=rfc1902.OctetString(
            engine_id(self.hardware, self.device.network().mac)))
        snmp_config.add_transport(eng, udp.DOMAIN_NAME,
                                  udp.UdpTransport().open_server_mode(sock=sock))
        self._configure_access(eng)
        self._guard(eng)
        builder = eng.get_mib_builder()
        (max_size,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineMaxMessageSize")
        max_size.syntax = max_size.syntax.clone(MAX_MESSAGE_SIZE)
        ctx = snmp_context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", self.instrum)
        scope = (self.instrum, self._answering)
        for responder in (GetResponder, NextResponder, BulkResponder, SetResponder):
            responder(eng, ctx, scope)
        self._engine = eng
        self._engine_booted(max(1, self._boots or self.device_boots()))
        self._snapshot = None
        log.info("SNMP agent for %s on udp/%s:%d", self.device.serial, self.config.host,
                 self._port)

    def device_boots(self) -> int:
        """The device's power-on count (snmpEngineBoots)."""
        props = self.device.snapshot().properties
        return int(next((p.value for p in props if p.name == "power-on-count"), "0") or 0)

    def _guard(self, eng: Any) -> None:
        guard_engine(eng, io=self.io, bad_input=self.bad_input)

    def _configure_access(self, eng: Any) -> None:
        for i, community in enumerate(self.config.communities, start=1):
            sec_name = f"community-{i}"
            snmp_config.add_v1_system(eng, sec_name, community.name)
            for model in (1, 2):
                snmp_config.add_vacm_user(
                    eng, model, sec_name, "noAuthNoPriv", readSubTree=_EVERYTHING,
                    writeSubTree=_EVERYTHING if community.write else ())
        for user in self.config.users:
            snmp_config.add_v3_user(
                eng, user.name, _AUTH[user.auth], user.auth_key,
                _PRIV[user.priv] if user.priv_key else snmp_config.USM_PRIV_NONE,
                user.priv_key)
            snmp_config.add_vacm_user(eng, 3, user.name, user.level, readSubTree=_EVERYTHING,
                                      writeSubTree=_EVERYTHING if user.write else ())

    async def stop(self) -> None:
        """Stop answering and release the port."""
        eng, self._engine = self._engine, None
        if eng is not None:
            eng.close_dispatcher()


def _always() -> bool:
    return True


def guard_engine(eng: Any, *, io: dict[str, int], bad_input: BadInputLog) -> None:
    """Wrap the message dispatcher of pysnmp engine ``eng``: count datagrams and octets
    in ``io`` (in_pkts, in_octets, out_pkts, out_octets), and turn anything a datagram
    makes pysnmp raise, or reject as unparsable, into one rate-limited warning (module
    doc). Any engine serving emulated printers can use it (the LAN's shared one too)."""
    dispatcher = eng.message_dispatcher
    receive = dispatcher.receive_message
    builder = eng.get_mib_builder()
    parse_errs, bad_versions = builder.import_symbols(
        "__SNMPv2-MIB", "snmpInASNParseErrs", "snmpInBadVersions")

    def guarded_receive(engine: Any, domain: Any, address: Any, whole: Any) -> Any:
        size = len(whole)
        io["in_pkts"] += 1
        io["in_octets"] += size
        before = (int(parse_errs.syntax), int(bad_versions.syntax))
        failed = False
        try:
            return receive(engine, domain, address, whole)
        except Exception as exc:  # third-party edge: pysnmp raising on a datagram
            failed = True
            parse_errs.syntax = parse_errs.syntax + 1
            bad_input.report(address, f"{size}-byte datagram that pysnmp cannot "
                             f"process ({type(exc).__name__}: {exc}; starts "
                             f"{bytes(whole[:8]).hex(' ')})")
            return None
        finally:
            after = (int(parse_errs.syntax), int(bad_versions.syntax))
            if failed:
                pass
            elif after[1] > before[1]:
                bad_input.report(address, f"{size}-byte datagram of an unsupported "
                                 f"SNMP version")
            elif after[0] > before[0]:
                bad_input.report(address, f"{size}-byte datagram that is not an SNMP "
                                 f"message (BER decoding failed)")

    dispatcher.receive_message = guarded_receive
    transport = eng.transport_dispatcher
    send = transport.send_message

    def counted_send(message: Any, domain: Any, address: Any) -> Any:
        io["out_pkts"] += 1
        io["out_octets"] += len(message)
        return send(message, domain, address)

    transport.send_message = counted_send
