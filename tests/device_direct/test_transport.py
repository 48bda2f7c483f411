"""The transport against real TLS servers on 127.0.0.1 (ports chosen by the OS).

Each TLS failure mode gets its own real server with the offending certificate or
protocol version; each must come out as the right ``TLSError.reason``. A small
stand-in for the reference server (``FakeServer``) signs CSRs with a test CA and checks
the client certificate on device calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from proxyfixtures import connect_proxy
from tlsfixtures import (
    AlertingTLSServer,
    TestCA,
    expired_window,
    future_window,
    peer_certificate,
    serve,
    server_context,
)

from device_direct.clock import SystemClock
from device_direct.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    ForeignAnswer,
    LocalProtocolError,
    ProxyError,
    RemoteProtocolError,
    ServerRejected,
    ServerUnavailable,
    TimeoutError_,
    TLSError,
)
from device_direct.identity import IdentityStore
from device_direct.transport import (
    Timeouts,
    Transport,
    UploadResult,
    content_range_start,
    parse_http_date,
    shared_trust_context,
    tls_reason,
)
from emulator.clock import VirtualClock

SERIAL = "XRX-0001"
GOOD_KEY = "reg-key-1"
FAST = Timeouts(connect=5, request=5, upload=5, read=5)
SHORT = Timeouts(connect=0.3, request=0.3, upload=0.3, read=0.3)
IMAGE = bytes(range(256)) * 40  # 10,240 bytes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeServer:
    """A stand-in for the reference server: just enough of /dd/v1 to test the transport.

    TLS asks for a client certificate but does not require one (registration has
    none); device endpoints answer 401 without one, like the real server.
    """

    def __init__(self, ca: TestCA) -> None:
        self.ca = ca
        self.uploads: dict[str, bytes] = {}
        self.results: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.requests: list[str] = []
        self.ranges: list[str | None] = []
        self.override: Handler | None = None  # replaces every device endpoint
        self.app = web.Application()
        r = self.app.router
        r.add_post("/dd/v1/register", self.register)
        r.add_post("/dd/v1/devices/{id}/renew", self.device(self.renew))
        r.add_post("/dd/v1/devices/{id}/uploads", self.device(self.upload))
        r.add_get("/dd/v1/devices/{id}/actions", self.device(self.actions))
        r.add_post("/dd/v1/devices/{id}/actions/{aid}/result", self.device(self.result))
        r.add_get("/dd/v1/devices/{id}/firmware", self.device(self.firmware))
        r.add_post("/dd/v1/devices/{id}/logs", self.device(self.log))
        r.add_get("/fw/image.bin", self.device(self.image))

    def device(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path)
            cert = peer_certificate(request)
            if cert is None:
                return web.json_response(
                    {"error": "no-client-certificate", "detail": "mutual TLS required"},
                    status=401,
                )
            if self.override is not None:
                return await self.override(request)
            return await handler(request)

        return checked

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("registration_key") != GOOD_KEY:
            return web.json_response(
                {"error": "invalid-registration-key", "detail": "unknown or used key"},
                status=403,
            )
        assert set(body) == {"serial", "model", "mac", "firmware", "registration_key", "csr"}
        cert = self.ca.sign_csr(body["csr"].encode())
        return web.json_response(
            {
                "device_id": f"dev-{body['serial']}",
                "certificate": cert.decode(),
                "ca_certificate": self.ca.cert_pem.decode(),
                "not_after": "2027-01-01T00:00:00Z",
            },
            status=201,
        )

    async def renew(self, request: web.Request) -> web.Response:
        body = await request.json()
        cert = self.ca.sign_csr(body["csr"].encode(), days=400)
        return web.json_response(
            {"certificate": cert.decode(), "ca_certificate": self.ca.cert_pem.decode()}
        )

    async def upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        upload_id = request.headers["Upload-Id"]
        assert request.headers["Content-Type"] == "application/zip"
        if request.headers["Content-SHA256"] != hashlib.sha256(data).hexdigest():
            return web.json_response({"error": "bad-hash", "detail": "mismatch"}, status=400)
        if upload_id in self.uploads:
            return web.json_response({"status": "duplicate"}, status=200)
        self.uploads[upload_id] = data
        return web.json_response({"status": "stored", "upload_id": upload_id}, status=201)

    async def actions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "actions": [
                    {
                        "id": "a1",
                        "type": "send-meters",
                        "params": {},
                        "issued_at": "2026-01-05T00:00:00Z",
                        "expires_at": "2026-01-06T00:00:00Z",
                    }
                ]
            },
            headers={"Date": "Tue, 06 Jan 2026 10:00:00 GMT"},
        )

    async def result(self, request: web.Request) -> web.Response:
        self.results.append({"aid": request.match_info["aid"], **(await request.json())})
        return web.Response(status=204)

    async def firmware(self, request: web.Request) -> web.Response:
        if request.query["version"] == "2.0":
            return web.Response(status=204)
        manifest = {"model": request.query["model"], "version": "2.0", "url": "/fw/image.bin"}
        return web.json_response({"manifest": manifest, "signature": "c2ln"})

    async def log(self, request: web.Request) -> web.Response:
        self.logs.append(await request.text())
        return web.json_response({"status": "stored"}, status=201)

    async def image(self, request: web.Request) -> web.Response:
        start = 0
        self.ranges.append(request.headers.get("Range"))
        if "Range" in request.headers:
            start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
            return web.Response(
                body=IMAGE[start:],
                status=206,
                headers={"Content-Range": f"bytes {start}-{len(IMAGE) - 1}/{len(IMAGE)}"},
            )
        return web.Response(body=IMAGE)


@asynccontextmanager
async def fake_server(
    tmp_path: Path, ca: TestCA, stem: str = "server"
) -> AsyncIterator[tuple[FakeServer, str]]:
    server = FakeServer(ca)
    files = ca.issue_server_cert(tmp_path, stem=stem)
    ctx = server_context(ca, files, client_certs=ssl.CERT_OPTIONAL)
    async with serve(server.app, ctx) as running:
        yield server, running.url


@asynccontextmanager
async def device(
    tmp_path: Path, ca: TestCA, bundle: Path, **kw: Any
) -> AsyncIterator[tuple[FakeServer, Transport]]:
    """A FakeServer and a Transport already registered with it."""
    async with fake_server(tmp_path, ca) as (server, url):
        transport = await registered(url, bundle, tmp_path / "id", **kw)
        async with transport:
            yield server, transport


def make_transport(
    url: str, bundle: Path, directory: Path, *, timeouts: Timeouts = FAST, **kw: Any
) -> Transport:
    return Transport(
        url, bundle, "localhost", IdentityStore(directory), SystemClock(), timeouts=timeouts, **kw
    )


async def registered(url: str, bundle: Path, directory: Path, **kw: Any) -> Transport:
    transport = make_transport(url, bundle, directory, **kw)
    await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {"controller": "1.0"}, GOOD_KEY)
    return transport


# -- the happy path, mutual TLS ------------------------------------------------------------


async def test_register_then_every_device_call_over_mutual_tls(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with fake_server(tmp_path, ca) as (server, url):
        transport = make_transport(url, bundle, tmp_path / "id")
        async with transport:
            device_id = await transport.register(
                SERIAL, "C8000", "00:11:22:33:44:55", {"controller": "1.0"}, GOOD_KEY
            )
            assert device_id == f"dev-{SERIAL}" == transport.device_id

            # Same Transport: the context was rebuilt with the client certificate, or
            # the server would answer 401 here.
            upload_id = str(uuid.uuid4())
            first = await transport.upload(b"PK\x03\x04zip", upload_id)
            again = await transport.upload(b"PK\x03\x04zip", upload_id)
            # Another form of the same UUID goes on the wire in the canonical one.
            braced = await transport.upload(b"PK\x03\x04zip", "{" + upload_id.upper() + "}")
            assert first == UploadResult("stored", 201)
            assert again == braced == UploadResult("duplicate", 200)
            assert server.uploads == {upload_id: b"PK\x03\x04zip"}

            actions = await transport.poll_actions()
            assert [a["id"] for a in actions] == ["a1"]
            assert transport.server_time() == datetime(2026, 1, 6, 10, 0, tzinfo=UTC)

            await transport.report_action("a1", "succeeded", "meters sent")
            await transport.report_action("a2", "failed", {"code": "010-397"})
            assert server.results == [
                {"aid": "a1", "status": "succeeded", "detail": {"message": "meters sent"}},
                {"aid": "a2", "status": "failed", "detail": {"code": "010-397"}},
            ]

            assert await transport.check_firmware("C8000", "2.0") is None
            offer = await transport.check_firmware("C8000", "1.0")
            assert offer is not None and offer["manifest"]["version"] == "2.0"

            await transport.upload_logs("engine log\n")
            assert server.logs == ["engine log\n"]


async def test_a_stored_identity_is_used_after_restart(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with fake_server(tmp_path, ca) as (_, url):
        async with await registered(url, bundle, tmp_path / "id"):
            pass
        async with make_transport(url, bundle, tmp_path / "id") as reborn:
            assert reborn.device_id == f"dev-{SERIAL}"
            assert len(await reborn.poll_actions()) == 1


async def test_unregistered_devices_share_one_trust_context_until_the_bundle_changes(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    """Devices of one process that trust the same bundle share the context they
    register with (nothing of a device is in it); each then has its own, with its own
    certificate. A bundle rewritten with another CA is loaded afresh and refuses the
    server the old one trusted."""
    async with fake_server(tmp_path, ca) as (server, url):
        first = make_transport(url, bundle, tmp_path / "one")
        second = make_transport(url, bundle, tmp_path / "two")
        assert first._ssl is second._ssl
        async with first, second:
            await first.register("SN-ONE", "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
            await second.register("SN-TWO", "C8000", "00:11:22:33:44:56", {}, GOOD_KEY)
            assert len({id(first._ssl), id(second._ssl), id(shared_trust_context(bundle))}) == 3
            for transport in (first, second):  # each over its own client certificate
                assert await transport.upload(b"PK\x03\x04", str(uuid.uuid4())) == (
                    UploadResult("stored", 201))
        TestCA().write_cert(bundle)
        third = make_transport(url, bundle, tmp_path / "three")
        assert third._ssl is not second._ssl and third._ssl is shared_trust_context(bundle)
        async with third:
            with pytest.raises(TLSError) as info:
                await third.register(SERIAL, "C8000", "00:11:22:33:44:57", {}, GOOD_KEY)
        assert info.value.reason == "unknown-ca"
    assert len(server.uploads) == 2


async def test_wrong_registration_key_is_an_auth_error_with_the_server_reason(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with (
        fake_server(tmp_path, ca) as (_, url),
        make_transport(url, bundle, tmp_path / "id") as transport,
    ):
        with pytest.raises(AuthError, match="403 invalid-registration-key"):
            await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, "wrong")
        assert transport.device_id is None


async def test_device_calls_before_registration_are_refused_locally(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with fake_server(tmp_path, ca) as (server, url):
        async with make_transport(url, bundle, tmp_path / "id") as transport:
            with pytest.raises(AuthError, match="not registered"):
                await transport.poll_actions()
        assert server.requests == []


async def test_renewal_replaces_the_certificate_and_keeps_working(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with device(tmp_path, ca, bundle) as (_, transport):
        identity = IdentityStore(tmp_path / "id")
        before = identity.registration
        assert before is not None
        await transport.renew()
        after = IdentityStore(tmp_path / "id").registration
        assert after is not None
        assert after.fingerprint_sha256 != before.fingerprint_sha256
        assert after.not_after > before.not_after
        assert len(await transport.poll_actions()) == 1


class OtherSerialServer(FakeServer):
    """Signs the device's key into a certificate for another serial, when told to."""

    other: str | None = None

    async def register(self, request: web.Request) -> web.Response:
        if self.other is None:
            return await super().register(request)
        body = await request.json()
        cert = self.ca.sign_csr(body["csr"].encode(), serial=self.other)
        return web.json_response({"device_id": "dev-other", "certificate": cert.decode(),
                                  "ca_certificate": self.ca.cert_pem.decode()}, status=201)

    async def renew(self, request: web.Request) -> web.Response:
        body = await request.json()
        cert = self.ca.sign_csr(body["csr"].encode(), serial=self.other)
        return web.json_response({"certificate": cert.decode(),
                                  "ca_certificate": self.ca.cert_pem.decode()})


