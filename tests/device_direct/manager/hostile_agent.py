"""A small, hostile SNMP v2c agent for the manager's bad-input tests.

It answers the quick probe like a printer (so the manager goes on to read it), then
misbehaves in the read as ``behaviour`` says: ``garbage`` (bytes that are not SNMP),
``truncated`` (half of a valid reply), ``loop`` (a walk that does not increase),
``huge`` (an alert table of 100,000 rows), ``wrong-address`` (every reply sent from
another address), ``error`` (error-status genErr), ``vanish`` (the huge table, but
only the first read request answered: a printer switched off mid-walk). It uses
pysnmp's message codec on a plain asyncio UDP socket, so it can break the rules the
real agents follow.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

_V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_HUGE_COLUMN = (1, 3, 6, 1, 2, 1, 43, 18, 1, 1, 8, 1)
HUGE_ROWS = 100_000
HOSTILE_ROWS_READ = 1500  # the tests cap reads here (the default is 5,000)

_TABLE: list[tuple[tuple[int, ...], Any]] = sorted([
    ((1, 3, 6, 1, 2, 1, 1, 1, 0), rfc1902.OctetString("Hostile Printer 1")),
    ((1, 3, 6, 1, 2, 1, 1, 2, 0), rfc1902.ObjectName("1.3.6.1.4.1.99999.1")),
    ((1, 3, 6, 1, 2, 1, 1, 5, 0), rfc1902.OctetString("hostile")),
    ((1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 2, 1), rfc1902.ObjectName("1.3.6.1.2.1.25.3.1.5")),
    ((1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 3, 1), rfc1902.OctetString("Hostile Printer 1")),
    ((1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17, 1), rfc1902.OctetString("HOSTILE001")),
    ((1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1), rfc1902.Counter32(777)),
    ((1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 6, 1, 1), rfc1902.OctetString("Toner")),
    ((1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 8, 1, 1), rfc1902.Integer32(100)),
    ((1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 9, 1, 1), rfc1902.Integer32(50)),
])
_OIDS = [o for o, _ in _TABLE]


def _next(oid: tuple[int, ...], huge: bool) -> tuple[tuple[int, ...], Any]:
    """The first instance after ``oid``: the fixed table, plus the huge column if asked."""
    i = bisect_right(_OIDS, oid)
    best = _TABLE[i] if i < len(_OIDS) else None
    if huge:
        n = len(_HUGE_COLUMN)
        row = None
        if oid[:n] < _HUGE_COLUMN or (oid[:n] == _HUGE_COLUMN and len(oid) == n):
            row = 1
        elif oid[:n] == _HUGE_COLUMN and oid[n] < HUGE_ROWS:
            row = oid[n] + 1
        if row is not None and (best is None or (*_HUGE_COLUMN, row) < best[0]):
            best = ((*_HUGE_COLUMN, row), rfc1902.OctetString(f"alert {row}"))
    return best if best is not None else (oid, rfc1905.endOfMibView)


class HostileAgent(asyncio.DatagramProtocol):
    def __init__(self, behaviour: str, host: str, other_host: str = "127.0.3.250") -> None:
        self.behaviour = behaviour
        self.host = host
        self.other_host = other_host
        self.port = 0
        self.reads = 0  # read requests answered (not the probe)
        self._transport: asyncio.DatagramTransport | None = None
        self._other: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, 0))
        self.port = self._transport.get_extra_info("sockname")[1]
        if self.behaviour == "wrong-address":
            self._other, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(self.other_host, 0))

    async def stop(self) -> None:
        for t in (self._transport, self._other):
            if t is not None:
                t.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            msg, _ = decoder.decode(data, asn1Spec=_V2.Message())
        except Exception:
            return
        req = _V2.apiMessage.get_pdu(msg)
        rsp_msg = _V2.apiMessage.get_response(msg)
        rsp = _V2.apiMessage.get_pdu(rsp_msg)
        names = [tuple(o) for o, _ in _V2.apiPDU.get_varbinds(req)]
        probe = False
        out: list[tuple[Any, Any]] = []
        huge = self.behaviour in ("huge", "vanish")  # vanish: a walk of several requests
        if req.isSameTypeWith(_V2.GetBulkRequestPDU()):
            nr = int(_V2.apiBulkPDU.get_non_repeaters(req))
            reps = int(_V2.apiBulkPDU.get_max_repetitions(req))
            probe = names[:nr] == [(1, 3, 6, 1, 2, 1, 1, 1), (1, 3, 6, 1, 2, 1, 1, 2)]
            for o in names[:nr]:
                out.append(_next(o, huge))
            row = names[nr:]
            for _ in range(min(reps, 40)):
                got = [_next(o, huge) for o in row]
                if self.behaviour == "loop" and not probe:
                    got = [(o, rfc1902.Integer32(1)) if o[:9] == (1, 3, 6, 1, 2, 1, 43, 11, 1)
                           else g for o, g in zip(row, got, strict=True)]
                out.extend(got)
                row = [o for o, _ in got]
        else:  # GET
            table = dict(_TABLE)
            out = [(o, table.get(o, rfc1905.noSuchObject)) for o in names]
        if not probe:
            self.reads += 1
            if self.behaviour == "vanish" and self.reads > 1:
                return
        if self.behaviour == "error" and not probe:
            _V2.apiPDU.set_error_status(rsp, 5)
            _V2.apiPDU.set_error_index(rsp, 1)
            out = [(o, rfc1902.Null("")) for o in names]
        _V2.apiPDU.set_varbinds(rsp, [(rfc1902.ObjectName(o), v) for o, v in out])
        wire = encoder.encode(rsp_msg)
        if not probe and self.behaviour == "garbage":
            wire = b"\x30\x82\x01\x00not SNMP at all"
        elif not probe and self.behaviour == "truncated":
            wire = wire[: len(wire) // 2]
        sender = self._other if self.behaviour == "wrong-address" else self._transport
        if sender is not None:
            sender.sendto(wire, addr)
