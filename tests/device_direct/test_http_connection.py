"""The device's own HTTP/1.1 connection against scripted TLS servers on 127.0.0.1.

Each server here is a real TLS listener (ports chosen by the OS) that reads requests and
answers from a script, so the test decides exactly which bytes come back and when the
connection closes: keep-alive, ``Connection: close``, an idle connection the server
dropped, a connection that dies with the request unanswered, chunked bodies, a close in
the middle of a body, a malformed head.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from proxyfixtures import connect_proxy, stop_server
from tlsfixtures import TestCA, server_context

from device_direct.clock import SystemClock
from device_direct.errors import ConnectError, ProxyError, RemoteProtocolError
from device_direct.http_connection import Route, ServerLink
from device_direct.identity import IdentityStore
from device_direct.transport import Timeouts, Transport, build_ssl_context, map_exceptions

FAST = Timeouts(connect=10, request=20, upload=20, read=20)
KEY = "reg-key-1"


@dataclass
class Seen:
    """One request as the server read it: on which connection, which of it."""

    connection: int
    number: int  # on that connection, from 0
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Cut:
    """Send ``data`` (part of a response), then close the connection."""

    data: bytes


# An answer: bytes to send (then keep reading), a Cut, or None to close without answering.
Script = Callable[[Seen], bytes | Cut | None]


@dataclass
class ScriptedServer:
    port: int
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0


def answer(status: int, body: bytes = b"", *, reason: str = "OK",
           fields: tuple[str, ...] = ("Content-Type: application/json",)) -> bytes:
    head = "\r\n".join((f"HTTP/1.1 {status} {reason}", *fields,
                        f"Content-Length: {len(body)}", "", ""))
    return head.encode() + body


@asynccontextmanager
async def scripted(tmp_path: Path, ca: TestCA, script: Script) -> AsyncIterator[ScriptedServer]:
    files = ca.issue_server_cert(tmp_path, stem="scripted")
    ctx = server_context(ca, files, client_certs=ssl.CERT_OPTIONAL)
    handlers: set[asyncio.Task[None]] = set()
    state = ScriptedServer(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        number = state.connections
        state.connections += 1
        try:
            for count in range(100):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(number, count, method, target, headers, body)
                state.seen.append(seen)
                reply = script(seen)
                if reply is None:
                    return
                if isinstance(reply, Cut):
                    writer.write(reply.data)
                    await writer.drain()
                    return
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower().split(b"\r\n\r\n", 1)[0]:
                    return
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        await stop_server(server, handlers)


def route(port: int, bundle: Path) -> Route:
    return Route("127.0.0.1", port, build_ssl_context(bundle), "localhost")


async def get(link: ServerLink, r: Route, method: str = "GET", target: str = "/x",
              body: bytes | None = None) -> tuple[int, bytes]:
    exchange = await link.exchange(r, method, target, [], body, connect_timeout=10,
                                   read_timeout=20)
    try:
        parts = []
        while chunk := await exchange.next_chunk():
            parts.append(chunk)
        return exchange.status, b"".join(parts)
    finally:
        exchange.close()


# -- a device-day over one connection ------------------------------------------------------


def device_api(ca: TestCA) -> Script:
    """Just enough of /dd/v1 for a registration and one device-day, keep-alive throughout."""
    def script(seen: Seen) -> bytes:
        if seen.target == "/dd/v1/register":
            csr = json.loads(seen.body)["csr"].encode()
            return answer(201, json.dumps({
                "device_id": "dev-1", "certificate": ca.sign_csr(csr).decode(),
                "ca_certificate": ca.cert_pem.decode()}).encode())
        if seen.target.endswith("/uploads"):
            return answer(201, b'{"status": "stored"}')
        if seen.target.endswith("/actions"):
            return answer(200, b'{"actions": []}')
        return answer(204, fields=())
    return script


async def test_a_device_day_is_three_requests_on_one_connection(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with scripted(tmp_path, ca, device_api(ca)) as server:
        transport = Transport(f"https://127.0.0.1:{server.port}", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(), timeouts=FAST)
        async with transport:
            await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {"a": "1"}, KEY)
            stored = await transport.upload(b"PK\x05\x06" + bytes(18),
                                            "8c1e6f86-4a39-4b6f-9a49-1d3b8c7a2f10")
            assert stored.status == "stored"
            assert await transport.poll_actions() == []
            assert await transport.check_firmware("C8000", "1.0") is None
    # Registration on its own connection (no client certificate yet); the day on the
    # next one, whose context has the new certificate.
    assert [(s.connection, s.number) for s in server.seen] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    upload = server.seen[1]
    assert upload.headers["host"] == f"127.0.0.1:{server.port}"
    assert upload.headers["user-agent"].startswith("device-direct/")
    assert upload.headers["accept-encoding"] == "identity"
    assert upload.headers["content-length"] == "22"
    assert server.seen[3].target == "/dd/v1/devices/dev-1/firmware?model=C8000&version=1.0"


async def test_connection_close_means_a_new_connection_for_the_next_request(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes:
        return answer(200, b"{}", fields=("Connection: close",))

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        for _ in range(3):
            assert await get(link, r) == (200, b"{}")
        link.close()
    assert [s.connection for s in server.seen] == [0, 1, 2]


async def test_an_idle_connection_the_server_dropped_is_replaced_before_sending(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    """The server closes the connection after reading a request (without saying so):
    the POST that follows goes out once, on a new connection."""

    def script(seen: Seen) -> bytes | None:
        if seen.number == 1:
            return None
        return answer(200, b"{}")

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        assert await get(link, r) == (200, b"{}")
        # A request the server reads and drops: only then is the idle connection closed.
        with pytest.raises(ConnectError, match="closed the connection"), map_exceptions("POST /x"):
            await get(link, r, "POST", body=b"1")
        assert await get(link, r, "POST", body=b"2") == (200, b"{}")
        link.close()
    assert [(s.connection, s.method, s.body) for s in server.seen] == [
        (0, "GET", b""), (0, "POST", b"1"), (1, "POST", b"2")]


async def test_a_get_left_unanswered_on_a_kept_connection_is_sent_once_more(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes | None:
        if seen.connection == 0 and seen.number == 1:
            return None  # read the second request, close without a word
        return answer(200, f'{{"connection": {seen.connection}}}'.encode())

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        assert await get(link, r) == (200, b'{"connection": 0}')
        assert await get(link, r) == (200, b'{"connection": 1}')
        link.close()
    assert [(s.connection, s.method) for s in server.seen] == [(0, "GET"), (0, "GET"), (1, "GET")]


async def test_a_post_left_unanswered_is_never_sent_twice(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes | None:
        return answer(200, b"{}") if seen.number == 0 else None

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        assert await get(link, r) == (200, b"{}")
        with (pytest.raises(ConnectError, match="the server closed the connection"),
              map_exceptions("POST /dd/v1/devices/{id}/uploads")):
            await get(link, r, "POST", "/up", b"zip bytes")
        link.close()
    assert [s.method for s in server.seen] == ["GET", "POST"]


# -- bodies --------------------------------------------------------------------------------


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\n{\r\n9;ext=1\r\n\"a\": [1, \r\n3\r\n2]}\r\n0\r\nX-T: 1\r\n\r\n")

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        assert await get(link, r) == (200, b'{"a": [1, 2]}')
        assert await get(link, r) == (200, b'{"a": [1, 2]}')
        link.close()
    assert [s.connection for s in server.seen] == [0, 0]


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n",
])
async def test_a_server_closing_mid_body_is_a_connect_error_and_a_new_connection_follows(
    tmp_path: Path, ca: TestCA, bundle: Path, head: bytes
) -> None:
    def script(seen: Seen) -> bytes | Cut:
        if seen.connection == 0:
            return Cut(head + b"x" * 100)
        return answer(200, b"{}")

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        with (pytest.raises(ConnectError, match="GET /x: the response body broke off: 100 "),
              map_exceptions("GET /x")):
            await get(link, r)
        assert await get(link, r) == (200, b"{}")
        link.close()
    assert [s.connection for s in server.seen] == [0, 1]


async def test_a_malformed_head_is_a_remote_protocol_error_naming_the_endpoint(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"

    async with scripted(tmp_path, ca, script) as server:
        transport = Transport(f"https://127.0.0.1:{server.port}", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(), timeouts=FAST)
        async with transport:
            with pytest.raises(RemoteProtocolError,
                               match="POST /dd/v1/register: malformed response: both "
                                     "Content-Length and Transfer-Encoding"):
                await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {}, KEY)


@pytest.mark.parametrize(("status", "error"), [
    (204, None),  # no update, whatever the length field says
    (304, "unexpected status 304"),
])
async def test_a_length_field_of_a_response_without_a_body_is_not_read_as_a_number(
    tmp_path: Path, ca: TestCA, bundle: Path, status: int, error: str | None
) -> None:
    """The parser reads no Content-Length on a 204 or 304 (they have no body); "²" (latin-1
    0xB2) passes str.isdigit but not int()."""
    script = device_api(ca)

    def odd_length(seen: Seen) -> bytes | Cut | None:
        if "/firmware" in seen.target:
            return b"HTTP/1.1 %d Odd\r\nContent-Length: \xb2\r\n\r\n" % status
        return script(seen)

    async with scripted(tmp_path, ca, odd_length) as server:
        transport = Transport(f"https://127.0.0.1:{server.port}", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(), timeouts=FAST)
        async with transport:
            await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {}, KEY)
            if error is None:
                assert await transport.check_firmware("C8000", "1.0") is None
            else:
                with pytest.raises(RemoteProtocolError, match=error):
                    await transport.check_firmware("C8000", "1.0")


async def test_a_download_broken_off_keeps_what_arrived(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    script = device_api(ca)

    def with_image(seen: Seen) -> bytes | Cut | None:
        if seen.target == "/fw/image.bin":
            return Cut(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"i" * 200_000)
        return script(seen)

    received: list[bytes] = []
    async with scripted(tmp_path, ca, with_image) as server:
        transport = Transport(f"https://127.0.0.1:{server.port}", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(), timeouts=FAST)
        async with transport:
            await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {}, KEY)
            with pytest.raises(ConnectError, match=r"GET /fw/image.bin: the response body "
                                                   r"broke off: 200000 of 300000 bytes"):
                async with aclosing(transport.download("/fw/image.bin", 0, 400_000)) as stream:
                    async for chunk in stream:
                        received.append(chunk)
    assert b"".join(received) == b"i" * 200_000
    assert max(map(len, received)) <= 64 * 1024


async def test_requests_made_at_once_get_connections_of_their_own_and_one_is_kept(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes:
        return answer(200, f'{{"connection": {seen.connection}}}'.encode())

    async with scripted(tmp_path, ca, script) as server:
        link, r = ServerLink(), route(server.port, bundle)
        first, second = await asyncio.gather(get(link, r), get(link, r))
        assert {first[1], second[1]} == {b'{"connection": 0}', b'{"connection": 1}'}
        third = await get(link, r)
        assert third[1] in (b'{"connection": 0}', b'{"connection": 1}')
        link.close()
    assert server.connections == 2


# -- through a proxy -----------------------------------------------------------------------


async def test_proxy_credentials_go_on_the_connect_only_and_the_tunnel_is_kept(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    def script(seen: Seen) -> bytes:
        return answer(200, b"{}")

    async with scripted(tmp_path, ca, script) as server, connect_proxy() as (proxy_port, heads):
        r = Route("127.0.0.1", server.port, build_ssl_context(bundle), "localhost",
                  proxy=("127.0.0.1", proxy_port), proxy_authorization="Basic YTpi")
        link = ServerLink()
        assert await get(link, r) == (200, b"{}")
        assert await get(link, r) == (200, b"{}")
        link.close()
    assert heads == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\nHost: 127.0.0.1:"
                     f"{server.port}\r\nProxy-Authorization: Basic YTpi\r\n\r\n".encode()]
    assert [s.connection for s in server.seen] == [0, 0]
    assert all("proxy-authorization" not in s.headers for s in server.seen)


@pytest.mark.parametrize(("reply", "error", "status"), [
    (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
     r"proxy refused the tunnel \(502 Bad Gateway\)", 502),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "cannot reach the proxy: no usable answer to CONNECT "
                                     r"\(bad status line", None),
    (b"", "cannot reach the proxy: no usable answer to CONNECT "
          r"\(the server closed the connection before answering\)", None),
])
async def test_a_proxy_that_does_not_open_the_tunnel_is_a_proxy_error_with_its_status(
    tmp_path: Path, ca: TestCA, bundle: Path, reply: bytes, error: str, status: int | None
) -> None:
    async with connect_proxy(reply=reply) as (proxy_port, _):
        transport = Transport("https://127.0.0.1:9", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(), timeouts=FAST,
                              proxy=f"http://127.0.0.1:{proxy_port}")
        async with transport:
            with pytest.raises(ProxyError, match=f"POST /dd/v1/register: {error}") as info:
                await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {}, KEY)
    assert info.value.status == status


async def test_a_proxy_that_never_answers_the_connect_is_a_proxy_error_naming_it(
    tmp_path: Path, bundle: Path
) -> None:
    """Not "the server did not answer": the server was never asked, and a ProxyError moves
    a PAC list on to its next proxy (test_proxy.py)."""
    with socket.socket() as silent:  # the kernel takes the connection; nobody reads it
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        transport = Transport("https://127.0.0.1:9", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), SystemClock(),
                              timeouts=Timeouts(connect=0.5, request=20, upload=20, read=20),
                              proxy=f"http://127.0.0.1:{port}")
        async with transport:
            with pytest.raises(ProxyError, match=r"POST /dd/v1/register: cannot reach the "
                               rf"proxy: no answer to CONNECT from 127.0.0.1:{port} within "
                               r"0.5 s") as info:
                await transport.register("XRX-1", "C8000", "00:11:22:33:44:55", {}, KEY)
    assert info.value.status is None


def test_on_uvloop_a_tunnel_and_a_direct_connection_are_each_kept(tmp_path: Path) -> None:
    """The fleet runs its agents on uvloop, whose TLS transport is its own (``start_tls``
    over the CONNECT tunnel included): the same exchanges on its loop."""
    try:
        import uvloop
    except ImportError:
        pytest.fail("uvloop is needed (the emulator extra: pip install -e '.[emulator]')")
    ca = TestCA()
    bundle = ca.write_cert(tmp_path / "bundle.pem")

    async def scenario() -> tuple[list[int], list[int], int]:
        def script(seen: Seen) -> bytes:
            return answer(200, f'{{"connection": {seen.connection}}}'.encode())

        async with (scripted(tmp_path, ca, script) as server,
                    connect_proxy() as (proxy_port, heads)):
            context = build_ssl_context(bundle)
            direct = Route("127.0.0.1", server.port, context, "localhost")
            tunnelled = Route("127.0.0.1", server.port, context, "localhost",
                              proxy=("127.0.0.1", proxy_port))
            link = ServerLink()
            statuses = [(await get(link, r))[0] for r in (direct, direct, tunnelled, tunnelled)]
            link.close()
            return statuses, [s.connection for s in server.seen], len(heads)

    statuses, connections, connects = uvloop.run(scenario())
    assert statuses == [200] * 4
    assert connections == [0, 0, 1, 1]  # the route changed once: one new connection
    assert connects == 1
