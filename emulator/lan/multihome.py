"""One SNMP engine answering for many hosts of the simulated LAN, each on its own address.

Why: a pysnmp engine loads (compiles) its MIB modules when it is made, about 0.1 s of
CPU and a megabyte or two each, so a LAN of 2,000 printers with one engine each would
take minutes to start and gigabytes of memory. Here one engine owns one UDP socket per
address (transport domain ``udp + (i,)``); for each request a responder looks up the
transport domain it arrived on and routes it to that host's own instrumentation
(:class:`emulator.snmp.instrum.LiveMibInstrum`, built per printer by
:class:`emulator.snmp.SnmpAgent`, or a fixed table for a non-printer), so every
printer still answers from its live model and only its own values.

What is shared is what a LAN of v1/v2c hosts does not show: the engine id and the
security configuration (one read-only community for all). SNMPv3 needs one engine
per printer (``python -m emulator device``). A host added ``v1_only`` is an old
printer whose agent speaks SNMPv1 alone: a v2c request to it is dropped unanswered
(RFC 3584 section 4: a message of a version the agent does not speak is discarded).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine
from pysnmp.entity.rfc3413 import context as snmp_context
from pysnmp.smi.instrum import AbstractMibInstrumController

from emulator.lan.hosts import bind_udp
from emulator.snmp.agent import guard_engine
from emulator.snmp.bad_input import BadInputLog
from emulator.snmp.instrum import BulkResponder, GetResponder, LiveMibInstrum, NextResponder

Gate = Callable[[], bool]

log = logging.getLogger("emulator.lan.snmp")


class _Router(AbstractMibInstrumController):  # type: ignore[misc]
    """Delegates every call to the instrumentation of the host the request came to."""

    def __init__(self) -> None:
        self.hosts: dict[tuple[int, ...], tuple[LiveMibInstrum, Gate, bool]] = {}
        self.current: tuple[LiveMibInstrum, Gate, bool] | None = None
        self.v1 = False  # the request being answered is SNMPv1

    def select(self, domain: Any, message_model: Any) -> None:
        self.current = self.hosts.get(tuple(domain))
        self.v1 = message_model is not None and int(message_model) == 0

    def answering(self) -> bool:
        if self.current is None or (self.current[2] and not self.v1):
            return False  # nobody here, or a v1-only agent asked in v2c
        return self.current[1]()

    def _instrum(self) -> LiveMibInstrum:
        if self.current is None:
            raise RuntimeError("no host selected")
        return self.current[0]

    def begin_request(self) -> None:
        self._instrum().begin_request()

    def end_request(self) -> None:
        if self.current is not None:
            self.current[0].end_request()

    def read_variables(self, *var_binds: Any, **context: Any) -> Any:
        return self._instrum().read_variables(*var_binds, **context)

    def read_next_variables(self, *var_binds: Any, **context: Any) -> Any:
        return self._instrum().read_next_variables(*var_binds, **context)

    def write_variables(self, *var_binds: Any, **context: Any) -> Any:
        return self._instrum().write_variables(*var_binds, **context)


class _Select:
    """Mixin: pick the host by the transport domain the request arrived on."""

    cbCtx: tuple[_Router, Gate]

    def handle_management_operation(self, engine: Any, state_ref: Any, context_name: Any,
                                    pdu: Any) -> None:
        ctx = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        router = self.cbCtx[0]
        router.select(ctx["transportDomain"], ctx.get("messageProcessingModel"))
        try:
            super().handle_management_operation(  # type: ignore[misc]
                engine, state_ref, context_name, pdu)
        finally:
            router.current = None


class _Get(_Select, GetResponder):
    pass


class _Next(_Select, NextResponder):
    pass


class _Bulk(_Select, BulkResponder):
    pass


class MultiHomedSnmp:
    """One engine, one socket per host; ``add`` hosts, then ``start``."""

    def __init__(self, community: str = "public") -> None:
        self._router = _Router()
        self._engine: Any = snmp_engine.SnmpEngine()
        snmp_config.add_v1_system(self._engine, "community-1", community)
        for model in (1, 2):
            snmp_config.add_vacm_user(self._engine, model, "community-1", "noAuthNoPriv",
                                      readSubTree=(1, 3, 6))
        ctx = snmp_context.SnmpContext(self._engine)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", self._router)
        scope = (self._router, self._router.answering)
        for responder in (_Get, _Next, _Bulk):
            responder(self._engine, ctx, scope)
        # Garbage from a stray scanner costs one rate-limited warning naming the peer,
        # never a traceback: the same guard as a single printer's agent.
        self.io = {"in_pkts": 0, "in_octets": 0, "out_pkts": 0, "out_octets": 0}
        self.bad_input = BadInputLog(log, "SNMP", time.monotonic)
        self._count = 0
        self._sockets: list[socket.socket] = []

    def add(self, address: str, port: int, instrum: LiveMibInstrum, answering: Gate, *,
            v1_only: bool = False) -> int:
        """Bind ``address:port`` (0: any free port) for this host; returns the port."""
        sock = bind_udp(address, port)
        self._sockets.append(sock)
        self._count += 1
        domain = (*udp.DOMAIN_NAME, self._count)
        snmp_config.add_transport(self._engine, domain,
                                  udp.UdpTransport().open_server_mode(sock=sock))
        self._router.hosts[domain] = (instrum, answering, v1_only)
        if self._count == 1:  # the engine has its transport dispatcher from now on
            guard_engine(self._engine, io=self.io, bad_input=self.bad_input)
        return int(sock.getsockname()[1])

    def close(self) -> None:
        """Close the engine and every host's socket, at once."""
        eng, self._engine = self._engine, None
        if eng is not None and eng.transport_dispatcher is not None:
            eng.close_dispatcher()
        # pysnmp opens a transport's endpoint in a task of its own and, closed before
        # that task ran (a start that failed on the next address), cancels it and leaves
        # the socket open: a retry on the same port would find the address in use.
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
