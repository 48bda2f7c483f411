"""The hosts of a simulated LAN that are not printers: SNMP hosts and silent addresses.

A switch, a Linux server, a UPS, a NAS and a wireless access point answer SNMP v2c
(community ``public``) from a fixed table, with their vendors' enterprise numbers in
sysObjectID and the kind of sysDescr such devices publish. The server and the NAS also
serve HOST-RESOURCES-MIB device rows (processor, network, disk) so that "answers
hrDeviceTable" alone does not make a printer. The LAN's SNMP engine answers for
them with the printer agent's instrumentation (:class:`emulator.snmp.instrum.
LiveMibInstrum`) over a table that never changes.

A silent address binds the SNMP port and drops every datagram: on a real network an
empty address gives no answer either (no ICMP reaches an unconnected UDP socket), and
binding the port keeps another process from answering there by accident.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from emulator.errors import EmulatorError
from emulator.snmp.oid_table import MibValue, Oid, OidTable, gauge, integer, oid_value, text, ticks

_SYS = (1, 3, 6, 1, 2, 1, 1)
_HR_DEV = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1)
_HR_TYPES = (1, 3, 6, 1, 2, 1, 25, 3, 1)
_IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)

# kind -> (sysObjectID, sysDescr, hrDevice rows (type arc, description), interfaces)
_HOSTS: dict[str, tuple[str, str, tuple[tuple[int, str], ...], int]] = {
    "switch": ("1.3.6.1.4.1.9.1.1208",
               "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8",
               (), 28),
    "linux-server": ("1.3.6.1.4.1.8072.3.2.10",
                     "Linux fileserver 6.1.0-13-amd64 #1 SMP PREEMPT_DYNAMIC Debian x86_64",
                     ((3, "GenuineIntel: Intel(R) Xeon(R) E-2314"), (4, "network interface eth0"),
                      (6, "SCSI disk (/dev/sda)")), 2),
    "ups": ("1.3.6.1.4.1.318.1.3.27",
            "APC Web/SNMP Management Card (MB:v4.1.0 PF:v6.9.6 PN:apc_hw05_aos_696.bin)",
            (), 1),
    "nas": ("1.3.6.1.4.1.6574.1",
            "Linux DiskStation 4.4.302+ #64570 SMP x86_64 GNU/Linux synology_geminilake_920+",
            ((3, "Intel(R) Celeron(R) J4125"), (6, "Disk 1"), (6, "Disk 2")), 3),
    "access-point": ("1.3.6.1.4.1.41112.1.6",
                     "Linux 4.4.153 #1 SMP U6-Lite 6.5.62", (), 3),
}


class LanHostError(EmulatorError):
    """A LAN host could not bind its address."""


def host_table(kind: str, address: str, index: int) -> OidTable:
    """The fixed MIB view of a non-printer host of ``kind``."""
    if kind not in _HOSTS:
        raise LanHostError(f"unknown host kind {kind!r}; known: {', '.join(_HOSTS)}")
    object_id, descr, devices, interfaces = _HOSTS[kind]
    rows: list[tuple[Oid, MibValue]] = [
        ((*_SYS, 1, 0), text(descr)),
        ((*_SYS, 2, 0), oid_value(object_id)),
        ((*_SYS, 3, 0), ticks(8_640_000 + index * 1_000)),
        ((*_SYS, 4, 0), text("it@example.com")),
        ((*_SYS, 5, 0), text(f"{kind}-{address.replace('.', '-')}")),
        ((*_SYS, 6, 0), text("Server room")),
        ((*_SYS, 7, 0), integer(72 if devices else 2)),
    ]
    for i, (type_arc, name) in enumerate(devices, start=1):
        rows += [((*_HR_DEV, 1, i), integer(i)),
                 ((*_HR_DEV, 2, i), oid_value((*_HR_TYPES, type_arc))),
                 ((*_HR_DEV, 3, i), text(name)),
                 ((*_HR_DEV, 5, i), integer(2))]
    last = int(address.rsplit(".", 1)[1])
    for i in range(1, interfaces + 1):
        mac = bytes((0x02, 0x42, 0x00, index & 0xFF, last, i))
        rows += [((*_IF, 1, i), integer(i)), ((*_IF, 2, i), text(f"port{i}")),
                 ((*_IF, 3, i), integer(6)), ((*_IF, 5, i), gauge(1_000_000_000)),
                 ((*_IF, 6, i), text(mac)), ((*_IF, 8, i), integer(1))]
    return OidTable(rows)


def reject_write(changes: dict[Oid, bytes]) -> None:
    raise ValueError("read-only host")


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port``; LanHostError says why not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LanHostError(f"cannot bind udp/{host}:{port}: {exc}") from exc
    sock.setblocking(False)
    return sock


class StaticSnmpHost:
    """A non-printer of ``kind`` at ``address``: a fixed table, answered through the LAN's
    SNMP engine (:mod:`emulator.lan.multihome`)."""

    def __init__(self, kind: str, address: str, port: int, index: int = 0) -> None:
        self.kind = kind
        self.address = address
        self.port = port
        self.table = host_table(kind, address, index)

    def table_now(self) -> OidTable:
        """The table (it never changes)."""
        return self.table


class _Drop(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.dropped += 1


class SilentAddress:
    """An address whose SNMP port swallows every datagram."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol = _Drop()

    @property
    def dropped(self) -> int:
        return self._protocol.dropped

    async def start(self) -> None:
        sock = bind_udp(self.address, self.port)
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self._protocol,
                                                                 sock=sock)

    async def stop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
