"""A fault-injecting TCP proxy for QA: devices -> proxy -> server, on loopback.

It forwards raw TCP (TLS passes through untouched, so certificate checks still run end
to end) and applies the current :class:`~emulator.faults.netplan.NetFaults`. Change the
faults at any time with :attr:`FaultProxy.faults`; :meth:`reset_all` drops every open
connection (a network flap). Counters say what happened, for scenario reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

from emulator.errors import EmulatorError
from emulator.faults.netplan import NetFaults, plan_chunk

log = logging.getLogger(__name__)

CHUNK = 16 * 1024


@dataclass(slots=True)
class ProxyCounters:
    accepted: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _hard_close(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): what a peer sees when a middlebox resets."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


class FaultProxy:
    """Listen on ``host:port`` (0 = any free port) and forward to ``upstream``."""

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1",
                 port: int = 0, faults: NetFaults | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self._port = port
        self.faults = faults or NetFaults()
        self.counters = ProxyCounters()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise EmulatorError("fault proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self._port)
        except OSError as exc:
            raise EmulatorError(f"fault proxy cannot listen on {self.host}:{self._port}: {exc}") \
                from exc

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.reset_all()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reset_all(self) -> None:
        """Drop every open connection now."""
        tasks = list(self._conns)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.faults.cut:
            self.counters.refused += 1
            _hard_close(writer)
            return
        self.counters.accepted += 1
        self._conns.add(task)
        up_w: asyncio.StreamWriter | None = None
        try:
            if self.faults.blackhole:
                await reader.read()  # swallow until the client gives up
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.counters.refused += 1
                _hard_close(writer)
                return
            sent = [0]
            a = asyncio.create_task(self._pipe(reader, up_w, upstream=True, sent=sent))
            b = asyncio.create_task(self._pipe(up_r, writer, upstream=False, sent=sent))
            done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            reset = any(not t.cancelled() and t.result() for t in done)
            if reset:
                for p in pending:
                    p.cancel()
            else:
                await asyncio.wait(pending, timeout=30)
                for p in pending:
                    p.cancel()
            if reset:
                self.counters.resets += 1
                _hard_close(writer)
                _hard_close(up_w)
        except asyncio.CancelledError:
            self.counters.resets += 1
            _hard_close(writer)
            if up_w is not None:
                _hard_close(up_w)
        finally:
            self._conns.discard(task)
            if not writer.is_closing():
                writer.close()
            if up_w is not None and not up_w.is_closing():
                up_w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *,
                    upstream: bool, sent: list[int]) -> bool:
        """Copy until EOF. Returns True when a planned reset cut the connection."""
        try:
            while True:
                chunk = await src.read(CHUNK)
                if not chunk:
                    with contextlib.suppress(OSError):
                        if dst.can_write_eof():
                            dst.write_eof()
                    return False
                decision = plan_chunk(self.faults, size=len(chunk), upstream=upstream,
                                      sent_upstream=sent[0])
                if decision.delay_s:
                    await asyncio.sleep(decision.delay_s)
                if decision.forward:
                    dst.write(chunk[: decision.forward])
                    await dst.drain()
                    if upstream:
                        sent[0] += decision.forward
                        self.counters.bytes_up += decision.forward
                    else:
                        self.counters.bytes_down += decision.forward
                if decision.reset:
                    return True
        except (ConnectionError, OSError):
            return True
