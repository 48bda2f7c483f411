"""The reference server's keys and certificates.

At first start the server makes, in ``<state_dir>/pki``:

- the device CA (EC P-256, ``ca.pem``), which signs devices' client certificates and is
  the one CA the server checks them against;
- the server CA (``server-ca.pem``), which signs the server certificate and is what
  devices trust (``bundle.pem``);
- a server certificate for ``localhost``, 127.0.0.1 and any configured server names;
- an Ed25519 key that signs firmware manifests.

Two CAs, as a real service has (a server certificate from one CA, device certificates
from the service's own), so that each side sends its certificate alone: OpenSSL
completes a chain it is not given from the CAs it trusts, so a server that trusted the
CA of its own certificate sent that CA too, and so did a device. Each extra certificate
is parsed by the other side on every handshake (OpenSSL 3.0's key decoding), and a
device's completed chain is verified by the device itself each time. With two CAs
neither side finds its own issuer among the CAs it trusts, and one certificate goes
each way (RFC 8446 4.4.2 lets the root be left out).

Private keys are written 0600. A later start with the same directory loads them again,
so devices registered before a restart keep working. A directory made before the server
CA existed keeps its one CA (``ca.pem`` signs the server certificate too, and goes out
after it): its devices trust that CA alone. An operator may bring their own server
certificate and key instead (``ServerTlsFiles``); the device CA is still ours, because
it signs the client certificates.

Certificate validity (not-before/not-after) is real time: OpenSSL checks it against the
system clock, whatever clock the rest of the server runs on.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.errors import ServerError

_SERVER_CERT_DAYS = 398  # the CA/Browser Forum maximum, so real TLS stacks accept it
_CA_DAYS = 3650
# A server certificate is made again at start when it has less than this left.
_RENEW_BEFORE = timedelta(days=30)
_Loaded = TypeVar("_Loaded")


class CsrError(ValueError):
    """A device's certificate signing request cannot be accepted; says why."""


