"""Registration, mutual TLS, certificate revocation and the TLS version floor."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from refserver_helpers import (
    payload_zip,
    register,
    register_raw,
    registration,
    server_ctx,
)

from emulator.clock import VirtualClock
from emulator.server import ReferenceServer
from emulator.server.pki import make_csr


async def test_registration_issues_a_client_cert_for_the_serial(
    server: ReferenceServer, tmp_path: Path
) -> None:
    dev = await register(server, tmp_path / "dev")
    cert = x509.load_pem_x509_certificate(dev.cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == dev.serial
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == dev.serial
    # Issued by the device CA (ca.pem), not the server CA devices trust (the bundle).
    cert.verify_directly_issued_by(server.pki.ca_cert)
    assert server.pki.ca_cert != x509.load_pem_x509_certificate(server.ca_cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 364 <= days <= 366
    [row] = server.storage.devices()
    assert row["device_id"] == dev.device_id and row["serial"] == dev.serial
    status, body, _ = await dev.request("GET", "/actions")
    assert (status, body) == (200, {"actions": []})


@pytest.mark.parametrize("reason", ["unknown", "used", "expired"])
async def test_bad_registration_keys_are_refused_with_the_reason(
    server: ReferenceServer, vclock: VirtualClock, reason: str
) -> None:
    key = server.create_registration_key(ttl_s=60)
    _, csr = make_csr("EMU1")
    if reason == "unknown":
        key = "not-a-key-this-server-made"
    elif reason == "used":
        status, _ = await register_raw(server, registration("EMU0", key, make_csr("EMU0")[1]))
        assert status == 201
    else:
        vclock.advance_to(vclock.now() + timedelta(seconds=61))
    status, body = await register_raw(server, registration("EMU1", key, csr))
    assert status == 403
    assert body["error"] == f"registration_key_{reason}"
    assert body["detail"]
    assert all(d["serial"] != "EMU1" for d in server.storage.devices())


async def test_registration_refuses_a_bad_csr_and_keeps_the_key(
    server: ReferenceServer,
) -> None:
    key = server.create_registration_key()
    p384 = ec.generate_private_key(ec.SECP384R1())
    wrong_curve = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EMU1")])
    ).sign(p384, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    status, body = await register_raw(server, registration("EMU1", key, wrong_curve))
    assert status == 400 and body["error"] == "bad_csr" and "P-256" in body["detail"]
    status, body = await register_raw(server, registration("EMU1", key, b"garbage"))
    assert status == 400 and body["error"] == "bad_csr"
    status, _ = await register_raw(server, registration("EMU1", key, make_csr("EMU1")[1]))
    assert status == 201  # the key was not burnt by the bad attempt


async def test_registration_validates_fields(server: ReferenceServer) -> None:
    key = server.create_registration_key()
    body = registration("EMU1", key, make_csr("EMU1")[1])
    body["mac"] = "not-a-mac"
    status, resp = await register_raw(server, body)
    assert status == 400 and "mac" in resp["detail"]


async def test_device_calls_without_a_client_cert_get_401(
    server: ReferenceServer, tmp_path: Path
) -> None:
    dev = await register(server, tmp_path / "dev")
    async with aiohttp.ClientSession() as s, s.get(
        f"{dev.base}/actions", ssl=server_ctx(server)
    ) as r:
        assert r.status == 401
        assert (await r.json())["error"] == "client_certificate_required"


async def test_a_cert_from_another_ca_is_refused_in_the_handshake(
    server: ReferenceServer, tmp_path: Path
) -> None:
    other = ReferenceServer(tmp_path / "other-state")
    other_dev = await _register_elsewhere(other, tmp_path)
    ctx = server_ctx(server)
    ctx.load_cert_chain(other_dev[0], other_dev[1])
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as s, s.get(
            f"{server.base_url}/dd/v1/devices/x/actions", ssl=ctx
        ) as r:
            await r.read()


async def _register_elsewhere(other: ReferenceServer, tmp: Path) -> tuple[Path, Path]:
    async with other:
        dev = await register(other, tmp / "elsewhere", "FOREIGN1")
    cert, key = sorted((tmp / "elsewhere").glob("FOREIGN1-0.*"))
    del dev
    return cert, key


async def test_cross_device_access_is_refused(server: ReferenceServer, tmp_path: Path) -> None:
    a = await register(server, tmp_path / "a", "EMUA")
    b = await register(server, tmp_path / "b", "EMUB")
    status, body, _ = await a.request("GET", f"{server.base_url}/dd/v1/devices/"
                                      f"{b.device_id}/actions")
    assert status == 403 and body["error"] == "device_mismatch"
    upload_id, zip_ = payload_zip(serial="EMUB")
    status, body, _ = await a.request(
        "POST", f"{server.base_url}/dd/v1/devices/{b.device_id}/uploads", data=zip_,
        headers={"Content-Type": "application/zip", "Upload-Id": upload_id,
                 "Content-SHA256": "0" * 64})
    assert status == 403
    assert server.storage.uploads_count() == 0


async def test_reregistration_revokes_the_old_certificate(
    server: ReferenceServer, tmp_path: Path
) -> None:
    old = await register(server, tmp_path / "d")
    assert (await old.request("GET", "/actions"))[0] == 200
    new = await register(server, tmp_path / "d")
    assert new.device_id == old.device_id
    status, body, _ = await old.request("GET", "/actions")
    assert status == 403 and body["error"] == "certificate_revoked"
    assert (await new.request("GET", "/actions"))[0] == 200


async def test_tls11_client_is_refused_by_the_server(server: ReferenceServer) -> None:
    def tls_ctx(maximum: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = server_ctx(server)
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = maximum
        # Lower the client's own floor so that any refusal comes from the server.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        return ctx

    async def handshake(ctx: ssl.SSLContext) -> str:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx,
                                                  server_hostname="localhost")
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        await writer.wait_closed()
        return str(version)

    # The same permissive client context does talk TLS 1.2: the server is the limit.
    assert await handshake(tls_ctx(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
        await handshake(tls_ctx(ssl.TLSVersion.TLSv1_1))
    # The client got as far as sending its TLS 1.1 hello: a client that cannot offer
    # TLS 1.1 at all fails locally with "no protocols available" and never connects.
    # The server answers with a protocol_version alert, or (asyncio does not always
    # flush the alert before closing) resets the connection.
    text = f"{type(info.value).__name__} {info.value}".upper()
    assert "NO_PROTOCOLS_AVAILABLE" not in text
    assert "PROTOCOL_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text or \
        isinstance(info.value, ConnectionResetError), text


async def test_a_key_may_be_presented_again_by_its_serial_until_first_contact(
    server: ReferenceServer,
) -> None:
    # A device that lost power after the server used its key, before it stored the
    # certificate, registers again with the same key; once it has made an
    # authenticated call the key is spent for good.
    key = server.create_registration_key()
    status, _ = await register_raw(server, registration("EMU7", key, make_csr("EMU7")[1]))
    assert status == 201
    status, body = await register_raw(server, registration("EMU7", key, make_csr("EMU7")[1]))
    assert status == 201, body
    status, body = await register_raw(server, registration("EMU8", key, make_csr("EMU8")[1]))
    assert (status, body["error"]) == (403, "registration_key_used")
    [dev] = server.storage.devices()
    server.storage.touch_device(dev["device_id"], server.clock.now())
    status, body = await register_raw(server, registration("EMU7", key, make_csr("EMU7")[1]))
    assert (status, body["error"]) == (403, "registration_key_used")


async def test_last_contact_is_kept_to_the_minute(
    server: ReferenceServer, vclock: VirtualClock, tmp_path: Path
) -> None:
    dev = await register(server, tmp_path / "d")

    def last_contact() -> str | None:
        device = server.storage.device(dev.device_id)
        assert device is not None
        return device["last_contact"]

    assert last_contact() is None  # registration alone is not a contact
    assert (await dev.request("GET", "/actions"))[0] == 200
    first = last_contact()
    assert first is not None
    vclock.advance_to(vclock.now() + timedelta(seconds=30))
    assert (await dev.request("GET", "/actions"))[0] == 200
    assert last_contact() == first  # the same daily session: not written again
    vclock.advance_to(vclock.now() + timedelta(seconds=31))
    assert (await dev.request("GET", "/actions"))[0] == 200
    later = last_contact()
    assert later is not None and later > first


async def test_the_server_issues_no_session_tickets(
    server: ReferenceServer, tmp_path: Path
) -> None:
    # Devices connect once a day and cannot resume: tickets would be wasted work.
    dev = await register(server, tmp_path / "d")

    def one_call() -> tuple[str, bool, bytes]:
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                dev.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"GET /dd/v1/devices/{dev.device_id}/actions HTTP/1.1\r\n"
                        "Host: localhost\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            session = tls.session
            assert session is not None
            return str(tls.version()), session.has_ticket, answer

    version, has_ticket, answer = await asyncio.to_thread(one_call)
    assert answer.startswith(b"HTTP/1.1 200")
    assert version == "TLSv1.3" and not has_ticket
