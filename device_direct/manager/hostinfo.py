"""A printer's network settings and storage, from the host MIBs it serves (sans-I/O).

What the white paper's data table asks of a device manager beyond the MAC: subnet
mask, default gateway, DNS name, and the disk among the properties. Fleet tools read:

- the subnet mask from IP-MIB ``ipAdEntNetMask`` (the deprecated ipAddrTable, which
  printers still serve), else from ``ipAddressPrefix`` (RFC 4293: a RowPointer into
  ipAddressPrefixTable whose last sub-identifier is the prefix length);
- the gateway from the default route: RFC 1213 ``ipRouteNextHop.0.0.0.0``, else
  IP-FORWARD-MIB ``ipCidrRouteNextHop`` of destination 0.0.0.0/0, else
  ``inetCidrRouteTable`` (RFC 4292), whose next hop is part of the row's index;
- the host name from ``sysName`` when it is shaped like one (printers put their
  host name there); the DNS name from a reverse lookup of the address, done by the
  scan (:mod:`device_direct.manager.scan`), as real tools do;
- the disk from HOST-RESOURCES ``hrStorageTable`` rows of type hrStorageFixedDisk
  (size and used = units x allocation unit, in bytes).

Nothing is guessed: a value the printer does not serve is ``None`` and named in the
reading's ``missing``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from device_direct.manager import mib
from device_direct.manager.mib import Oid, Raw, Value, int_of, text_of

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_IPV4 = 1  # InetAddressType


def _ip(value: Value | None) -> str | None:
    if isinstance(value, bytes) and len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    return None


def _mask_of_prefix(length: int) -> str | None:
    if not 0 <= length <= 32:
        return None
    return str(ipaddress.IPv4Network(f"0.0.0.0/{length}").netmask)


def subnet_mask(raw: Raw, ip: str | None) -> str | None:
    """The mask of the address ``ip`` was read at (else of the one non-loopback address)."""
    masks: dict[Oid, str | None] = {
        idx: _ip(v) for idx, v in mib.rows(raw, mib.IP_AD_ENT_NET_MASK) if len(idx) == 4}
    prefixes: dict[Oid, str | None] = {}
    for idx, v in mib.rows(raw, mib.IP_ADDRESS_PREFIX):
        if len(idx) == 6 and idx[:2] == (_IPV4, 4) and isinstance(v, tuple) and v:
            prefixes[idx[2:]] = _mask_of_prefix(v[-1])
    # 127.0.0.1 is every host's loopback interface: never the printer's own address.
    wanted = tuple(int(p) for p in ip.split(".")) if ip and ip != "127.0.0.1" else None
    for table in (masks, prefixes):
        if wanted is not None and table.get(wanted):
            return table[wanted]
        others = [m for idx, m in sorted(table.items())
                  if m and idx not in ((127, 0, 0, 1), (0, 0, 0, 0))]
        if len(others) == 1:
            return others[0]
    return None


def gateway(raw: Raw) -> str | None:
    """The next hop of the default route, from whichever routing table the agent serves."""
    hop = _ip(raw.get(mib.IP_ROUTE_DEFAULT_NEXT_HOP))
    if hop and hop != "0.0.0.0":
        return hop
    for idx, v in mib.rows(raw, mib.IP_CIDR_ROUTE_NEXT_HOP):
        if len(idx) == 13 and idx[:8] == (0,) * 8:  # dest 0.0.0.0, mask 0.0.0.0, tos, hop
            hop = _ip(v)
            if hop and hop != "0.0.0.0":
                return hop
    for idx, _ in mib.rows(raw, mib.INET_CIDR_ROUTE_IF_INDEX):
        # destType, len, dest..., pfxLen, policy (len, subids...), nextHopType, len, hop...
        if len(idx) < 9 or idx[:2] != (_IPV4, 4) or idx[2:6] != (0, 0, 0, 0) or idx[6] != 0:
            continue
        rest = idx[8 + idx[7]:]
        if len(rest) == 6 and rest[:2] == (_IPV4, 4) and all(0 <= b <= 255 for b in rest[2:]):
            hop = ".".join(str(b) for b in rest[2:])
            if hop != "0.0.0.0":
                return hop
    return None


def host_name(sys_name: str | None) -> str | None:
    """``sysName`` when it is a host name (printers keep theirs there), else None."""
    if sys_name and _HOST_NAME.match(sys_name):
        return sys_name.rstrip(".")
    return None


def network(raw: Raw, ip: str | None, dns_name: str | None) -> dict[str, Any]:
    """The reading's ``network`` section."""
    return {"ip": ip, "subnet_mask": subnet_mask(raw, ip), "gateway": gateway(raw),
            "hostname": host_name(text_of(raw.get(mib.SYS_NAME))), "dns_name": dns_name}


def storage(raw: Raw) -> tuple[list[dict[str, Any]], int | None] | None:
    """(fixed disks, RAM in bytes) from hrStorageTable; None if the agent serves none."""
    rows = mib.table(raw, mib.HR_STORAGE)
    if not rows:
        return None
    disks: list[dict[str, Any]] = []
    ram: int | None = None
    for idx, row in sorted(rows.items()):
        unit, size, used = int_of(row.get(4)), int_of(row.get(5)), int_of(row.get(6))
        size_b = size * unit if unit and unit > 0 and size is not None and size >= 0 else None
        used_b = used * unit if unit and unit > 0 and used is not None and used >= 0 else None
        if row.get(2) == mib.HR_STORAGE_FIXED_DISK:
            disks.append({"index": idx[0] if idx else None, "description": text_of(row.get(3)),
                          "size_bytes": size_b, "used_bytes": used_b})
        elif row.get(2) == mib.HR_STORAGE_RAM and ram is None:
            ram = size_b
    return disks, ram