@dataclass(frozen=True, slots=True)
class ServerTlsFiles:
    """Operator-given server certificate chain and key (PEM), and the CA devices trust."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None  # added to the bundle handed to devices

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file"):
            path = getattr(self, name)
            if not Path(path).is_file():
                raise ServerError(f"server TLS {name.replace('_', ' ')} not found: {path}")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ServerError(f"server TLS CA file not found: {self.ca_file}")


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, serial_number: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if serial_number is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attrs)


def _write_if_changed(path: Path, data: bytes) -> Path:
    """``path`` holding ``data``, replaced whole (never seen half-written: the workers
    of ``server run --workers N`` each open the state while the others may read it)."""
    try:
        if path.read_bytes() == data:
            return path
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _read_pem(path: Path, load: Callable[[bytes], _Loaded]) -> _Loaded:
    """``load`` of the PEM file ``path``; ServerError naming the file if it is damaged."""
    try:
        return load(path.read_bytes())
    except ValueError as exc:
        raise ServerError(f"{path} is not a usable PEM key or certificate ({exc}); restore "
                          f"it, or remove {path.parent} for a new one (every device must "
                          "then register again)") from exc


def _load_key(data: bytes) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(data, password=None)


class Pki:
    """The CA, server certificate and firmware signing key of one state directory."""

    def __init__(
        self,
        pki_dir: Path,
        *,
        server_names: tuple[str, ...],
        now: datetime,
        tls_files: ServerTlsFiles | None = None,
    ) -> None:
        self.dir = pki_dir
        try:
            pki_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(pki_dir, 0o700)
            # One CA for everything in a directory made before the server CA existed
            # (its devices trust that CA alone), and when an operator brings the server
            # certificate (the fault certificates are then ours, signed by the CA in
            # the bundle). Two in any other, new or not.
            one_ca = tls_files is not None or (
                (pki_dir / "ca.pem").exists() and not (pki_dir / "server-ca.pem").exists())
            self._ca_key, self.ca_cert = self._load_or_make_ca(
                "ca", "device-direct reference server CA", now)
            self._server_ca_key, self.server_ca_cert = (
                (self._ca_key, self.ca_cert) if one_ca else self._load_or_make_ca(
                    "server-ca", "device-direct reference server TLS CA", now))
            self.firmware_key = self._load_or_make_firmware_key()
            if tls_files is None:
                self.server_cert_path, self.server_key_path = self._load_or_make_server_cert(
                    server_names, now
                )
                # With one CA, the chain as a file (certificate, then CA): given no
                # chain, OpenSSL would build it for every handshake from the verify
                # store, verifying the server's own certificate each time. With two,
                # the certificate alone: the verify store holds the device CA only, so
                # OpenSSL finds nothing to add.
                self.server_chain_path = (_write_if_changed(
                    pki_dir / "server-chain.pem", self.server_cert_path.read_bytes()
                    + self.ca_cert.public_bytes(serialization.Encoding.PEM))
                    if one_ca else self.server_cert_path)
                extra_ca = b""
            else:
                self.server_cert_path = Path(tls_files.cert_file)
                self.server_chain_path = self.server_cert_path  # the operator's chain
                self.server_key_path = Path(tls_files.key_file)
                extra_ca = Path(tls_files.ca_file).read_bytes() if tls_files.ca_file else b""
            # Read by every worker and by the devices' clients while a worker starts.
            self.bundle_path = _write_if_changed(
                pki_dir / "bundle.pem",
                self.server_ca_cert.public_bytes(serialization.Encoding.PEM) + extra_ca)
        except OSError as exc:
            raise ServerError(f"cannot use PKI directory {pki_dir}: {exc}") from exc

    # -- first start / restart ----------------------------------------------------------

    def _load_or_make_ca(
        self, stem: str, common_name: str, now: datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path, cert_path = self.dir / f"{stem}.key", self.dir / f"{stem}.pem"
        if key_path.exists() and cert_path.exists():
            key = _read_pem(key_path, _load_key)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ServerError(f"{key_path} is not an EC private key")
            return key, _read_pem(cert_path, x509.load_pem_x509_certificate)
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def _load_or_make_firmware_key(self) -> ed25519.Ed25519PrivateKey:
        path = self.dir / "firmware-signing.key"
        if path.exists():
            key = _read_pem(path, _load_key)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ServerError(f"{path} is not an Ed25519 private key")
            return key
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(path, _key_pem(key))
        return key

    def _load_or_make_server_cert(
        self, server_names: tuple[str, ...], now: datetime
    ) -> tuple[Path, Path]:
        cert_path, key_path = self.dir / "server.pem", self.dir / "server.key"
        if cert_path.exists() and key_path.exists():
            cert = _read_pem(cert_path, x509.load_pem_x509_certificate)
            if _covers(cert, server_names) and cert.not_valid_after_utc - now > _RENEW_BEFORE:
                return cert_path, key_path
        cert_pem, key_pem = self.make_server_cert(server_names, now=now)
        _write_private(key_path, key_pem)
        cert_path.write_bytes(cert_pem)
        return cert_path, key_path

    # -- issuing ------------------------------------------------------------------------

    def make_server_cert(
        self,
        server_names: tuple[str, ...],
        *,
        now: datetime,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        include_loopback: bool = True,
    ) -> tuple[bytes, bytes]:
        """A server certificate (PEM chain, PEM key) for ``server_names`` + 127.0.0.1.

        ``not_before``/``not_after`` let QA make a deliberately expired certificate, and
        ``include_loopback=False`` one that fits no name a local device uses.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for n in dict.fromkeys(server_names):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                names.append(x509.DNSName(n))
        if include_loopback:
            names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(server_names[0] if server_names else "localhost"))
            .issuer_name(self.server_ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=_SERVER_CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(_aki(self.server_ca_cert), critical=False)
            .sign(self._server_ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def sign_client_csr(
        self, csr_pem: str, *, serial: str, now: datetime, days: int
    ) -> x509.Certificate:
        """Check a device CSR (EC P-256, self-signature) and issue its client certificate.

        The subject is ours, not the CSR's: CN and serialNumber are the device serial the
        registration was accepted for.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise CsrError(f"not a PEM certificate signing request: {exc}") from exc
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise CsrError("the CSR key must be EC P-256 (secp256r1)")
        try:
            if not csr.is_signature_valid:
                raise CsrError("the CSR signature does not verify")
        except InvalidSignature as exc:  # some backends raise instead of returning False
            raise CsrError("the CSR signature does not verify") from exc
        return (
            x509.CertificateBuilder()
            .subject_name(_name(serial, serial))
            .issuer_name(self.ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(_aki(self.ca_cert), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )

    # -- exported values ----------------------------------------------------------------

    @property
    def bundle_pem(self) -> bytes:
        return self.bundle_path.read_bytes()

    @property
    def firmware_public_key_pem(self) -> bytes:
        return self.firmware_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _covers(cert: x509.Certificate, server_names: tuple[str, ...]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return all(n in have for n in server_names)


def serial_hex(serial_number: int) -> str:
    """The form certificate serial numbers are stored and compared in (upper-case hex)."""
    return format(serial_number, "X")


def der_serial_number(der: bytes) -> int:
    """The serial number of a DER X.509 certificate, read from its first two fields.

    ``Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] EXPLICIT version
    OPTIONAL, serialNumber INTEGER, ... }, ... }`` (RFC 5280, 4.1). Meant for a
    certificate OpenSSL has already parsed and verified (a peer's, after the handshake):
    reading three headers costs a few microseconds where ``getpeercert()`` decodes the
    whole certificate to a dict. Raises ValueError when ``der`` does not start so.
    """
    def content(at: int, tag: int) -> tuple[int, int]:
        """Where the content of the TLV at ``at`` (which must be ``tag``) starts, and
        its length (DER: definite lengths only)."""
        if der[at] != tag:
            raise ValueError(f"DER tag {der[at]:#04x} at {at}, expected {tag:#04x}")
        first = der[at + 1]
        if first < 0x80:
            return at + 2, first
        size = first & 0x7F
        if not 1 <= size <= 4 or at + 2 + size > len(der):
            raise ValueError(f"bad DER length at {at}")
        return at + 2 + size, int.from_bytes(der[at + 2: at + 2 + size], "big")

    try:
        at, _ = content(0, 0x30)  # Certificate
        at, _ = content(at, 0x30)  # tbsCertificate
        if der[at] == 0xA0:  # version (absent in v1 certificates)
            start, length = content(at, 0xA0)
            at = start + length
        start, length = content(at, 0x02)  # serialNumber
    except IndexError:
        raise ValueError("DER certificate is truncated") from None
    if not 1 <= length <= 21 or start + length > len(der):  # RFC 5280: at most 20 octets
        raise ValueError(f"bad DER serial number length {length}")
    return int.from_bytes(der[start: start + length], "big", signed=True)


def make_csr(serial: str) -> tuple[bytes, bytes]:
    """A device-style key and CSR (PEM key, PEM CSR): for tests, the bench and the CLI."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(serial, serial))
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def utc(dt: datetime) -> datetime:
    """``dt`` as aware UTC (naive values from old APIs are taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
