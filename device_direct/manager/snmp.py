"""The manager's SNMP edge: GET and GETBULK over pysnmp, and the multi-column walk.

pysnmp (the ``manager`` extra) carries the protocol: v2c communities and v3 USM, request
ids, retries and timeouts, all requests of a scan through one engine and one UDP socket.
This module is the one place pysnmp's types and errors are seen: values come out as
plain ``int``/``bytes``/OID tuples (:mod:`device_direct.manager.mib`), failures as
:class:`~device_direct.manager.errors.SnmpError` carrying the address.

The low-level command generators are used rather than the high-level API, because
the latter resolves every name through the MIB tree, which costs more than the request.

:func:`walk` reads several subtrees at once with GETBULK: each request carries one
varbind per subtree still open, so the whole Printer-MIB read of a printer takes a
handful of round trips. It defends against hostile agents: an OID that does not
increase, a subtree longer than ``max_rows``, a request that brings nothing new;
each stops that subtree, is noted as a problem, and keeps what was read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
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

from device_direct.manager.errors import SnmpLocalError, SnmpRemoteError, SnmpTimeout
from device_direct.manager.mib import END, Oid, Value, format_oid

WalkResult = tuple[dict[Oid, Value], list[str]]


@dataclass(frozen=True, slots=True)
class Credential:
    """A v2c community, or a v3 user (authNoPriv without ``priv_key``)."""

    community: str | None = None
    user: str | None = None
    auth_key: str | None = None
    priv_key: str | None = None

    def __post_init__(self) -> None:
        if (self.community is None) == (self.user is None):
            raise ValueError("a credential is either a community or a v3 user")
        if self.user is not None and (self.auth_key is None or len(self.auth_key) < 8):
            raise ValueError(f"v3 user {self.user}: the auth key needs 8+ characters")
        if self.priv_key is not None and len(self.priv_key) < 8:
            raise ValueError(f"v3 user {self.user}: the priv key needs 8+ characters")

    def label(self) -> str:
        """What the report may show (never the secret)."""
        return f"v3:{self.user}" if self.user else "v2c"

    def auth_data(self) -> Any:
        if self.community is not None:
            return CommunityData(self.community, mpModel=1)
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


class SnmpClient:
    """GET and GETBULK against many agents through one engine (one UDP socket)."""

    def __init__(self, *, timeout: float = 1.0, retries: int = 1) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self.timeout = timeout
        self.retries = retries
        self._engine = SnmpEngine()
        self._targets: dict[tuple[str, int], Any] = {}
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

    async def _target(self, host: str, port: int) -> Any:
        key = (host, port)
        if key not in self._targets:
            try:
                self._targets[key] = await UdpTransportTarget.create(
                    key, timeout=self.timeout, retries=self.retries)
            except Exception as exc:  # pysnmp wraps resolver errors in its own
                raise SnmpLocalError(f"{host}:{port}", f"cannot resolve: {exc}") from None
        return self._targets[key]

    async def _send(self, host: str, port: int, cred: Credential, bulk: tuple[int, int] | None,
                    oids: list[Oid]) -> list[tuple[Oid, Any]]:
        where = host if port == 161 else f"{host}:{port}"
        target = await self._target(host, port)
        addr_name, _ = LCD.configure(self._engine, cred.auth_data(), target, b"")
        future: asyncio.Future[list[tuple[Oid, Any]]] = (
            asyncio.get_running_loop().create_future())
        expected = target.transport_address

        def done(engine: Any, _handle: Any, indication: Any, status: Any, index: Any,
                 var_binds: Any, _ctx: Any) -> bool:
            if future.done():
                return False
            key = (str(expected[0]), int(expected[1]))
            if indication:
                if isinstance(indication, errind.RequestTimedOut) or \
                        str(indication).startswith("No SNMP response"):
                    junk = self.junk.get(key, 0)
                    if junk > 0:
                        future.set_exception(SnmpRemoteError(
                            where, f"answered with {junk} datagram(s) that are not a valid "
                                   "SNMP reply (malformed or truncated)"))
                    else:
                        future.set_exception(SnmpTimeout(
                            where, f"no answer within {self.timeout:g} s x "
                                   f"{self.retries + 1} tries"))
                else:
                    future.set_exception(SnmpRemoteError(where, f"bad answer: {indication}"))
                return False
            ctx = engine.observer.get_execution_context("rfc3412.receiveMessage:response")
            peer = ctx.get("transportAddress") if ctx else None
            if peer is not None and tuple(peer)[:2] != tuple(expected)[:2]:
                future.set_exception(SnmpRemoteError(
                    where, f"the reply came from {peer[0]}:{peer[1]}, not from the address asked"))
                return False
            if status and int(status):
                future.set_exception(SnmpRemoteError(
                    where, f"agent answered error-status {status.prettyPrint()} at varbind "
                           f"{int(index)}"))
                return False
            future.set_result([(tuple(name), value) for name, value in var_binds])
            return False

        var_binds = [(rfc1902.ObjectName(o), univ.Null("")) for o in oids]
        self.requests += 1
        try:
            if bulk is None:
                cmdgen.GetCommandGenerator().send_varbinds(
                    self._engine, addr_name, None, b"", var_binds,
                    lambda e, h, i, s, x, v, c: done(e, h, i, s, x, v, c), None)
            else:
                cmdgen.BulkCommandGeneratorSingleRun().send_varbinds(
                    self._engine, addr_name, None, b"", bulk[0], bulk[1], var_binds,
                    lambda e, h, i, s, x, v, c: done(e, h, i, s, x, v, c), None)
        except Exception as exc:  # pysnmp raises its own errors for unsendable requests
            raise SnmpLocalError(where, f"cannot send: {exc}") from None
        return await future

    async def get(self, host: str, port: int, cred: Credential,
                  oids: list[Oid]) -> dict[Oid, Value]:
        """GET ``oids``; absent objects are left out of the answer."""
        out: dict[Oid, Value] = {}
        for oid, v in await self._send(host, port, cred, None, oids):
            value = to_value(v)
            if value is not None and value is not END:
                out[oid] = value  # type: ignore[assignment]
        return out

    async def bulk(self, host: str, port: int, cred: Credential, scalars: list[Oid],
                   columns: list[Oid], repetitions: int) -> list[tuple[Oid, Any]]:
        """GETBULK: GETNEXT of ``scalars`` then ``repetitions`` rows of ``columns``."""
        got = await self._send(host, port, cred, (len(scalars), repetitions),
                               [*scalars, *columns])
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
                     max_rows: int = 5000, budget: int = 120
                     ) -> tuple[dict[Oid, Value], list[str], list[Oid]]:
    """:func:`walk`, with ``exact`` instances riding along in the first request.

    Each exact instance is sent as a non-repeater (GETNEXT of its parent): one that
    comes back as itself is read; one whose parent's first instance lies beyond it
    does not exist; the rest are returned (third item) for a GET.
    """
    where = host if port == 161 else f"{host}:{port}"
    values: dict[Oid, Value] = {}
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
