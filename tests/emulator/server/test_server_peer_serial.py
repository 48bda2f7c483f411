"""The client certificate's serial, read from its DER (pki.der_serial_number).

The server reads it from the first fields of the DER OpenSSL hands over after the
handshake instead of decoding the whole certificate; it must be the number
``cryptography`` reads, for every size of serial, and a DER cut short is refused.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.server.pki import der_serial_number

KEY = ec.generate_private_key(ec.SECP256R1())
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EMU-1")])
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def _der(serial: int) -> bytes:
    cert = (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME)
            .public_key(KEY.public_key()).serial_number(serial)
            .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .sign(KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


SERIALS = [1, 127, 128, 255, 256, 65535, 2**63, 2**159 - 1,
           *(x509.random_serial_number() for _ in range(8))]


@pytest.mark.parametrize("serial", SERIALS, ids=hex)
def test_the_serial_is_the_one_cryptography_reads(serial: int) -> None:
    der = _der(serial)
    assert der_serial_number(der) == serial == x509.load_der_x509_certificate(
        der).serial_number


def test_a_der_cut_short_is_refused_or_still_read_right() -> None:
    der = _der(x509.random_serial_number())
    serial = x509.load_der_x509_certificate(der).serial_number
    read = 0
    for cut in range(len(der)):
        with contextlib.suppress(ValueError):
            assert der_serial_number(der[:cut]) == serial  # the serial was whole
            read += 1
    assert read > 0
    for junk in (b"", b"\x30", b"\x31\x03\x02\x01\x01", b"\x30\x85\x00\x00\x00\x00\x10",
                 b"\x30\x03\x30\x01\x04"):
        with pytest.raises(ValueError):
            der_serial_number(junk)
