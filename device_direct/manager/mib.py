"""The standard objects the manager reads, and the plain values it reads them into.

Sans-I/O. An OID is a tuple of ints; a value is an ``int`` (INTEGER, Counter, Gauge,
TimeTicks), ``bytes`` (OCTET STRING, IpAddress) or an OID tuple (OBJECT IDENTIFIER).
:data:`END` marks endOfMibView in a walk; noSuchObject/noSuchInstance are not stored
(a missing object is simply absent from the read).

Sources: SNMPv2-MIB (RFC 3418), IF-MIB (RFC 2863), IP-MIB (RFC 4293), RFC1213-MIB
ipRouteTable, IP-FORWARD-MIB (RFC 2096, RFC 4292), HOST-RESOURCES-MIB (RFC 2790),
Printer-MIB (RFC 3805) with IANA-PRINTER-MIB, PWG-IMAGING-COUNTER-MIB (PWG 5106.3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

Oid = tuple[int, ...]
Value = int | bytes | tuple[int, ...]
Raw = Mapping[Oid, Value]


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()
MAX_TEXT = 512  # longest device string kept (DisplayString is at most 255 octets)

MIB2 = (1, 3, 6, 1, 2, 1)
SYSTEM = (*MIB2, 1)
SYS_DESCR = (*SYSTEM, 1, 0)
SYS_OBJECT_ID = (*SYSTEM, 2, 0)
SYS_UPTIME = (*SYSTEM, 3, 0)
SYS_CONTACT = (*SYSTEM, 4, 0)
SYS_NAME = (*SYSTEM, 5, 0)
SYS_LOCATION = (*SYSTEM, 6, 0)
IF_TYPE = (*MIB2, 2, 2, 1, 3)
IF_PHYS_ADDRESS = (*MIB2, 2, 2, 1, 6)
IP = (*MIB2, 4)
IP_AD_ENT_NET_MASK = (*IP, 20, 1, 3)  # RFC 4293 ipAddrTable (index: the address)
IP_ADDRESS_PREFIX = (*IP, 34, 1, 5)  # ipAddressTable: RowPointer ending in the prefix length
IP_ROUTE_DEFAULT_NEXT_HOP = (*IP, 21, 1, 7, 0, 0, 0, 0)  # RFC 1213 ipRouteNextHop.0.0.0.0
IP_CIDR_ROUTE_NEXT_HOP = (*IP, 24, 4, 1, 4)  # RFC 2096 (index dest.mask.tos.nexthop)
INET_CIDR_ROUTE_IF_INDEX = (*IP, 24, 7, 1, 7)  # RFC 4292 (the next hop is in the index)
HR = (*MIB2, 25)
HR_MEMORY_SIZE = (*HR, 2, 2, 0)
HR_STORAGE = (*HR, 2, 3, 1)
HR_STORAGE_TYPES = (*HR, 2, 1)
HR_STORAGE_RAM = (*HR_STORAGE_TYPES, 2)
HR_STORAGE_FIXED_DISK = (*HR_STORAGE_TYPES, 4)
HR_DEVICE = (*HR, 3, 2, 1)
HR_DEVICE_TYPE = (*HR_DEVICE, 2)
HR_PRINTER = (*HR, 3, 5, 1)
HR_DEVICE_PRINTER = (*HR, 3, 1, 5)
PRT = (*MIB2, 43)
PRT_GENERAL = (*PRT, 5, 1, 1)
PRT_INPUT = (*PRT, 8, 2, 1)
PRT_MARKER = (*PRT, 10, 2, 1)
PRT_SUPPLIES = (*PRT, 11, 1, 1)
PRT_COLORANT = (*PRT, 12, 1, 1)
PRT_CONSOLE = (*PRT, 16, 5, 1)
PRT_ALERT = (*PRT, 18, 1, 1)
IC = (1, 3, 6, 1, 4, 1, 2699, 1, 3, 1)
IC_KEY = (*IC, 2, 1, 1)
IC_IMPRESSION = (*IC, 8, 1, 1)

# Phase 1: GETNEXT of these (non-repeaters) gives sysDescr.0 and sysObjectID.0 ...
PROBE_SCALARS: tuple[Oid, ...] = ((*SYSTEM, 1), (*SYSTEM, 2))
# ... and the first rows of these columns tell a printer from other hosts.
PROBE_COLUMNS: tuple[Oid, ...] = (HR_DEVICE_TYPE, (*PRT_GENERAL, 1))

# Phase 2: the columns read from every printer, in one multi-column walk: only what the
# reading uses (a whole table entry would cost the agent twice the instances).
def _cols(entry: Oid, *columns: int) -> tuple[Oid, ...]:
    return tuple((*entry, c) for c in columns)


READ_SUBTREES: tuple[Oid, ...] = (
    SYSTEM, IF_TYPE, IF_PHYS_ADDRESS, IP_AD_ENT_NET_MASK, IP_ADDRESS_PREFIX,
    IP_CIDR_ROUTE_NEXT_HOP, INET_CIDR_ROUTE_IF_INDEX, *_cols(HR_STORAGE, 2, 3, 4, 5, 6),
    *_cols(HR_DEVICE, 2, 3, 5), *_cols(HR_PRINTER, 1, 2),
    *_cols(PRT_GENERAL, 16, 17),
    *_cols(PRT_INPUT, 9, 10, 12, 13, 18),
    *_cols(PRT_MARKER, 2, 3, 4),
    *_cols(PRT_SUPPLIES, 3, 4, 5, 6, 7, 8, 9),
    *_cols(PRT_COLORANT, 4), *_cols(PRT_CONSOLE, 2),
    *_cols(PRT_ALERT, 2, 4, 5, 7, 8),
    *_cols(IC_KEY, 2), *_cols(IC_IMPRESSION, 4, 5, 7))
READ_SCALARS: tuple[Oid, ...] = (HR_MEMORY_SIZE, IP_ROUTE_DEFAULT_NEXT_HOP)


def parse_oid(text: str) -> Oid:
    """``"1.3.6.1.2.1.1.1.0"`` (leading dot allowed) to a tuple; ValueError if not one."""
    parts = text.strip().lstrip(".").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not an OID: {text!r}")
    return tuple(int(p) for p in parts)


def format_oid(oid: Oid) -> str:
    return ".".join(str(i) for i in oid)


def rows(raw: Raw, column: Oid) -> Iterator[tuple[Oid, Value]]:
    """(index suffix, value) of every instance under ``column``, in OID order."""
    n = len(column)
    for oid in sorted(o for o in raw if o[:n] == column and len(o) > n):
        yield oid[n:], raw[oid]


def table(raw: Raw, entry: Oid) -> dict[Oid, dict[int, Value]]:
    """A conceptual table: row index -> {column: value}."""
    out: dict[Oid, dict[int, Value]] = {}
    for suffix, value in rows(raw, entry):
        out.setdefault(suffix[1:], {})[suffix[0]] = value
    return out


def text_of(value: Value | None) -> str | None:
    """A DisplayString as text (invalid UTF-8 replaced, control characters dropped)."""
    if not isinstance(value, bytes):
        return None
    s = value[:MAX_TEXT * 4].decode("utf-8", errors="replace")
    return "".join(ch for ch in s if ch.isprintable() or ch == " ").strip()[:MAX_TEXT]


def int_of(value: Value | None) -> int | None:
    return value if isinstance(value, int) else None
