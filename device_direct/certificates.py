"""The device key, its CSRs and the certificates: everything that needs cryptography.

:mod:`device_direct.identity` imports this module only when it makes or reads a key or
a certificate (registration, renewal, a first boot after an update), not on an ordinary
boot: ``cryptography.x509`` and the key loaders bring cryptography's Rust bindings,
several MiB and tens of milliseconds that an idle, registered agent does not need.

Parsing errors come out as ``ValueError`` (what cryptography raises); the identity
store turns them into errors naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DeviceKey = ec.EllipticCurvePrivateKey
Certificate = x509.Certificate


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the identity store keeps of a client certificate."""

    subject_cn: str | None  # None unless exactly one string common name
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str  # SHA-256 of the DER encoding, lower-case hex

    def __post_init__(self) -> None:
        if self.not_before.tzinfo is None or self.not_after.tzinfo is None:
            raise ValueError("certificate validity times must be aware datetimes")


def new_key() -> DeviceKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: DeviceKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(data: bytes) -> DeviceKey:
    """The EC P-256 private key in PEM ``data``; ValueError if it is not one."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a readable private key (corrupt file): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("the device key must be an EC P-256 key")
    return key


def csr_pem(key: DeviceKey, serial: str) -> str:
    """A PEM CSR for ``key`` whose subject is CN=serial, serialNumber=serial."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(data: bytes) -> Certificate:
    """The certificate in PEM ``data``; ValueError if it is not one."""
    return x509.load_pem_x509_certificate(data)


def certificate_pem(cert: Certificate) -> bytes:
    """``cert`` as PEM (what the store writes)."""
    return cert.public_bytes(serialization.Encoding.PEM)


def same_key(cert: Certificate, key: DeviceKey) -> bool:
    """Whether ``cert`` certifies the public half of ``key``."""
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        cert.public_key().public_bytes(serialization.Encoding.DER, public)
        == key.public_key().public_bytes(serialization.Encoding.DER, public)
    )


def facts(cert: Certificate) -> CertificateFacts:
    """Subject common name, validity and fingerprint of ``cert``."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = values[0].value if len(values) == 1 and isinstance(values[0].value, str) else None
    return CertificateFacts(
        subject_cn=cn,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(
            cert.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
    )
