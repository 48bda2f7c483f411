"""Which certificates each side of a handshake sends.

A new state directory has two CAs (emulator/server/pki.py): the server CA signs the
server certificate and is what devices trust; the device CA signs the devices'
certificates and is what the server checks them against. Neither side then finds its
own issuer among the CAs it trusts, so each sends its certificate alone: the other side
parses one certificate a handshake, not two, and a device no longer verifies its own
chain every time. Seen here by ``openssl s_client`` (Debian) and by a TLS server with the
reference server's own context.

A directory made with one CA keeps it: the server sends its certificate, then that CA,
from a chain file (so OpenSSL does not rebuild the chain, verifying the server's own
certificate, on every handshake); a renewed certificate renews the file; an operator's
chain file is served as given."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from device_direct.transport import build_ssl_context
from emulator.server import ReferenceServer
from emulator.server.pki import Pki, ServerTlsFiles, make_csr

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _certs(pem: bytes) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(block) for block in _PEM.findall(pem)]


async def _sent_by_server(port: int) -> list[x509.Certificate]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl (Debian package openssl) is needed: run `make debs`")
    proc = await asyncio.create_subprocess_exec(
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
        "localhost", "-showcerts", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(b""), 60)
    return _certs(out)


def _old_layout(pki_dir: Path) -> None:
    """Leave ``pki_dir`` as a server made before the server CA existed would have: its
    one CA (``ca.*``) and nothing it signed for the server."""
    Pki(pki_dir, server_names=("localhost",), now=datetime.now(UTC))
    for name in ("server-ca.pem", "server-ca.key", "server.pem", "server.key", "bundle.pem"):
        (pki_dir / name).unlink()


async def test_a_client_receives_the_server_certificate_alone(
        server: ReferenceServer) -> None:
    pki = server.pki
    sent = await _sent_by_server(server.port)
    assert sent == _certs(pki.server_cert_path.read_bytes())
    assert sent[0].issuer == pki.server_ca_cert.subject != pki.ca_cert.subject
    assert _certs(pki.bundle_pem) == [pki.server_ca_cert]  # what devices trust


def test_a_device_sends_its_certificate_alone(tmp_path: Path) -> None:
    """A device's TLS context (the agent's own) against a server with the reference
    server's context: the server receives the device's certificate, not its CA too."""
    pki = Pki(tmp_path / "pki", server_names=("localhost",), now=datetime.now(UTC))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_verify_locations(cafile=str(pki.dir / "ca.pem"))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(str(pki.server_chain_path), str(pki.server_key_path))
    key_pem, csr = make_csr("CHAIN0001")
    cert = pki.sign_client_csr(csr.decode(), serial="CHAIN0001", now=datetime.now(UTC),
                               days=30)
    (tmp_path / "dev.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "dev.key").write_bytes(key_pem)
    device_ctx = build_ssl_context(pki.bundle_path, (tmp_path / "dev.pem", tmp_path / "dev.key"))
    received: list[int] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                received.append(len(_unverified_chain(tls)))
                tls.recv(1)
        peer = threading.Thread(target=serve, daemon=True)
        peer.start()
        with socket.create_connection(listener.getsockname(), timeout=30) as raw, \
                device_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert len(_unverified_chain(tls)) == 1  # the server's certificate alone
            tls.sendall(b"x")
        peer.join(30)
    assert received == [1]


def _unverified_chain(tls: ssl.SSLSocket) -> list[object]:
    """The certificates the peer sent (public from Python 3.13, on ``_sslobj`` before)."""
    chain = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    return list(chain() or [])


async def test_a_directory_with_one_ca_keeps_it(tmp_path: Path) -> None:
    _old_layout(tmp_path / "state" / "pki")
    srv = ReferenceServer(tmp_path / "state")
    await srv.start()
    try:
        pki = srv.pki
        assert not (pki.dir / "server-ca.pem").exists()
        assert pki.server_ca_cert == pki.ca_cert
        assert _certs(pki.bundle_pem) == [pki.ca_cert]
        sent = await _sent_by_server(srv.port)
        assert sent == [_certs(pki.server_cert_path.read_bytes())[0], pki.ca_cert]
    finally:
        await srv.stop()


def test_a_renewed_certificate_renews_the_chain_file(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    _old_layout(tmp_path / "pki")
    first = Pki(tmp_path / "pki", server_names=("localhost",), now=now)
    first_chain = _certs(first.server_chain_path.read_bytes())
    assert first_chain == [*_certs(first.server_cert_path.read_bytes()), first.ca_cert]
    # Another name: the certificate no longer covers it and is made again at start.
    again = Pki(tmp_path / "pki", server_names=("printer-gw.example",),
                now=now + timedelta(minutes=1))
    chain = _certs(again.server_chain_path.read_bytes())
    assert chain == [*_certs(again.server_cert_path.read_bytes()), again.ca_cert]
    assert chain[0] != first_chain[0]
    assert "printer-gw.example" in str(chain[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value)


def test_a_renewed_certificate_is_signed_by_the_server_ca(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    first = Pki(tmp_path / "pki", server_names=("localhost",), now=now)
    again = Pki(tmp_path / "pki", server_names=("printer-gw.example",),
                now=now + timedelta(minutes=1))
    assert again.server_ca_cert == first.server_ca_cert  # loaded, not made again
    cert = _certs(again.server_chain_path.read_bytes())
    assert len(cert) == 1 and cert[0].issuer == again.server_ca_cert.subject
    cert[0].verify_directly_issued_by(again.server_ca_cert)


def test_an_operators_chain_file_is_served_as_given(tmp_path: Path) -> None:
    theirs = Pki(tmp_path / "operator-ca", server_names=("localhost",), now=datetime.now(UTC))
    files = ServerTlsFiles(theirs.server_chain_path, theirs.server_key_path,
                           theirs.dir / "server-ca.pem")
    ours = Pki(tmp_path / "pki", server_names=("localhost",), now=datetime.now(UTC),
               tls_files=files)
    assert ours.server_chain_path == theirs.server_chain_path
    assert not (tmp_path / "pki" / "server-chain.pem").exists()


def test_the_ca_bundle_is_replaced_whole_never_rewritten_in_place(tmp_path: Path) -> None:
    """Each worker of ``server run --workers N`` opens the state while the others (and
    the devices' clients) may read ``bundle.pem``: a start that finds it right leaves it
    alone, and a changed bundle is a new file renamed over the old, never the old one
    truncated and written again (which a reader could see half-written)."""
    now = datetime.now(UTC)
    bundle = Pki(tmp_path / "pki", server_names=("localhost",), now=now).bundle_path
    first = bundle.stat().st_ino
    Pki(tmp_path / "pki", server_names=("localhost",), now=now)
    assert bundle.stat().st_ino == first  # unchanged: not written at all
    operator = Pki(tmp_path / "operator-ca", server_names=("localhost",), now=now)
    files = ServerTlsFiles(operator.server_chain_path, operator.server_key_path,
                           operator.dir / "server-ca.pem")
    again = Pki(tmp_path / "pki", server_names=("localhost",), now=now, tls_files=files)
    assert bundle.stat().st_ino != first  # replaced by a rename
    assert _certs(bundle.read_bytes()) == [again.ca_cert, operator.server_ca_cert]
    assert not list((tmp_path / "pki").glob(".*.tmp"))
