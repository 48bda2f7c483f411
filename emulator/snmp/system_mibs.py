"""The network side of the agent's MIB: SNMPv2-MIB, SNMP-FRAMEWORK-MIB, USM stats,
IF-MIB and IP-MIB rows (sans-I/O).

What a device manager reads before it looks at the printer: the system group, the SNMP
engine (snmpEngineID/Boots/Time/MaxMessageSize, RFC 3411), the snmp group's counters
(RFC 3418), one Ethernet interface whose ifPhysAddress is the printer's MAC (RFC 2863;
fleet tools take the MAC from there), the IPv4 address table (RFC 4293
ipAddrTable, deprecated but what printer tools still read: the subnet mask) and the
routing table (RFC 1213 ipRouteTable: the route to its own subnet and, when the
printer has one, the default route whose next hop is the gateway).

Values that move on every request (uptime, engine time, the SNMP counters pysnmp
keeps) are given as :data:`LIVE` placeholders here; the agent reads them per request
(:class:`emulator.snmp.instrum.LiveMibInstrum`), so a table snapshot never serves a
stale clock or counter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from device_direct.model import NetworkInfo
from emulator.snmp.oid_table import (
    MibValue,
    Oid,
    counter,
    gauge,
    integer,
    ip_address,
    oid_value,
    text,
    ticks,
)

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
INTERFACES = (1, 3, 6, 1, 2, 1, 2)
IP = (1, 3, 6, 1, 2, 1, 4)
SNMP_GROUP = (1, 3, 6, 1, 2, 1, 11)
IF_X = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
ENGINE = (1, 3, 6, 1, 6, 3, 10, 2, 1)  # snmpEngine (SNMP-FRAMEWORK-MIB)
USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)
SYS_UPTIME = (*SYSTEM, 3, 0)
SYS_CONTACT = (*SYSTEM, 4, 0)
SYS_NAME = (*SYSTEM, 5, 0)
SYS_LOCATION = (*SYSTEM, 6, 0)
ENGINE_TIME = (*ENGINE, 3, 0)
IF_INDEX = 1  # the one Ethernet interface
ETHERNET_CSMACD = 6  # IANAifType

# pysnmp's own instances (module, symbol) behind the counters served here.
SNMP_COUNTERS: tuple[tuple[Oid, str, str], ...] = (
    ((*SNMP_GROUP, 1, 0), "__SNMPv2-MIB", "snmpInPkts"),
    ((*SNMP_GROUP, 3, 0), "__SNMPv2-MIB", "snmpInBadVersions"),
    ((*SNMP_GROUP, 4, 0), "__SNMPv2-MIB", "snmpInBadCommunityNames"),
    ((*SNMP_GROUP, 5, 0), "__SNMPv2-MIB", "snmpInBadCommunityUses"),
    ((*SNMP_GROUP, 6, 0), "__SNMPv2-MIB", "snmpInASNParseErrs"),
    ((*SNMP_GROUP, 31, 0), "__SNMPv2-MIB", "snmpSilentDrops"),
    ((*SNMP_GROUP, 32, 0), "__SNMPv2-MIB", "snmpProxyDrops"),
    ((*USM_STATS, 1, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels"),
    ((*USM_STATS, 2, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows"),
    ((*USM_STATS, 3, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames"),
    ((*USM_STATS, 4, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs"),
    ((*USM_STATS, 5, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests"),
    ((*USM_STATS, 6, 0), "__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors"),
)
IF_IN_OCTETS = (*INTERFACES, 2, 1, 10, IF_INDEX)
IF_IN_UCAST = (*INTERFACES, 2, 1, 11, IF_INDEX)
IF_OUT_OCTETS = (*INTERFACES, 2, 1, 16, IF_INDEX)
IF_OUT_UCAST = (*INTERFACES, 2, 1, 17, IF_INDEX)
# Rows whose value is read per request (see module doc); the table holds a placeholder.
LIVE: frozenset[Oid] = frozenset({
    SYS_UPTIME, ENGINE_TIME, IF_IN_OCTETS, IF_IN_UCAST, IF_OUT_OCTETS, IF_OUT_UCAST,
    *(oid for oid, _, _ in SNMP_COUNTERS)})

Adder = Callable[[tuple[Oid, MibValue]], None]


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """The SNMP engine as RFC 3411 describes it."""

    engine_id: bytes
    boots: int
    max_message_size: int

    def __post_init__(self) -> None:
        if not 5 <= len(self.engine_id) <= 32:
            raise ValueError(f"snmpEngineID must be 5..32 octets, got {len(self.engine_id)}")
        if not 1 <= self.boots <= 2**31 - 1 or not 484 <= self.max_message_size <= 2**31 - 1:
            raise ValueError("snmpEngineBoots must be >= 1 and MaxMessageSize >= 484")


def system_group(add: Adder, *, descr: str, object_id: str, contact: str, name: str,
                 location: str) -> None:
    """SNMPv2-MIB system group (sysUpTime is live)."""
    add(((*SYSTEM, 1, 0), text(descr)))
    add(((*SYSTEM, 2, 0), oid_value(object_id)))
    add((SYS_UPTIME, ticks(0)))
    add((SYS_CONTACT, text(contact)))
    add((SYS_NAME, text(name)))
    add((SYS_LOCATION, text(location)))
    add(((*SYSTEM, 7, 0), integer(72)))  # sysServices: applications + end-to-end


def snmp_group(add: Adder, engine: EngineFacts) -> None:
    """snmp group counters, SNMP-FRAMEWORK-MIB engine objects and usmStats."""
    for oid, _, _ in SNMP_COUNTERS:
        add((oid, counter(0)))
    add(((*SNMP_GROUP, 30, 0), integer(2)))  # snmpEnableAuthenTraps: disabled
    add(((*ENGINE, 1, 0), text(engine.engine_id)))
    add(((*ENGINE, 2, 0), integer(engine.boots)))
    add((ENGINE_TIME, integer(0)))
    add(((*ENGINE, 4, 0), integer(engine.max_message_size)))


def interfaces(add: Adder, net: NetworkInfo, *, speed_mbps: int, up: bool) -> None:
    """IF-MIB ifNumber, ifTable and ifXTable for the one Ethernet port, IP-MIB scalars
    and ipAddrTable for its IPv4 address. Octet and packet counters are live."""
    add(((*INTERFACES, 1, 0), integer(1)))  # ifNumber
    entry = (*INTERFACES, 2, 1)
    mac = bytes.fromhex(net.mac.replace(":", ""))
    bps = speed_mbps * 1_000_000
    for col, value in (
        (1, integer(IF_INDEX)),
        (2, text("Ethernet")),  # ifDescr
        (3, integer(ETHERNET_CSMACD)),
        (4, integer(1500)),  # ifMtu
        (5, gauge(min(bps, 2**32 - 1))),  # ifSpeed (bits/s; ifHighSpeed beyond)
        (6, text(mac)),  # ifPhysAddress: the printer's MAC
        (7, integer(1)),  # ifAdminStatus up
        (8, integer(1 if up else 2)),  # ifOperStatus up / down
        (9, ticks(0)),  # ifLastChange: since the agent started
        (10, counter(0)), (11, counter(0)), (13, counter(0)), (14, counter(0)),
        (15, counter(0)), (16, counter(0)), (17, counter(0)), (19, counter(0)),
        (20, counter(0)),
    ):
        add(((*entry, col, IF_INDEX), value))
    for col, value in ((1, text("eth0")), (15, gauge(speed_mbps)),  # ifName, ifHighSpeed
                       (16, integer(2)),  # ifPromiscuousMode false
                       (17, integer(1)),  # ifConnectorPresent true
                       (18, text(""))):  # ifAlias
        add(((*IF_X, col, IF_INDEX), value))
    add(((*IP, 1, 0), integer(2)))  # ipForwarding: notForwarding (a host)
    add(((*IP, 2, 0), integer(64)))  # ipDefaultTTL
    address = tuple(int(p) for p in net.ipv4.split("."))
    row = (*IP, 20, 1)
    for col, value in ((1, ip_address(net.ipv4)), (2, integer(IF_INDEX)),
                       (3, ip_address(net.subnet_mask)), (4, integer(1)),
                       (5, integer(65535))):
        add(((*row, col, *address), value))
    routes(add, net)


_DIRECT, _INDIRECT = 3, 4  # ipRouteType
_LOCAL, _NETMGMT = 2, 3  # ipRouteProto: the interface's own route, configured gateway


def routes(add: Adder, net: NetworkInfo) -> None:
    """RFC 1213 ipRouteTable (index ipRouteDest): the subnet, and 0.0.0.0 via the gateway."""
    subnet = ipaddress.IPv4Network(f"{net.ipv4}/{net.subnet_mask}", strict=False)
    rows = [(str(subnet.network_address), net.ipv4, str(subnet.netmask), _DIRECT, _LOCAL)]
    if net.gateway:
        rows.append(("0.0.0.0", net.gateway, "0.0.0.0", _INDIRECT, _NETMGMT))
    entry = (*IP, 21, 1)
    for dest, hop, mask, kind, proto in rows:
        index = tuple(int(p) for p in dest.split("."))
        for col, value in ((1, ip_address(dest)), (2, integer(IF_INDEX)), (3, integer(1)),
                           (7, ip_address(hop)), (8, integer(kind)), (9, integer(proto)),
                           (10, integer(0)), (11, ip_address(mask))):
            add(((*entry, col, *index), value))
