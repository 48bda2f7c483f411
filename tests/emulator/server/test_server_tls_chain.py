"""The server hands OpenSSL its certificate chain as a file (its certificate, then its
CA), so OpenSSL does not rebuild the chain by verifying the server's own certificate on
every handshake. What a client receives is what it was before: the two certificates, in
that order, seen here by ``openssl s_client`` (Debian); a renewed certificate renews the
chain file; an operator's chain file is served as given."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from emulator.server import ReferenceServer
from emulator.server.pki import Pki, ServerTlsFiles

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _certs(pem: bytes) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(block) for block in _PEM.findall(pem)]


async def test_a_client_receives_the_certificate_then_the_ca(
        server: ReferenceServer) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl (Debian package openssl) is needed: run `make debs`")
    proc = await asyncio.create_subprocess_exec(
        openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername",
        "localhost", "-showcerts", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(b""), 60)
    sent = _certs(out)
    pki = server.pki
    assert sent == [_certs(pki.server_cert_path.read_bytes())[0], pki.ca_cert], out.decode()


def test_a_renewed_certificate_renews_the_chain_file(tmp_path: Path) -> None:
    now = datetime.now(UTC)
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


def test_an_operators_chain_file_is_served_as_given(tmp_path: Path) -> None:
    theirs = Pki(tmp_path / "operator-ca", server_names=("localhost",), now=datetime.now(UTC))
    files = ServerTlsFiles(theirs.server_chain_path, theirs.server_key_path,
                           theirs.dir / "ca.pem")
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
                           operator.dir / "ca.pem")
    again = Pki(tmp_path / "pki", server_names=("localhost",), now=now, tls_files=files)
    assert bundle.stat().st_ino != first  # replaced by a rename
    assert _certs(bundle.read_bytes()) == [again.ca_cert, operator.ca_cert]
    assert not list((tmp_path / "pki").glob(".*.tmp"))
