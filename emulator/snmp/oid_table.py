"""A sorted table of MIB instances: the data an SNMP agent answers from.

Sans-I/O and free of pysnmp: values are small tagged tuples (:class:`MibValue`) and
OIDs are tuples of ints. Python compares int tuples element by element, and a prefix
sorts before its extensions, which is exactly SNMP's lexicographic OID order, so the
table is a sorted list searched with ``bisect``. GET is an exact lookup, GETNEXT is
"the first instance strictly greater than the name", whatever the name is (shorter,
longer, between rows, past the end).
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Oid = tuple[int, ...]

_MAX_U32 = 2**32 - 1
_MIN_I32, _MAX_I32 = -(2**31), 2**31 - 1


class Kind(enum.Enum):
    """SMIv2 base types the Printer-MIB and HOST-RESOURCES-MIB use."""

    INTEGER = "Integer32"
    OCTETS = "OCTET STRING"
    OID = "OBJECT IDENTIFIER"
    TICKS = "TimeTicks"
    COUNTER = "Counter32"
    GAUGE = "Gauge32"
    IPADDRESS = "IpAddress"


@dataclass(frozen=True, slots=True)
class MibValue:
    """One typed value. Counters wrap at 2**32 like real agents; others must fit."""

    kind: Kind
    value: int | bytes | Oid

    def __post_init__(self) -> None:
        v = self.value
        if self.kind is Kind.OCTETS or self.kind is Kind.IPADDRESS:
            if not isinstance(v, bytes):
                raise TypeError(f"{self.kind.value} needs bytes, got {type(v).__name__}")
            if self.kind is Kind.IPADDRESS and len(v) != 4:
                raise ValueError(f"IpAddress needs 4 octets, got {len(v)}")
        elif self.kind is Kind.OID:
            if not isinstance(v, tuple) or len(v) < 2 or not all(
                    isinstance(i, int) and 0 <= i <= _MAX_U32 for i in v):
                raise ValueError(f"bad OBJECT IDENTIFIER {v!r}")
        elif not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{self.kind.value} needs an int, got {v!r}")
        elif self.kind is Kind.INTEGER:
            if not _MIN_I32 <= v <= _MAX_I32:
                raise ValueError(f"Integer32 out of range: {v}")
        elif self.kind is Kind.COUNTER:
            object.__setattr__(self, "value", v & _MAX_U32)
        elif not 0 <= v <= _MAX_U32:
            raise ValueError(f"{self.kind.value} out of range: {v}")


def integer(v: int) -> MibValue:
    """An Integer32 (also enumerations)."""
    return MibValue(Kind.INTEGER, v)


def text(s: str | bytes) -> MibValue:
    """An OCTET STRING / DisplayString (str is encoded as UTF-8)."""
    return MibValue(Kind.OCTETS, s.encode("utf-8") if isinstance(s, str) else s)


def oid_value(o: Oid | str) -> MibValue:
    """An OBJECT IDENTIFIER value."""
    return MibValue(Kind.OID, parse_oid(o) if isinstance(o, str) else o)


def ticks(v: int) -> MibValue:
    """TimeTicks (hundredths of a second), clamped to the type's range."""
    return MibValue(Kind.TICKS, max(0, min(v, _MAX_U32)))


def counter(v: int) -> MibValue:
    """A Counter32 (wraps at 2**32)."""
    return MibValue(Kind.COUNTER, v)


def gauge(v: int) -> MibValue:
    """A Gauge32, clamped to the type's range."""
    return MibValue(Kind.GAUGE, max(0, min(v, _MAX_U32)))


def ip_address(dotted: str) -> MibValue:
    """An IpAddress from ``"10.0.0.1"``."""
    return MibValue(Kind.IPADDRESS, bytes(int(p) for p in dotted.split(".")))


def parse_oid(dotted: str) -> Oid:
    """``"1.3.6.1"`` or ``".1.3.6.1"`` -> ``(1, 3, 6, 1)``; ValueError names the text."""
    parts = dotted.strip().lstrip(".").split(".")
    try:
        oid = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"not a dotted OID: {dotted!r}") from None
    if len(oid) < 2 or any(i < 0 or i > _MAX_U32 for i in oid):
        raise ValueError(f"not a valid OID: {dotted!r}")
    return oid


def format_oid(oid: Oid) -> str:
    """``(1, 3, 6, 1)`` -> ``"1.3.6.1"``."""
    return ".".join(str(i) for i in oid)


class OidTable:
    """An immutable, sorted set of (OID, value) rows."""

    __slots__ = ("_oids", "_values")

    def __init__(self, rows: Iterable[tuple[Oid, MibValue]]) -> None:
        merged = dict(rows)
        self._oids: list[Oid] = sorted(merged)
        self._values: list[MibValue] = [merged[o] for o in self._oids]

    def __len__(self) -> int:
        return len(self._oids)

    def __iter__(self) -> Iterator[tuple[Oid, MibValue]]:
        return iter(zip(self._oids, self._values, strict=True))

    def __contains__(self, oid: object) -> bool:
        return self.get(oid) is not None if isinstance(oid, tuple) else False

    def get(self, oid: Oid) -> MibValue | None:
        """The value at exactly ``oid``, or None."""
        i = bisect_right(self._oids, oid) - 1
        if i >= 0 and self._oids[i] == oid:
            return self._values[i]
        return None

    def next_after(self, oid: Oid) -> tuple[Oid, MibValue] | None:
        """The first row whose OID is strictly greater than ``oid`` (GETNEXT), or None."""
        i = bisect_right(self._oids, oid)
        if i < len(self._oids):
            return self._oids[i], self._values[i]
        return None

    def subtree(self, prefix: Oid) -> list[tuple[Oid, MibValue]]:
        """Rows under ``prefix`` in order (what a walk of ``prefix`` returns)."""
        n = len(prefix)
        i = bisect_right(self._oids, prefix)
        out = []
        while i < len(self._oids) and self._oids[i][:n] == prefix:
            out.append((self._oids[i], self._values[i]))
            i += 1
        return out

    def oids(self) -> tuple[Oid, ...]:
        """All OIDs, in order."""
        return tuple(self._oids)