async def test_a_certificate_for_another_serial_is_refused_at_registration_and_renewal(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    # It was stored, and the device went on presenting itself as the other printer
    # (the server derives the device from the certificate's serial).
    server = OtherSerialServer(ca)
    server.other = "OTHER-9"
    ctx = server_context(ca, ca.issue_server_cert(tmp_path), client_certs=ssl.CERT_OPTIONAL)
    async with (
        serve(server.app, ctx) as running,
        make_transport(running.url, bundle, tmp_path / "id") as transport,
    ):
        with pytest.raises(RemoteProtocolError, match="for serial 'OTHER-9', not this "
                                                      f"device's '{SERIAL}'"):
            await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
        assert transport.device_id is None
        server.other = None
        await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
        before = IdentityStore(tmp_path / "id").registration
        server.other = "OTHER-9"
        with pytest.raises(RemoteProtocolError, match="for serial 'OTHER-9'"):
            await transport.renew()
        assert IdentityStore(tmp_path / "id").registration == before
        assert before is not None and before.serial == SERIAL


async def test_strict_mtls_server_refuses_a_foreign_certificate_and_accepts_ours(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    """A server with CERT_REQUIRED: only a certificate from its CA gets through."""
    body = b'{"actions": []}'
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    strict_files = ca.issue_server_cert(tmp_path, stem="strict")
    strict = server_context(ca, strict_files, client_certs=ssl.CERT_REQUIRED)
    # A device registered with another CA: its certificate means nothing to this server.
    other_ca = TestCA("Other CA")
    other_bundle = other_ca.write_cert(tmp_path / "other-bundle.pem")
    async with fake_server(tmp_path, other_ca, stem="other") as (_, other_url):
        await (await registered(other_url, other_bundle, tmp_path / "foreign")).close()
    async with fake_server(tmp_path, ca) as (_, url):
        await (await registered(url, bundle, tmp_path / "ours")).close()

    async with AlertingTLSServer(strict, response) as server:
        async with make_transport(server.url, bundle, tmp_path / "foreign") as foreign:
            with pytest.raises(AuthError, match="refused the device's client certificate"):
                await foreign.poll_actions()
        async with make_transport(server.url, bundle, tmp_path / "ours") as ours:
            assert await ours.poll_actions() == []


# -- TLS failures: one real server per broken check -----------------------------------


async def _tls_failure(url: str, bundle: Path, directory: Path) -> TLSError:
    async with make_transport(url, bundle, directory) as transport:
        with pytest.raises(TLSError) as info:
            await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
    return info.value


def _plain_app() -> web.Application:
    async def never_reached(request: web.Request) -> web.Response:
        raise AssertionError("the TLS handshake should have failed")

    app = web.Application()
    app.router.add_post("/dd/v1/register", never_reached)
    return app


@pytest.mark.parametrize(
    ("case", "reason", "words"),
    [
        ("other-ca", "unknown-ca", "not signed by a CA in the configured bundle"),
        ("self-signed", "unknown-ca", "self-signed"),
        ("expired", "expired", "has expired"),
        ("not-yet-valid", "not-yet-valid", "not valid yet"),
        ("wrong-host", "wrong-host", "not for the expected server name"),
    ],
)
async def test_each_certificate_problem_has_its_own_reason(
    tmp_path: Path, ca: TestCA, bundle: Path, case: str, reason: str, words: str
) -> None:
    if case == "other-ca":
        files = TestCA("Stranger CA").issue_server_cert(tmp_path)
    elif case == "self-signed":
        files = TestCA("localhost").issue_self_signed(tmp_path)
    elif case == "expired":
        not_before, not_after = expired_window()
        files = ca.issue_server_cert(tmp_path, not_before=not_before, not_after=not_after)
    elif case == "not-yet-valid":
        not_before, not_after = future_window()
        files = ca.issue_server_cert(tmp_path, not_before=not_before, not_after=not_after)
    else:
        files = ca.issue_server_cert(tmp_path, names=("printer-cloud.example",))
    async with serve(_plain_app(), server_context(None, files)) as running:
        error = await _tls_failure(running.url, bundle, tmp_path / "id")
    assert error.reason == reason
    assert words in str(error)
    assert "POST /dd/v1/register" in str(error)


async def test_the_expected_name_not_the_url_host_is_verified(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    """Connecting to 127.0.0.1 with a certificate for 'localhost' only works by name."""
    files = ca.issue_server_cert(tmp_path, names=("localhost",))
    async with serve(_plain_app(), server_context(None, files)) as running:
        transport = Transport(
            running.url,
            bundle,
            "127.0.0.1",
            IdentityStore(tmp_path / "id"),
            SystemClock(),
            timeouts=FAST,
        )
        async with transport:
            with pytest.raises(TLSError) as info:
                await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
    assert info.value.reason == "wrong-host"


async def test_a_server_offering_only_tls_1_0_and_1_1_is_refused(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    legacy = server_context(
        None, ca.issue_server_cert(tmp_path), max_version=ssl.TLSVersion.TLSv1_1
    )
    async with AlertingTLSServer(legacy) as server:
        error = await _tls_failure(server.url, bundle, tmp_path / "id")
    assert error.reason == "tls-version"
    assert "does not offer TLS 1.2 or newer" in str(error)
    # The server saw a client that would not go below 1.2.
    assert [e.reason for e in server.handshake_errors] == ["UNSUPPORTED_PROTOCOL"]


# -- HTTP-level failures ---------------------------------------------------------------


def _respond(status: int, body: bytes, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    return handler


async def test_5xx_is_server_unavailable(tmp_path: Path, ca: TestCA, bundle: Path) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = _respond(503, b'{"error": "maintenance", "detail": "back soon"}')
        with pytest.raises(ServerUnavailable) as info:
            await transport.upload(b"zip", str(uuid.uuid4()))
    assert info.value.status == 503
    assert "maintenance" in str(info.value)


async def test_4xx_json_is_server_rejected_with_its_code(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = _respond(422, b'{"error": "schema", "detail": "no Counters"}')
        with pytest.raises(ServerRejected) as info:
            await transport.upload(b"zip", str(uuid.uuid4()))
    assert (info.value.status, info.value.error) == (422, "schema")
    assert "no Counters" in info.value.detail
    assert "uploads" in info.value.detail


async def test_401_on_a_device_call_is_an_auth_error(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = _respond(401, b'{"error": "revoked", "detail": "cert revoked"}')
        with pytest.raises(AuthError, match="revoked"):
            await transport.poll_actions()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>gateway</html>", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than Python's recursion limit"),
        (b"[1, 2]", "not an object"),
        (b'{"actions": "soon"}', "'actions' missing or not a list"),
        (b'{"actions": [{"type": "reboot"}]}', "no string 'id'"),
        (b"x" * (1024 * 1024 + 1), "exceeds the 1048576-byte limit"),
    ],
)
async def test_hostile_bodies_are_remote_protocol_errors_naming_the_endpoint(
    tmp_path: Path, ca: TestCA, bundle: Path, body: bytes, message: str
) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = _respond(200, body)
        with pytest.raises(RemoteProtocolError, match=message) as info:
            await transport.poll_actions()
    assert "GET /dd/v1/devices/{id}/actions" in str(info.value)


async def test_a_deeply_nested_json_error_is_not_the_servers_own(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    nested = b'{"error": "schema", "detail": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = _respond(422, nested)
        with pytest.raises(ForeignAnswer) as info:
            await transport.poll_actions()
    assert info.value.status == 422


async def test_a_huge_chunked_body_is_cut_off_at_the_limit(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    """No Content-Length: the limit must hold while streaming."""
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(1000):  # 64 MiB if nobody stops reading
                await response.write(b"{" * 65536)
                sent += 65536
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async with device(tmp_path, ca, bundle, json_limit=100_000) as (server, transport):
        server.override = endless
        with pytest.raises(RemoteProtocolError, match="exceeds the 100000-byte limit"):
            await transport.poll_actions()
    assert sent < 1000 * 65536


# -- connection-level failures ------------------------------------------------------------


async def test_connection_refused_is_a_connect_error(tmp_path: Path, bundle: Path) -> None:
    # A bound but not listening socket: the port is ours and connecting is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with make_transport(
            f"https://127.0.0.1:{port}/dd/v1", bundle, tmp_path / "id"
        ) as transport:
            with pytest.raises(ConnectError, match="cannot connect"):
                await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)


async def test_a_server_that_never_starts_tls_is_a_timeout(tmp_path: Path, bundle: Path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept the TCP connection, then say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_transport(
            f"https://127.0.0.1:{port}/dd/v1", bundle, tmp_path / "id", timeouts=SHORT
        ) as transport:
            with pytest.raises(TimeoutError_, match="did not answer in time"):
                await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()
    assert held, "the client never connected"


async def test_a_server_that_never_answers_the_request_is_a_timeout(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    never = asyncio.Event()
    entered = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        entered.set()
        await never.wait()
        return web.Response()

    async with fake_server(tmp_path, ca) as (server, url):
        await (await registered(url, bundle, tmp_path / "id")).close()
        server.override = stall
        try:
            async with make_transport(url, bundle, tmp_path / "id", timeouts=SHORT) as transport:
                with pytest.raises(TimeoutError_):
                    await transport.poll_actions()
        finally:
            never.set()  # the stalled handler may end (no task left behind)
    assert entered.is_set()


# -- firmware download --------------------------------------------------------------------


async def _collect(transport: Transport, url: str, start: int, max_bytes: int) -> bytes:
    parts = []
    async with aclosing(transport.download(url, start, max_bytes)) as stream:
        async for chunk in stream:
            parts.append(chunk)
    return b"".join(parts)


async def test_download_resumes_with_range(tmp_path: Path, ca: TestCA, bundle: Path) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        head = await _collect(transport, "/fw/image.bin", 0, len(IMAGE))
        tail = await _collect(transport, "/fw/image.bin", 4000, len(IMAGE) - 4000)
        absolute = transport.base_url.removesuffix("/dd/v1") + "/fw/image.bin"
        via_url = await _collect(transport, absolute, 10_000, 240)
    assert head == IMAGE
    assert tail == IMAGE[4000:]
    assert via_url == IMAGE[10_000:]
    assert server.ranges == [None, "bytes=4000-", "bytes=10000-"]


async def test_download_longer_than_allowed_is_aborted(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with device(tmp_path, ca, bundle) as (_, transport):
        with pytest.raises(RemoteProtocolError, match="longer than the 1000"):
            await _collect(transport, "/fw/image.bin", 0, 1000)


async def test_download_without_content_length_stops_at_max_bytes_plus_one(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(IMAGE)
        await response.write_eof()
        return response

    received: list[bytes] = []
    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = chunked
        with pytest.raises(RemoteProtocolError, match="longer than the 5000 bytes"):
            async with aclosing(transport.download("/fw/image.bin", 0, 5000)) as stream:
                async for chunk in stream:
                    received.append(chunk)
    assert sum(map(len, received)) <= 5000
    assert b"".join(received) == IMAGE[: sum(map(len, received))]


async def test_download_refuses_another_origin(tmp_path: Path, ca: TestCA, bundle: Path) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        with pytest.raises(RemoteProtocolError, match="not on the communication server"):
            await _collect(transport, "https://evil.example/fw.bin", 0, 10)
    assert "/fw/image.bin" not in server.requests


async def test_a_server_ignoring_range_is_handled_by_skipping(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async def whole(request: web.Request) -> web.Response:
        return web.Response(body=IMAGE)

    async with device(tmp_path, ca, bundle) as (server, transport):
        server.override = whole
        assert await _collect(transport, "/fw/image.bin", 9000, 2000) == IMAGE[9000:]


# -- proxy --------------------------------------------------------------------------------


async def test_proxy_tunnel_with_credentials(tmp_path: Path, ca: TestCA, bundle: Path) -> None:
    import base64

    token = base64.b64encode(b"alice:s3cret").decode()
    async with fake_server(tmp_path, ca) as (_, url), connect_proxy(token) as (port, seen):
        transport = make_transport(
            url,
            bundle,
            tmp_path / "id",
            proxy=f"http://127.0.0.1:{port}",
            proxy_credentials=("alice", "s3cret"),
        )
        async with transport:
            await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
            assert len(await transport.poll_actions()) == 1
    assert seen and seen[0].startswith(b"CONNECT 127.0.0.1:")


async def test_proxy_407_is_a_proxy_error(tmp_path: Path, ca: TestCA, bundle: Path) -> None:
    async with (
        fake_server(tmp_path, ca) as (_, url),
        connect_proxy("c2VjcmV0") as (port, _),
        make_transport(url, bundle, tmp_path / "id", proxy=f"http://127.0.0.1:{port}") as transport,
    ):
        with pytest.raises(ProxyError, match="407"):
            await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)


# -- configuration and arguments ---------------------------------------------------------


def test_bad_configuration_is_named(tmp_path: Path, bundle: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    with pytest.raises(ConfigError, match="https"):
        Transport("http://x/dd/v1", bundle, "x", store, SystemClock())
    with pytest.raises(ConfigError, match="not found") as info:
        Transport("https://x/dd/v1", tmp_path / "missing.pem", "x", store, SystemClock())
    assert "missing.pem" in str(info.value)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ConfigError, match=r"junk\.pem"):
        Transport("https://x/dd/v1", tmp_path / "junk.pem", "x", store, SystemClock())
    with pytest.raises(ConfigError, match="proxy URL"):
        Transport("https://x/dd/v1", bundle, "x", store, SystemClock(), proxy="socks5://p:1")
    with pytest.raises(ValueError, match=r"Timeouts\.connect"):
        Timeouts(connect=0)


async def test_bad_arguments_are_local_protocol_errors(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with device(tmp_path, ca, bundle) as (server, transport):
        requests_before = len(server.requests)
        with pytest.raises(LocalProtocolError, match="UUID"):
            await transport.upload(b"zip", "not-a-uuid")
        with pytest.raises(LocalProtocolError, match="status must be one of"):
            await transport.report_action("a1", "done", "")
        assert len(server.requests) == requests_before


async def test_clock_offset_comes_from_the_injected_clock(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    clock = VirtualClock(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))
    async with fake_server(tmp_path, ca) as (_, url):
        await (await registered(url, bundle, tmp_path / "id")).close()
        transport = Transport(
            url, bundle, "localhost", IdentityStore(tmp_path / "id"), clock, timeouts=FAST
        )
        async with transport:
            assert transport.clock_offset() is None
            await transport.poll_actions()
    assert transport.clock_offset() == timedelta(hours=1)


# -- pure helpers -------------------------------------------------------------------------

REASONS = {"unknown-ca", "expired", "not-yet-valid", "wrong-host", "tls-version", "handshake"}


@settings(max_examples=200)
@given(st.one_of(st.none(), st.integers(-5, 200)), st.one_of(st.none(), st.text(max_size=40)))
def test_tls_reason_is_always_one_of_the_documented_reasons(
    code: int | None, reason: str | None
) -> None:
    result = tls_reason(code, reason)
    assert result in REASONS
    if code in (18, 19, 20):
        assert result == "unknown-ca"
    if code is None and reason is None:
        assert result == "handshake"


def test_tls_reason_table() -> None:
    assert tls_reason(10, None) == "expired"
    assert tls_reason(9, None) == "not-yet-valid"
    assert tls_reason(62, None) == "wrong-host"
    assert tls_reason(None, "TLSV1_ALERT_PROTOCOL_VERSION") == "tls-version"
    assert tls_reason(None, "UNSUPPORTED_PROTOCOL") == "tls-version"
    assert tls_reason(None, "SSLV3_ALERT_HANDSHAKE_FAILURE") == "handshake"


@settings(max_examples=100)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1)))
def test_http_dates_round_trip(moment: datetime) -> None:
    from email.utils import format_datetime

    aware = moment.replace(microsecond=0, tzinfo=UTC)
    assert parse_http_date(format_datetime(aware, usegmt=True)) == aware


@pytest.mark.parametrize("value", [None, "", "yesterday", "Mon, 99 Foo 2026 10:00:00 GMT"])
def test_unreadable_dates_are_none(value: str | None) -> None:
    assert parse_http_date(value) is None


@settings(max_examples=100)
@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_content_range_start(first: int, extra: int) -> None:
    last = first + extra
    assert content_range_start(f"bytes {first}-{last}/{last + 1}") == first
    assert content_range_start(f"bytes {first}-{last}/*") == first
    assert content_range_start(f"items {first}-{last}/*") is None
    assert content_range_start(f"bytes */{last}") is None


# -- against the reference server ---------------------------------------------------------


def _payload_samples() -> ModuleType:
    # The realistic snapshot lives with the payload tests; load it by path so this test
    # does not depend on which test directories pytest happened to put on sys.path.
    path = Path(__file__).parent / "core" / "payload_samples.py"
    spec = importlib.util.spec_from_file_location("dd_payload_samples", path)
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_register_upload_actions_firmware_and_logs_against_the_reference_server(
    tmp_path: Path,
) -> None:
    from device_direct.core.payload import PayloadMeta, build_xml, pack_zip
    from device_direct.core.privacy import PrivacyPolicy
    from emulator.server import ReferenceServer

    snapshot = _payload_samples().make_snapshot()
    ident = snapshot.identity
    upload_id = str(uuid.uuid4())
    meta = PayloadMeta(upload_id, 1, datetime.now(UTC))
    payload = pack_zip(build_xml(snapshot, meta, policy=PrivacyPolicy()))
    image = bytes(range(256)) * 64

    async with ReferenceServer(tmp_path / "server") as srv:
        key = srv.create_registration_key()
        transport = Transport(
            f"https://127.0.0.1:{srv.port}/dd/v1",  # connect by address, verify by name
            srv.ca_cert_path,
            "localhost",
            IdentityStore(tmp_path / "id"),
            SystemClock(),
            timeouts=FAST,
        )
        async with transport:
            device_id = await transport.register(
                ident.serial, ident.model, snapshot.network.mac, dict(ident.firmware), key
            )
            # The key is spent for any other serial (its own serial may present it again
            # until its first authenticated call: power loss mid-registration).
            other = IdentityStore(tmp_path / "other")
            async with Transport(f"https://127.0.0.1:{srv.port}/dd/v1", srv.ca_cert_path,
                                 "localhost", other, SystemClock(), timeouts=FAST) as t2:
                with pytest.raises(AuthError, match="registration_key_used"):
                    await t2.register(
                        "OTHER0001", ident.model, "02:00:00:00:00:99", dict(ident.firmware), key
                    )

            assert await transport.upload(payload, upload_id) == UploadResult("stored", 201)
            assert await transport.upload(payload, upload_id) == UploadResult("duplicate", 200)
            with pytest.raises(ServerRejected) as rejected:
                await transport.upload(b"not a zip", str(uuid.uuid4()))
            assert 400 <= rejected.value.status < 500

            action_id = srv.enqueue_action(device_id, "send-meters")
            assert [a["id"] for a in await transport.poll_actions()] == [action_id]
            await transport.report_action(action_id, "succeeded", "sent")
            assert await transport.poll_actions() == []

            manifest = srv.publish_firmware(ident.model, "200.0.0", image)
            offer = await transport.check_firmware(ident.model, ident.firmware["system"])
            assert offer is not None and offer["manifest"] == manifest
            tail = await _collect(transport, manifest["url"], 1000, len(image) - 1000)
            assert tail == image[1000:]
            assert await transport.check_firmware(ident.model, "200.0.0") is None

            await transport.upload_logs("fuser warm-up took 41 s\n")
            assert transport.server_time() is not None


async def test_a_tls_1_1_server_that_cuts_the_handshake_is_named_as_such(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    # issue 17.9: an asyncio TLS server that only speaks TLS 1.1 closes the connection
    # without an alert; the error used to be "cannot connect: " with an empty cause.
    legacy = server_context(
        None, ca.issue_server_cert(tmp_path), max_version=ssl.TLSVersion.TLSv1_1
    )
    async with serve(_plain_app(), legacy) as running:
        error = await _tls_failure(running.url, bundle, tmp_path / "id")
    assert error.reason == "tls-version"
    assert "TLSv1.1" in str(error) and "TLS 1.2 or newer" in str(error)
