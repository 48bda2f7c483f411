"""The manager's SNMP edge: GET, GETNEXT and GETBULK over pysnmp.

pysnmp (the ``manager`` extra) carries the protocol: v1 and v2c communities, v3 USM,
request ids, retries and timeouts, all requests of a scan through one engine and one
UDP socket. This module is the one place pysnmp's types and errors are seen: values
come out as plain ``int``/``bytes``/OID tuples (:mod:`device_direct.manager.mib`),
failures as :class:`~device_direct.manager.errors.SnmpError` carrying the address.

The low-level command generators are used rather than the high-level API, because
the latter resolves every name through the MIB tree, which costs more than the request.

No target table entry per address. pysnmp's command generators look up where to send
in the engine's SNMP-TARGET-MIB tables, and its high-level helper writes one row per
address (``LCD.configure``, ~8 ms each, and every new row makes the community model
rebuild its transport-to-tag map on the next answer). Here each credential is set up
once (its community or USM user and one parameters row); every request then goes to
``message_dispatcher.send_pdu`` with the address itself (:class:`_Direct`), so probing
thousands of silent addresses costs one timeout round and no table work.

SNMPv1 (RFC 1157) has no GETBULK and no exceptions in varbinds: a GET of a missing
object or a GETNEXT past the end answers ``noSuchName`` for the whole request with the
index of the first culprit. :meth:`SnmpClient.get` and :meth:`SnmpClient.next` drop
that varbind (absent, or end of the MIB view) and ask again for the rest; a v1
"GETBULK" is a GETNEXT of at most :data:`V1_VARBINDS` varbinds at a time (one row), so
the same walk reads a v1 agent, in more round trips.

:func:`walk` reads several subtrees at once with GETBULK: each request carries one
varbind per subtree still open, so the whole Printer-MIB read of a printer takes a
handful of round trips. It defends against hostile agents: an OID that does not
increase, a subtree longer than ``max_rows``, a request that brings nothing new;
each stops that subtree, is noted as a problem, and keeps what was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.entity.rfc3413 import config as target_config
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    usmAesCfb128Protocol,
    usmHMACSHAAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.proxy import rfc2576

from device_direct.manager.errors import SnmpLocalError, SnmpRemoteError, SnmpTimeout
from device_direct.manager.mib import END, Oid, Value, format_oid

WalkResult = tuple[dict[Oid, Value], list[str]]

VERSIONS = ("v1", "v2c")  # community versions; v3 is a user
_NO_SUCH_NAME = 2  # SNMPv1 error-status
V1_VARBINDS = 16  # per v1 request: old agents answer tooBig beyond a few hundred octets


@dataclass(frozen=True, slots=True)
class Credential:
    """A v1 or v2c community, or a v3 user (authNoPriv without ``priv_key``)."""

    community: str | None = None
    user: str | None = None
    auth_key: str | None = None
    priv_key: str | None = None
    version: str = "v2c"  # of a community: v1 | v2c

    def __post_init__(self) -> None:
        if (self.community is None) == (self.user is None):
            raise ValueError("a credential is either a community or a v3 user")
        if self.version not in VERSIONS:
            raise ValueError(f"a community's version is v1 or v2c, got {self.version!r}")
        if self.user is not None and (self.auth_key is None or len(self.auth_key) < 8):
            raise ValueError(f"v3 user {self.user}: the auth key needs 8+ characters")
        if self.priv_key is not None and len(self.priv_key) < 8:
            raise ValueError(f"v3 user {self.user}: the priv key needs 8+ characters")

    @property
    def v1(self) -> bool:
        return self.community is not None and self.version == "v1"

    def label(self) -> str:
        """What the report may show (never the secret)."""
        return f"v3:{self.user}" if self.user else self.version

    def as_version(self, version: str) -> Credential:
        """The same community spoken in another version."""
        return Credential(community=self.community, version=version)

    def auth_data(self) -> Any:
        if self.community is not None:
            # communityIndex names the community row: one per (community, version).
            return CommunityData(f"{self.version}-{self.community}", self.community,
                                 mpModel=0 if self.v1 else 1)
        return UsmUserData(self.user, self.auth_key, self.priv_key,
                           authProtocol=usmHMACSHAAuthProtocol,
                           privProtocol=usmAesCfb128Protocol if self.priv_key
                           else usmNoPrivProtocol)


def to_value(v: Any) -> Value | object | None:
    """pysnmp value -> plain value; END for endOfMibView, None for noSuch*."""
    if isinstance(v, rfc1905.EndOfMibView):
        return END
    if isinstance(v, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | univ.Null):
        return None
    if isinstance(v, univ.ObjectIdentifier):
        return tuple(v)
    if isinstance(v, univ.OctetString):
        return bytes(v.asOctets())
    if isinstance(v, univ.Integer):
        return int(v)
    return None


def malformed(data: bytes) -> bool:
    """True unless ``data`` is one whole BER SEQUENCE (garbage and truncated replies)."""
    if len(data) < 2 or data[0] != 0x30:
        return True
    first = data[1]
    if first < 0x80:
        return 2 + first != len(data)
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        return True
    return 2 + n + int.from_bytes(data[2:2 + n], "big") != len(data)


class _Direct:
    """Mixin for pysnmp's command generators: ``send_pdu`` takes the target itself.

    ``target`` is what ``config.get_target_info`` would return for a target table row
    (domain, address, timeout, retry count, mp model, security model, name, level);
    the rest is pysnmp's own ``CommandGenerator.send_pdu`` (retries and response
    matching stay in pysnmp's ``process_response_pdu``, which reads the pending entry).
    """

    def send_pdu(self, snmpEngine: Any, targetName: Any, contextEngineId: Any,
                 contextName: Any, PDU: Any, cbFun: Any, cbCtx: Any) -> Any:
        domain, address, timeout, retry_count, mp_model, sec_model, sec_name, sec_level = \
            targetName
        ticks = float(timeout) / 100 / snmpEngine.transport_dispatcher.get_timer_resolution()
        engine_id_type, admin_string = snmpEngine.get_mib_builder().import_symbols(
            "SNMP-FRAMEWORK-MIB", "SnmpEngineID", "SnmpAdminString")
        if contextEngineId:
            contextEngineId = engine_id_type(contextEngineId)
        contextName = admin_string(contextName)
        original = PDU
        if mp_model == 0:
            PDU, pdu_version = rfc2576.v2_to_v1(PDU), 0
        else:
            pdu_version = 1
        request_handle = cmdgen.getNextHandle()
        pdu_handle = snmpEngine.message_dispatcher.send_pdu(
            snmpEngine, domain, address, mp_model, sec_model, sec_name, sec_level,
            contextEngineId, contextName, pdu_version, PDU, True, ticks,
            self.process_response_pdu,  # type: ignore[attr-defined]
            (request_handle, cbFun, cbCtx))
        snmpEngine.transport_dispatcher.job_started(id(self))
        self._CommandGenerator__pendingReqs[pdu_handle] = (  # type: ignore[attr-defined]
            domain, address, mp_model, sec_model, sec_name, sec_level, contextEngineId,
            contextName, pdu_version, original, ticks, retry_count, 0, 0)
        return request_handle


class _Get(_Direct, cmdgen.GetCommandGenerator):  # type: ignore[misc]
    pass


class _Next(_Direct, cmdgen.NextCommandGeneratorSingleRun):  # type: ignore[misc]
    pass


class _Bulk(_Direct, cmdgen.BulkCommandGeneratorSingleRun):  # type: ignore[misc]
    pass


class _NoSuchName(Exception):
    """SNMPv1 noSuchName at varbind ``index`` (0-based); handled inside this module."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class SnmpClient:
    """GET, GETNEXT and GETBULK against many agents through one engine (one UDP socket)."""

    def __init__(self, *, timeout: float = 1.0, retries: int = 1) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self.timeout = timeout
        self.retries = retries
        self._engine = SnmpEngine()
        self._addresses: dict[tuple[str, int], Any] = {}
        self._templates: dict[Credential, asyncio.Future[tuple[Any, ...]]] = {}
        self._get, self._next, self._bulk = _Get(), _Next(), _Bulk()
        self.requests = 0
        # Malformed datagrams heard from each address: pysnmp drops them silently, so a
        # timeout after an address sent garbage is reported as the agent's fault.
        self.junk: dict[tuple[str, int], int] = {}
        dispatcher = self._engine.message_dispatcher
        receive = dispatcher.receive_message

        def counting(engine: Any, domain: Any, address: Any, whole: Any) -> Any:
            if malformed(bytes(whole)):
                key = (str(address[0]), int(address[1]))
                self.junk[key] = self.junk.get(key, 0) + 1
            return receive(engine, domain, address, whole)

        dispatcher.receive_message = counting

    def close(self) -> None:
        self._engine.close_dispatcher()

    async def _address(self, host: str, port: int) -> Any:
        """The UDP transport address of ``host:port`` (names resolved once)."""
        key = (host, port)
        if key not in self._addresses:
            try:
                ip = str(ipaddress.IPv4Address(host))
            except ValueError:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
                except OSError as exc:
                    raise SnmpLocalError(f"{host}:{port}", f"cannot resolve: {exc}") from None
                ip = str(infos[0][4][0])
            self._addresses[key] = udp.UdpTransportAddress((ip, port))
        return self._addresses[key]

    def ip_of(self, host: str, port: int) -> str | None:
        """The IPv4 address ``host`` was reached at (None before the first request)."""
        address = self._addresses.get((host, port))
        return str(address[0]) if address is not None else None

    async def _template(self, cred: Credential, host: str, port: int) -> tuple[Any, ...]:
        """The target info of ``cred``, set up in the engine once."""
        if cred not in self._templates:  # one set-up even when a whole probe round asks
            self._templates[cred] = asyncio.ensure_future(self._configure(cred))
        try:
            return await asyncio.shield(self._templates[cred])
        except SnmpLocalError as exc:
            self._templates.pop(cred, None)  # the next address tries again
            raise SnmpLocalError(f"{host}:{port}", exc.message) from None

    async def _configure(self, cred: Credential) -> tuple[Any, ...]:
        try:
            # The row's address is a placeholder: every request names its own. pysnmp
            # sends once per call and forgets it after the whole round: retries and the
            # deadline are kept by _send.
            target = await UdpTransportTarget.create(
                ("127.0.0.1", 161), timeout=self.timeout * (self.retries + 1) + 1.0,
                retries=0)
            addr_name, _ = LCD.configure(self._engine, cred.auth_data(), target, b"")
            return tuple(target_config.get_target_info(self._engine, addr_name))
        except Exception as exc:  # pysnmp wraps resolver and config errors in its own
            raise SnmpLocalError("-", f"cannot set up SNMP: {exc}") from None

    async def _send(self, host: str, port: int, cred: Credential, kind: str,
                    bulk: tuple[int, int], oids: list[Oid], tries: int | None = None
                    ) -> list[tuple[Oid, Any]]:
        """One request, sent up to ``tries`` (default ``retries + 1``) times; the first
        answer wins."""
        tries = self.retries + 1 if tries is None else tries
        where = host if port == 161 else f"{host}:{port}"
        expected = await self._address(host, port)
        template = await self._template(cred, host, port)
        target = (template[0], expected, *template[2:])
        future: asyncio.Future[list[tuple[Oid, Any]]] = (
            asyncio.get_running_loop().create_future())

        def done(engine: Any, _handle: Any, indication: Any, status: Any, index: Any,
                 var_binds: Any, _ctx: Any) -> bool:
            if future.done():
                return False  # answered already, or given up: a late copy
            if indication:
                if not (isinstance(indication, errind.RequestTimedOut) or
                        str(indication).startswith("No SNMP response")):
                    future.set_exception(SnmpRemoteError(where, f"bad answer: {indication}"))
                return False  # pysnmp's own timeout: ours (below) decides
            ctx = engine.observer.get_execution_context("rfc3412.receiveMessage:response")
            peer = ctx.get("transportAddress") if ctx else None
            if peer is not None and tuple(peer)[:2] != tuple(expected)[:2]:
                future.set_exception(SnmpRemoteError(
                    where, f"the reply came from {peer[0]}:{peer[1]}, not from the address asked"))
                return False
            if status and int(status):
                if cred.v1 and int(status) == _NO_SUCH_NAME and 1 <= int(index) <= len(oids):
                    future.set_exception(_NoSuchName(int(index) - 1))
                    return False
                future.set_exception(SnmpRemoteError(
                    where, f"agent answered error-status {status.prettyPrint()} at varbind "
                           f"{int(index)}"))
                return False
            future.set_result([(tuple(name), value) for name, value in var_binds])
            return False

        var_binds = [(rfc1902.ObjectName(o), univ.Null("")) for o in oids]

        def callback(e: Any, h: Any, i: Any, s: Any, x: Any, v: Any, c: Any) -> bool:
            return done(e, h, i, s, x, v, c)

        for _ in range(tries):
            self.requests += 1
            try:
                if kind == "get":
                    self._get.send_varbinds(self._engine, target, None, b"", var_binds,
                                            callback, None)
                elif kind == "next":
                    self._next.send_varbinds(self._engine, target, None, b"", var_binds,
                                             callback, None)
                else:
                    self._bulk.send_varbinds(self._engine, target, None, b"", bulk[0],
                                             bulk[1], var_binds, callback, None)
            except Exception as exc:  # pysnmp raises its own errors for unsendable requests
                raise SnmpLocalError(where, f"cannot send: {exc}") from None
            # The deadline is kept here, on the loop's clock: pysnmp counts timeouts in
            # timer ticks that stretch with the number of requests in flight (a 6 s
            # round took 14 s with 1,000 silent addresses).
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        if not future.done():
            future.cancel()  # late answers and pysnmp's own timeout are ignored
        junk = self.junk.get((str(expected[0]), int(expected[1])), 0)
        if junk > 0:
            raise SnmpRemoteError(where, f"answered with {junk} datagram(s) that are not a "
                                         "valid SNMP reply (malformed or truncated)")
        raise SnmpTimeout(where, f"no answer within {self.timeout:g} s x {tries} "
                                 f"tr{'ies' if tries > 1 else 'y'}")

    async def _v1_tolerant(self, host: str, port: int, cred: Credential, kind: str,
                           oids: list[Oid], missing: Any, tries: int | None = None
                           ) -> list[tuple[Oid, Any]]:
        """GET/GETNEXT of ``oids``; under v1, a noSuchName varbind becomes ``missing``."""
        answers: dict[int, tuple[Oid, Any]] = {}
        left = list(range(len(oids)))
        while left:
            try:
                got = await self._send(host, port, cred, kind, (0, 0),
                                       [oids[i] for i in left], tries)
            except _NoSuchName as culprit:
                i = left.pop(culprit.index)
                answers[i] = (oids[i], missing)
                continue
            answers.update(zip(left, got, strict=False))
            break
        return [answers[i] for i in sorted(answers)]

    async def get(self, host: str, port: int, cred: Credential,
                  oids: list[Oid]) -> dict[Oid, Value]:
        """GET ``oids``; absent objects are left out of the answer."""
        out: dict[Oid, Value] = {}
        for oid, v in await self._v1_tolerant(host, port, cred, "get", oids, None):
            value = to_value(v)
            if value is not None and value is not END:
                out[oid] = value  # type: ignore[assignment]
        return out

    async def next(self, host: str, port: int, cred: Credential,
                   oids: list[Oid], tries: int | None = None) -> list[tuple[Oid, Any]]:
        """GETNEXT: the instance after each of ``oids`` (END past the end of the view)."""
        got = await self._v1_tolerant(host, port, cred, "next", oids, rfc1905.endOfMibView,
                                      tries)
        return [(oid, to_value(v)) for oid, v in got]

    async def bulk(self, host: str, port: int, cred: Credential, scalars: list[Oid],
                   columns: list[Oid], repetitions: int, *, tries: int | None = None
                   ) -> list[tuple[Oid, Any]]:
        """GETBULK: GETNEXT of ``scalars`` then ``repetitions`` rows of ``columns``.

        SNMPv1 has no GETBULK: a v1 credential gets one GETNEXT of them all (one row).
        """
        if cred.v1:
            wanted = [*scalars, *columns]
            out: list[tuple[Oid, Any]] = []
            for i in range(0, len(wanted), V1_VARBINDS):
                out += await self.next(host, port, cred, wanted[i:i + V1_VARBINDS], tries)
            return out
        got = await self._send(host, port, cred, "bulk", (len(scalars), repetitions),
                               [*scalars, *columns], tries)
        return [(oid, to_value(v)) for oid, v in got]


