"""Test peers for proxy tests: tinyproxy, a man-in-the-middle proxy, a WPAD web server, DNS.

* :func:`tinyproxy` runs Debian's ``tinyproxy`` (package ``tinyproxy``) in the
  foreground with a generated config on a free loopback port, optionally with
  BasicAuth, and waits for its "Accepting connections" log line. A missing binary
  fails the test with the package name; it is not skipped.
* :func:`mitm_proxy` answers CONNECT with 200 and then terminates TLS itself with a
  certificate for the right name from its own CA: what a TLS-inspecting proxy does.
* :class:`WpadServer` serves PAC files (any content type, size, or never answering).
* :class:`DnsTable` is the resolver the code under test gets: a dict, and a record of
  every name asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from tlsfixtures import TestCA, server_context

TINYPROXY = "tinyproxy"
_READY = b"Accepting connections"


def free_port() -> int:
    """A port nobody listens on right now (for peers that cannot bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refusing_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 and not listening.

    While it is open, connections to its port are refused and nothing else can take the
    port: a port chosen and closed (:func:`free_port`) may be handed out again by the
    next bind to port 0, this test's own peers' included. A server may later listen on
    it (``loop.create_server(sock=...)``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Tinyproxy:
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connects(self) -> list[str]:
        """Log lines about CONNECT requests it received."""
        return [line for line in self.log if "CONNECT" in line]


@asynccontextmanager
async def tinyproxy(
    directory: Path, *, user: str | None = None, password: str | None = None
) -> AsyncIterator[Tinyproxy]:
    """Run tinyproxy on 127.0.0.1 until the block ends (BasicAuth when ``user`` is given)."""
    binary = shutil.which(TINYPROXY) or (
        "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
    )
    if binary is None:
        pytest.fail("tinyproxy is not installed: apt-get install tinyproxy (Debian package)")
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # the free port may be taken between choosing and binding it
        port = free_port()
        conf = directory / "tinyproxy.conf"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 20",
            "Allow 127.0.0.1",
            "LogLevel Info",
            f'PidFile "{directory / "tinyproxy.pid"}"',
        ]
        if user is not None:
            lines.append(f"BasicAuth {user} {password}")
        conf.write_text("\n".join(lines) + "\n")
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-d",
            "-c",
            str(conf),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        running = Tinyproxy(port)
        ready = False
        while line := await asyncio.wait_for(proc.stdout.readline(), 10):
            running.log.append(line.decode(errors="replace").rstrip())
            if _READY in line:
                ready = True
                break
        if ready:
            break
        await proc.wait()
    else:
        pytest.fail("tinyproxy did not start:\n" + "\n".join(running.log[-10:]))

    async def drain() -> None:
        # Keep reading its log, or tinyproxy blocks once the pipe is full.
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            running.log.append(line.decode(errors="replace").rstrip())

    drainer = asyncio.create_task(drain())
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
        await drainer


@dataclass
class MitmLog:
    port: int
    connects: list[str] = field(default_factory=list)
    handshakes_completed: int = 0
    plaintext: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def mitm_proxy(
    directory: Path, names: tuple[str, ...] = ("localhost",)
) -> AsyncIterator[MitmLog]:
    """A CONNECT proxy that intercepts TLS with its own CA's certificate for ``names``."""
    attacker = TestCA("Inspecting Proxy CA")
    ctx = server_context(None, attacker.issue_server_cert(directory, names, stem="mitm"))
    tasks: set[asyncio.Task[None]] = set()
    state = MitmLog(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            state.connects.append(head.split("\r\n", 1)[0])
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(ctx)
            state.handshakes_completed += 1
            state.plaintext.append(await reader.read(65536))
        except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the device hung up on us: the point of the test
        finally:
            writer.close()

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        await stop_server(server, tasks)


@dataclass
class PacFile:
    body: bytes
    content_type: str = "application/x-ns-proxy-autoconfig"
    hang: bool = False  # accept the request and never answer
    chunked: bool = False  # no Content-Length: the size is only known by reading


class WpadServer:
    """Plain HTTP on 127.0.0.1 serving ``files[path]``; 404 for anything else."""

    def __init__(self) -> None:
        self.files: dict[str, PacFile] = {}
        self.requests: list[tuple[str, str]] = []  # (Host header, path)
        self.port = 0
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def add(self, path: str, body: str | bytes, **kwargs: object) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.files[path] = PacFile(data, **kwargs)  # type: ignore[arg-type]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.host, request.path))
        pac = self.files.get(request.path)
        if pac is None:
            return web.Response(status=404)
        if pac.hang:
            await self._release.wait()
        if pac.chunked:
            response = web.StreamResponse(headers={"Content-Type": pac.content_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(pac.body), 4096):
                await response.write(pac.body[start : start + 4096])
            await response.write_eof()
            return response
        return web.Response(body=pac.body, headers={"Content-Type": pac.content_type})

    async def __aenter__(self) -> WpadServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()


class DnsTable:
    """A resolver over a dict; every name asked is recorded in ``asked``."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host in ("127.0.0.1", "::1"):
            return [host]
        return list(self.names.get(host.lower().rstrip("."), []))


@asynccontextmanager
async def connect_proxy(credentials: str | None = None, reply: bytes | None = None
                        ) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A CONNECT proxy on loopback: records each CONNECT head, answers 407 when it lacks
    ``Proxy-Authorization: Basic credentials`` (when given), sends ``reply`` instead of
    opening the tunnel (when given) and closes; otherwise tunnels."""
    heads: list[bytes] = []
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        if credentials is not None and (
                f"Proxy-Authorization: Basic {credentials}".encode() not in head):
            reply_now: bytes | None = (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n')
        else:
            reply_now = reply
        if reply_now is not None:
            writer.write(reply_now)
            await writer.drain()
            writer.close()
            return
        host, _, port = head.split()[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        for task in (asyncio.create_task(pipe(reader, up_writer)),
                     asyncio.create_task(pipe(up_reader, writer))):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        await stop_server(server, tasks)


async def stop_server(server: asyncio.Server, tasks: set[asyncio.Task[None]]) -> None:
    """Close a loopback server of these fixtures and cancel its connections' tasks."""
    server.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.wait_closed()
