"""pysnmp's side of the agent: MIB instrumentation and command responders.

pysnmp does the protocol and the security (v1/v2c communities, v3 USM, VACM); this
module answers GET, GETNEXT, GETBULK and SET from an :class:`OidTable` instead of
pysnmp's own MIB tree, whose managed objects hold stored values. The table is asked
for once per request (:meth:`LiveMibInstrum.begin_request`; the agent hands out its
snapshot, rebuilt when the model changed) and kept until the answer is sent, so a
GETBULK sees one consistent instant. Rows named in ``live`` are read at the moment
they are answered (clocks and counters that move on their own).

pysnmp exceptions are raised here only in the forms its responders expect
(``pysnmp.smi.error``); nothing else leaks: a broken table build is logged and
answered with genErr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pysnmp.entity.rfc3413 import cmdrsp
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error
from pysnmp.smi.instrum import AbstractMibInstrumController

from emulator.snmp.oid_table import Kind, MibValue, Oid, OidTable

log = logging.getLogger("emulator.snmp")

_TO_PYSNMP: dict[Kind, Callable[[Any], Any]] = {
    Kind.INTEGER: rfc1902.Integer32,
    Kind.OCTETS: rfc1902.OctetString,
    Kind.OID: rfc1902.ObjectName,
    Kind.TICKS: rfc1902.TimeTicks,
    Kind.COUNTER: rfc1902.Counter32,
    Kind.GAUGE: rfc1902.Gauge32,
    Kind.IPADDRESS: rfc1902.IpAddress,
}
# A GETBULK answer is cut short (RFC 3416 4.2.3 allows it) before it gets near the
# size a UDP datagram or the requester's msgMaxSize can carry.
BULK_BYTE_BUDGET = 8000
BULK_MAX_VARBINDS = 256

# A SET is checked first and applied only when every binding is acceptable.
WriteHook = Callable[[dict[Oid, bytes]], None]
# Rows whose value is read on every request instead of from the table (uptime, counters).
LiveValues = dict[Oid, Callable[[], MibValue]]


def to_pysnmp(value: MibValue) -> Any:
    """The pysnmp object for ``value``."""
    return _TO_PYSNMP[value.kind](value.value)


class LiveMibInstrum(AbstractMibInstrumController):  # type: ignore[misc]
    """Answers from a table built by ``build`` once per request."""

    def __init__(self, build: Callable[[], OidTable], write: WriteHook,
                 writable: frozenset[Oid], writers: frozenset[str],
                 live: LiveValues | None = None) -> None:
        self._build = build
        self._live: LiveValues = live or {}
        self._write = write
        self._writable = writable
        self._writers = writers
        self._table: OidTable | None = None
        self._in_request = False

    # -- request scope --------------------------------------------------------------------

    def begin_request(self) -> None:
        """Start answering one PDU: the next read builds the table, later reads reuse it."""
        self._in_request = True
        self._table = None

    def end_request(self) -> None:
        """The answer is sent: forget the table."""
        self._in_request = False
        self._table = None

    def table(self) -> OidTable:
        """The table of the current request (a fresh one outside a request)."""
        if self._table is not None:
            return self._table
        try:
            table = self._build()
        except Exception as exc:  # a model bug must cost one genErr, not the agent
            log.exception("building the MIB table failed")
            raise smi_error.GenError(idx=0) from exc
        if self._in_request:
            self._table = table
        return table

    # -- pysnmp interface -----------------------------------------------------------------

    def read_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """GET."""
        table = self.table()
        out = []
        for idx, (name, _) in enumerate(var_binds):
            oid = tuple(name)
            value = table.get(oid)
            if _not_in_view(context, "read", name, idx):
                out.append((name, rfc1905.noSuchObject))
            elif value is None:
                nxt = table.next_after(oid[:-1])
                known_object = nxt is not None and nxt[0][: len(oid) - 1] == oid[:-1]
                out.append((name, rfc1905.noSuchInstance if known_object
                            else rfc1905.noSuchObject))
            else:
                fresh = self._live.get(oid)
                out.append((name, to_pysnmp(fresh() if fresh is not None else value)))
        return out

    def read_next_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """GETNEXT (and one round of GETBULK)."""
        table = self.table()
        out = []
        for idx, (name, _) in enumerate(var_binds):
            oid: Oid = tuple(name)
            while True:
                nxt = table.next_after(oid)
                if nxt is None:
                    out.append((name, rfc1905.endOfMibView))
                    break
                oid, value = nxt
                pysnmp_name = rfc1902.ObjectName(oid)
                try:
                    if _not_in_view(context, "read", pysnmp_name, idx):
                        continue
                except smi_error.NoAccessError:  # v1 cannot carry it: skip (RFC 2576)
                    continue
                fresh = self._live.get(oid)
                out.append((pysnmp_name, to_pysnmp(fresh() if fresh is not None else value)))
                break
        return out

    def write_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """SET: all bindings are checked, then applied together."""
        table = self.table()
        changes: dict[Oid, bytes] = {}
        for idx, (name, value) in enumerate(var_binds):
            oid = tuple(name)
            # Checked here as well as by VACM: pysnmp 7.1 lets a write through when the
            # principal's write view has no entries (is_access_allowed *returns* its
            # notInView status instead of raising it).
            if (_security_name(context) not in self._writers
                    or _not_in_view(context, "write", name, idx)):
                raise smi_error.NoAccessError(name=name, idx=idx)
            if oid not in self._writable:
                if table.get(oid) is None:
                    raise smi_error.NoCreationError(name=name, idx=idx)
                raise smi_error.NotWritableError(name=name, idx=idx)
            if value.tagSet != rfc1902.OctetString.tagSet:
                raise smi_error.WrongTypeError(name=name, idx=idx)
            changes[oid] = bytes(value)
        try:
            self._write(changes)
        except ValueError as exc:
            bad = next(iter(changes))
            log.info("SET refused: %s", exc)
            idx = list(changes).index(bad)
            if "octets" in str(exc):
                raise smi_error.WrongLengthError(name=var_binds[idx][0], idx=idx) from None
            raise smi_error.WrongValueError(name=var_binds[idx][0], idx=idx) from None
        self._table = None  # a GET in the same PDU class must see the new value
        return [(name, value) for name, value in var_binds]


def _security_name(context: dict[str, Any]) -> str:
    """The community's security name or the v3 user of the request being answered."""
    engine = context.get("snmpEngine")
    if engine is None:
        return ""
    request = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
    return str(request["securityName"])


