"""The emulated printer's SNMP agent (v1, v2c, v3 USM) on a UDP port.

Theory of operation
-------------------
pysnmp carries the protocol: message parsing (long-form BER lengths included),
communities, USM authentication and privacy, VACM access rights. Every request is
answered by :class:`emulator.snmp.instrum.LiveMibInstrum` from a table that
:func:`emulator.snmp.printer_mib.build_table` computes from the live model for that
request, so the values move as the device prints. While the device is off the agent
drops requests (a switched-off printer does not answer), while it boots it answers
with hrPrinterStatus warmup.

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
from emulator.snmp.instrum import (
    BulkResponder,
    GetResponder,
    LiveMibInstrum,
    NextResponder,
    SetResponder,
)
from emulator.snmp.oid_table import Oid, OidTable
from emulator.snmp.printer_mib import (
    SYS_CONTACT,
    SYS_LOCATION,
    SYS_NAME,
    HardwareFacts,
    MibInput,
    build_table,
)
from emulator.snmp.settings import SystemSettings, check_display_string

log = logging.getLogger("emulator.snmp")

_EVERYTHING = (1, 3, 6)
_WRITABLE: dict[Oid, str] = {SYS_CONTACT: "contact", SYS_NAME: "name", SYS_LOCATION: "location"}
_AUTH = {"SHA": snmp_config.USM_AUTH_HMAC96_SHA,
         "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256}
_PRIV = {"AES": snmp_config.USM_PRIV_CFB128_AES, "NONE": snmp_config.USM_PRIV_NONE}


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

    def __post_init__(self) -> None:
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
        writers = [f"community-{i}" for i, c in enumerate(config.communities, start=1)
                   if c.write] + [u.name for u in config.users if u.write]
        self.instrum = LiveMibInstrum(self.table, self._apply_set, frozenset(_WRITABLE),
                                      frozenset(writers))
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
        return MibInput(
            now=self.clock.now(), power=snap.power, uptime_ticks=d.uptime_ticks(),
            identity=snap.identity, network=snap.network, counters=snap.counters,
            supplies=snap.supplies, alerts=snap.alerts, fault_count=len(snap.faults),
            alert_events=self._max_alert_index, critical_events=self._critical_seen,
            power_on_impressions=total - self._boot_impressions,
            system=self.settings.current(), hardware=self.hardware)

    def table(self) -> OidTable:
        """Every instance the agent serves right now."""
        return build_table(self.mib_input())

    def _apply_set(self, changes: dict[Oid, bytes]) -> None:
        decoded = {_WRITABLE[oid]: check_display_string(_WRITABLE[oid], raw)
                   for oid, raw in changes.items()}
        self.settings.update(decoded)
        log.info("SNMP SET %s", ", ".join(f"{k}={v!r}" for k, v in decoded.items()))

    def _answering(self) -> bool:
        if self.device.power is PowerState.OFF:
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
        ctx = snmp_context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", self.instrum)
        scope = (self.instrum, self._answering)
        for responder in (GetResponder, NextResponder, BulkResponder, SetResponder):
            responder(eng, ctx, scope)
        self._engine = eng
        log.info("SNMP agent for %s on udp/%s:%d", self.device.serial, self.config.host,
                 self._port)

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
