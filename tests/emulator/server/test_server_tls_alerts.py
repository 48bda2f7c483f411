"""The server's refused TLS handshakes send their alert, as `openssl s_client` (a real
peer from Debian) and Python's own TLS client see it: protocol_version for a TLS 1.0 or
1.1 hello, unknown_ca for a client certificate another CA issued."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from emulator.server import ReferenceServer
from emulator.server.pki import Pki, make_csr

ALERT_PROTOCOL_VERSION = "SSL alert number 70"
ALERT_UNKNOWN_CA = "SSL alert number 48"


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        pytest.fail("openssl (Debian package openssl) is needed: run `make debs`")
    return found


async def _s_client(port: int, *args: str, request: bytes = b"") -> str:
    """What ``openssl s_client`` printed (stdout and stderr) for one connection."""
    proc = await asyncio.create_subprocess_exec(
        _openssl(), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert proc.stdin is not None
    proc.stdin.write(request)
    await proc.stdin.drain()
    try:
        # s_client reads what the server sends until the server closes; stdin stays
        # open meanwhile, so it does not quit before the alert could arrive.
        out = await asyncio.wait_for(proc.stdout.read() if proc.stdout else _none(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return out.decode(errors="replace")


async def _none() -> bytes:
    return b""


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
async def test_an_old_tls_hello_gets_the_protocol_version_alert(
        server: ReferenceServer, version: str) -> None:
    # SECLEVEL=0: Debian's OpenSSL would not even offer TLS 1.0/1.1 otherwise.
    out = await _s_client(server.port, version, "-cipher", "DEFAULT@SECLEVEL=0")
    assert ALERT_PROTOCOL_VERSION in out and "alert protocol version" in out, out


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_a_client_certificate_from_another_ca_gets_unknown_ca(
        server: ReferenceServer, tmp_path: Path, version: str) -> None:
    other = Pki(tmp_path / "other-ca", server_names=("localhost",), now=datetime.now(UTC))
    key_pem, csr = make_csr("FOREIGN001")
    cert = other.sign_client_csr(csr.decode(), serial="FOREIGN001", now=datetime.now(UTC),
                                 days=2)
    cert_file, key_file = tmp_path / "foreign.pem", tmp_path / "foreign.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key_pem)
    out = await _s_client(server.port, version, "-CAfile", str(server.ca_cert_path),
                          "-cert", str(cert_file), "-key", str(key_file),
                          request=b"GET /dd/v1/devices/x/actions HTTP/1.1\r\n"
                                  b"Host: localhost\r\n\r\n")
    assert ALERT_UNKNOWN_CA in out and "alert unknown ca" in out, out


async def test_pythons_tls_client_names_the_refusal(server: ReferenceServer) -> None:
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    with pytest.warns(DeprecationWarning):  # as it should: this client is the outdated one
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx,
                                      server_hostname="localhost")


async def test_the_server_still_serves_after_refusals(server: ReferenceServer) -> None:
    await _s_client(server.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    out = await _s_client(server.port, "-CAfile", str(server.ca_cert_path),
                          request=b"GET /dd/v1/devices/x/actions HTTP/1.1\r\n"
                                  b"Host: localhost\r\nConnection: close\r\n\r\n")
    assert "Verify return code: 0 (ok)" in out and "HTTP/1.1 401" in out, out


def test_on_uvloop_a_refused_hello_is_a_bare_close(tmp_path: Path) -> None:
    """uvloop's TLS layer (C) keeps the alert of a failed handshake to itself, and the
    server does not replace it there (tls_listener.py): what a client sees is the
    connection closed. docs/protocol.md says so; this pins it."""
    import uvloop

    async def scenario() -> str:
        async with ReferenceServer(tmp_path / "state") as srv:
            return await _s_client(srv.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")

    out = uvloop.run(scenario())
    assert "SSL alert number" not in out and "unexpected eof" in out, out