async def walk(client: SnmpClient, host: str, port: int, cred: Credential,
               subtrees: tuple[Oid, ...], *, max_rows: int = 5000,
               budget: int = 120) -> WalkResult:
    """Read every instance under ``subtrees`` (all at once); returns (values, problems)."""
    values, problems, _ = await walk_exact(client, host, port, cred, subtrees,
                                           max_rows=max_rows, budget=budget)
    return values, problems


async def walk_exact(client: SnmpClient, host: str, port: int, cred: Credential,
                     subtrees: tuple[Oid, ...], *, exact: tuple[Oid, ...] = (),
                     max_rows: int = 5000, budget: int = 120,
                     values: dict[Oid, Value] | None = None
                     ) -> tuple[dict[Oid, Value], list[str], list[Oid]]:
    """:func:`walk`, with ``exact`` instances riding along in the first request.

    Each exact instance is sent as a non-repeater (GETNEXT of its parent): one that
    comes back as itself is read; one whose parent's first instance lies beyond it
    does not exist; the rest are returned (third item) for a GET. ``values``, when
    given, is filled as answers come: what was read before an :class:`SnmpError`
    (the agent went silent mid-walk) stays with the caller.
    """
    where = host if port == 161 else f"{host}:{port}"
    values = {} if values is None else values
    problems: list[str] = []
    unresolved: list[Oid] = []
    cursor = {p: p for p in subtrees}
    count = dict.fromkeys(subtrees, 0)
    active = list(subtrees)
    scalars = list(exact)
    while active or scalars:
        reps = max(2, min(64, budget // max(1, len(active))))
        got = await client.bulk(host, port, cred, [o[:-1] for o in scalars],
                                [cursor[p] for p in active], reps)
        for wanted, (oid, value) in zip(scalars, got, strict=False):
            if oid == wanted:
                if isinstance(value, int | bytes | tuple):
                    values[oid] = value
            elif oid <= wanted or value is END:
                unresolved.append(wanted)  # something else first, or not told: GET it
        unresolved += scalars[len(got):]
        got = got[len(scalars):]
        scalars = []
        if not active:
            break
        width = len(active)
        closed: set[Oid] = set()
        progress = False
        for k, (oid, value) in enumerate(got):
            p = active[k % width]
            if p in closed:
                continue
            if value is END or oid[:len(p)] != p:
                closed.add(p)
                continue
            if oid <= cursor[p]:
                problems.append(f"{format_oid(p)}: the agent's walk does not increase "
                                f"({format_oid(oid)} after {format_oid(cursor[p])}); "
                                "stopped reading it")
                closed.add(p)
                continue
            cursor[p] = oid
            progress = True
            if isinstance(value, int | bytes | tuple):
                values[oid] = value
            count[p] += 1
            if count[p] >= max_rows:
                problems.append(f"{format_oid(p)}: more than {max_rows} instances; "
                                "stopped reading it (kept the first ones)")
                closed.add(p)
        if not got:
            break
        if not progress and not closed:
            raise SnmpRemoteError(where, "the agent's GETBULK answers bring nothing new")
        active = [p for p in active if p not in closed]
    return values, problems, unresolved
