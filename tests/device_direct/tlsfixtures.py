"""Test helpers: certificate authorities, certificates and small TLS servers on loopback.

Certificates are made with ``cryptography`` at test time, valid around the real wall
clock, because OpenSSL checks validity against the real clock, not an injected one.
Servers are real aiohttp servers bound to 127.0.0.1 port 0; the chosen port is read
back from the runner.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ONE_DAY = timedelta(days=1)


def _now() -> datetime:
    # Certificates are checked by OpenSSL against the real clock, so tests make them
    # relative to the real clock too.
    return datetime.now(UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A certificate and its key written to disk (what ssl.load_cert_chain wants)."""

    cert: Path
    key: Path


class TestCA:
    """A throwaway certificate authority for one test."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, name: str = "Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - ONE_DAY)
            .not_valid_after(now + 365 * ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    def write_cert(self, path: Path) -> Path:
        """Write the CA certificate (a CA bundle with one entry) and return the path."""
        path.write_bytes(self.cert_pem)
        return path

    def issue_self_signed(self, directory: Path, stem: str = "self-signed") -> CertFiles:
        """Serve the CA's own certificate as a server certificate (a self-signed server)."""
        files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
        files.cert.write_bytes(self.cert_pem)
        files.key.write_bytes(_key_pem(self.key))
        return files

    def _leaf(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        not_before: datetime,
        not_after: datetime,
        server_names: tuple[str, ...] = (),
        client: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server_names:
            names: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    names.append(x509.IPAddress(IPv4Address(name)))
                except ValueError:
                    names.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server_cert(
        self,
        directory: Path,
        names: tuple[str, ...] = ("localhost",),
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        stem: str = "server",
    ) -> CertFiles:
        """A server certificate for ``names``, written as ``<stem>.crt``/``<stem>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = self._leaf(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
            key.public_key(),
            not_before=not_before or now - ONE_DAY,
            not_after=not_after or now + 30 * ONE_DAY,
            server_names=names,
        )
        files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
        files.cert.write_bytes(_pem(cert))
        files.key.write_bytes(_key_pem(key))
        return files

    def sign_csr(
        self, csr_pem: bytes, *, days: int = 365, not_after: datetime | None = None,
        serial: str | None = None,
    ) -> bytes:
        """Sign a device's CSR as a client certificate (what /dd/v1/register does).

        ``serial`` replaces the CSR's subject (a confused server's certificate)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature is not valid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("CSR key is not an EC key")
        now = _now()
        subject = csr.subject if serial is None else x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ])
        cert = self._leaf(
            subject,
            public_key,
            not_before=now - timedelta(minutes=5),
            not_after=not_after or now + days * ONE_DAY,
            client=True,
        )
        return _pem(cert)


def server_context(
    ca: TestCA | None,
    files: CertFiles,
    *,
    client_certs: ssl.VerifyMode = ssl.CERT_NONE,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A server-side SSLContext; ``ca`` verifies client certificates when asked for."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    if max_version is not None:
        # A legacy server: TLS 1.0/1.1 only. Security level 0 lets OpenSSL 3 offer them.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            # Deprecated on purpose: this is the legacy server the device must refuse.
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = max_version
    if client_certs != ssl.CERT_NONE:
        if ca is None:
            raise ValueError("verifying client certificates needs a CA")
        ctx.verify_mode = client_certs
        ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    return ctx


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server started by :func:`serve`."""

    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dd/v1"


@asynccontextmanager
async def serve(app: web.Application, ctx: ssl.SSLContext | None) -> AsyncIterator[RunningServer]:
    """Run ``app`` on 127.0.0.1, a port chosen by the OS, until the block ends."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        addresses = runner.addresses
        if not addresses:
            raise RuntimeError("test server did not bind a port")
        yield RunningServer(port=int(addresses[0][1]))
    finally:
        await runner.cleanup()


def peer_certificate(request: web.Request) -> dict[str, object] | None:
    """The verified client certificate of the connection, or None if none was sent."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    return cert or None


def expired_window() -> tuple[datetime, datetime]:
    """not_before/not_after of a certificate that expired yesterday."""
    now = _now()
    return now - 30 * ONE_DAY, now - ONE_DAY


def future_window() -> tuple[datetime, datetime]:
    """not_before/not_after of a certificate that becomes valid tomorrow."""
    now = _now()
    return now + ONE_DAY, now + 30 * ONE_DAY


class AlertingTLSServer:
    """A TLS server that, like real servers, sends its alert before closing.

    asyncio's own TLS server drops the connection without flushing the alert when a
    handshake fails, so the client sees only a reset. This one runs the handshake over
    memory BIOs and writes out whatever OpenSSL produced (the alert included) before
    closing. After a successful handshake it reads one HTTP request and answers
    ``response`` (a complete HTTP/1.1 response).
    """

    def __init__(self, ctx: ssl.SSLContext, response: bytes = b"") -> None:
        self._ctx = ctx
        self._response = response
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.handshake_errors: list[ssl.SSLError] = []
        self.port = 0

    async def __aenter__(self) -> AlertingTLSServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dd/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._ctx.wrap_bio(incoming, outgoing, server_side=True)
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                await _flush(writer, outgoing)
                data = await reader.read(65536)
                if not data:
                    return
                incoming.write(data)
            await _flush(writer, outgoing)
            request = b""
            while b"\r\n\r\n" not in request:
                try:
                    request += tls.read(65536)
                except ssl.SSLWantReadError:
                    await _flush(writer, outgoing)  # TLS 1.3 tickets, or an alert
                    data = await reader.read(65536)
                    if not data:
                        return
                    incoming.write(data)
            tls.write(self._response)
            await _flush(writer, outgoing)
        except ssl.SSLError as exc:
            self.handshake_errors.append(exc)
            await _flush(writer, outgoing)  # the alert: what a real server sends
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _flush(writer: asyncio.StreamWriter, outgoing: ssl.MemoryBIO) -> None:
    data = outgoing.read()
    if data:
        writer.write(data)
        await writer.drain()