def _not_in_view(context: dict[str, Any], view: str, name: Any, idx: int) -> bool:
    """Ask VACM; True when the name is outside the view (raises when access is denied)."""
    check = context.get("acFun")
    if check is None:
        return False
    return bool(check(view, (name, None), **{**context, "idx": idx}))


# -- responders ---------------------------------------------------------------------------

RequestGate = Callable[[], bool]


class _Scoped:
    """Mixin: drop requests while the device is off; one table per request."""

    cbCtx: tuple[LiveMibInstrum, RequestGate]

    def handle_management_operation(self, engine: Any, state_ref: Any, context_name: Any,
                                     pdu: Any) -> None:
        instrum, answering = self.cbCtx
        if not answering():
            self.release_state_information(state_ref)  # type: ignore[attr-defined]
            return
        instrum.begin_request()
        try:
            super().handle_management_operation(  # type: ignore[misc]
                engine, state_ref, context_name, pdu)
        finally:
            instrum.end_request()


class GetResponder(_Scoped, cmdrsp.GetCommandResponder):  # type: ignore[misc]
    """GET."""


class NextResponder(_Scoped, cmdrsp.NextCommandResponder):  # type: ignore[misc]
    """GETNEXT."""


class SetResponder(_Scoped, cmdrsp.SetCommandResponder):  # type: ignore[misc]
    """SET."""


class BulkResponder(cmdrsp.BulkCommandResponder):  # type: ignore[misc]
    """GETBULK (RFC 3416 4.2.3), cut short by size and at the end of the MIB."""

    cbCtx: tuple[LiveMibInstrum, RequestGate]

    def _bulk(self, engine: Any, state_ref: Any, pdu: Any) -> None:
        instrum = self.cbCtx[0]
        non_rep = max(0, int(v2c.apiBulkPDU.get_non_repeaters(pdu)))
        max_rep = max(0, int(v2c.apiBulkPDU.get_max_repetitions(pdu)))
        req = list(v2c.apiPDU.get_varbinds(pdu))
        n = min(non_rep, len(req))
        r = len(req) - n
        context = {"snmpEngine": engine, "acFun": self.verify_access, "cbCtx": self.cbCtx}
        out = instrum.read_next_variables(*req[:n], **context) if n else []
        budget = BULK_BYTE_BUDGET - sum(_estimate(v) for v in out)
        row = req[n:]
        for _ in range(max_rep if r else 0):
            got = instrum.read_next_variables(*row, **context)
            cost = sum(_estimate(v) for v in got)
            if len(out) == n and len(out) + r > BULK_MAX_VARBINDS:
                # More repeaters than one answer carries: the first round, cut at its
                # end (an empty answer would read as "nothing there").
                out.extend(got[:max(0, BULK_MAX_VARBINDS - len(out))])
                break
            if (cost > budget and len(out) > n) or len(out) + r > BULK_MAX_VARBINDS:
                break
            out.extend(got)
            budget -= cost
            if all(v[1] is rfc1905.endOfMibView for v in got):
                break
            row = got
        self.send_varbinds(engine, state_ref, 0, 0, out)
        self.release_state_information(state_ref)

    def handle_management_operation(self, engine: Any, state_ref: Any, context_name: Any,
                                    pdu: Any) -> None:
        instrum, answering = self.cbCtx
        if not answering():
            self.release_state_information(state_ref)
            return
        instrum.begin_request()
        try:
            self._bulk(engine, state_ref, pdu)
        finally:
            instrum.end_request()


def _estimate(var_bind: tuple[Any, Any]) -> int:
    name, value = var_bind
    try:
        size = len(value.asOctets()) if hasattr(value, "asOctets") else 6
    except Exception:  # noSuchObject and friends have no octets
        size = 2
    return len(name) + 8 + size
