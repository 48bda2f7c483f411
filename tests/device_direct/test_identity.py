"""The device identity store: key, CSR, certificate, restart, renewal, corruption."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsfixtures import TestCA

from device_direct import certificates
from device_direct import identity as identity_module
from device_direct.errors import AuthError, RemoteProtocolError, StorageError
from device_direct.identity import (
    CERT_FILE,
    KEY_FILE,
    PENDING_KEY_FILE,
    STATE_FILE,
    IdentityStore,
    Registration,
    validate_serial,
)

SERIAL = "XRX-3345ABC"
# X.520 PrintableString without the space.
PRINTABLE = string.ascii_letters + string.digits + "'()+,-./:=?"


def _register(store: IdentityStore, ca: TestCA, device_id: str = "dev-1") -> Registration:
    csr = store.create_csr(SERIAL)
    cert = ca.sign_csr(csr.encode())
    return store.store_registration(device_id, cert.decode(), ca.cert_pem.decode())


def test_key_is_ec_p256_mode_0600_and_csr_names_the_serial(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "id")
    csr = x509.load_pem_x509_csr(store.create_csr(SERIAL).encode())

    assert csr.is_signature_valid
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert not store.is_registered
    # No temporary files left behind by the atomic write.
    assert sorted(p.name for p in store.directory.iterdir()) == [KEY_FILE]


def test_the_key_is_made_once_and_reused(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    first = x509.load_pem_x509_csr(store.create_csr(SERIAL).encode()).public_key()
    second = x509.load_pem_x509_csr(store.create_csr(SERIAL).encode()).public_key()
    reopened = IdentityStore(tmp_path).create_csr(SERIAL)
    third = x509.load_pem_x509_csr(reopened.encode()).public_key()
    assert first == second == third


def test_registration_survives_a_restart(tmp_path: Path) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    reg = _register(store, ca)

    again = IdentityStore(tmp_path)
    assert again.registration == reg
    assert again.device_id == "dev-1"
    assert again.client_cert_files() == (tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reg.serial == SERIAL
    assert reg.not_after > datetime.now(UTC) + timedelta(days=300)


def test_needs_renewal_uses_the_given_time_and_margin(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    reg = _register(store, TestCA())
    end = reg.not_after
    assert not store.needs_renewal(end - timedelta(days=31))
    assert store.needs_renewal(end - timedelta(days=30))
    assert store.needs_renewal(end + timedelta(days=1))
    assert not store.needs_renewal(end - timedelta(days=2), margin=timedelta(days=1))
    with pytest.raises(ValueError, match="aware"):
        store.needs_renewal(datetime(2026, 1, 1))


def test_needs_renewal_before_registration_says_register_first(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="not registered"):
        IdentityStore(tmp_path).needs_renewal(datetime.now(UTC))


def test_a_certificate_for_another_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    store.create_csr(SERIAL)
    stranger = IdentityStore(tmp_path / "other").create_csr(SERIAL)
    cert = ca.sign_csr(stranger.encode())
    with pytest.raises(RemoteProtocolError, match="not for this device's key"):
        store.store_registration("dev-1", cert.decode(), ca.cert_pem.decode())
    assert not store.is_registered
    assert not (tmp_path / CERT_FILE).exists()


def test_garbage_from_the_server_is_refused(tmp_path: Path) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    cert = ca.sign_csr(store.create_csr(SERIAL).encode()).decode()
    with pytest.raises(RemoteProtocolError, match="not a PEM certificate"):
        store.store_registration("dev-1", "hello", ca.cert_pem.decode())
    with pytest.raises(RemoteProtocolError, match="CA certificate is not a PEM"):
        store.store_registration("dev-1", cert, "hello")
    with pytest.raises(RemoteProtocolError, match="bad device id"):
        store.store_registration("../../etc", cert, ca.cert_pem.decode())


def test_renewal_swaps_key_and_certificate(tmp_path: Path) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    old = _register(store, ca)
    old_key = store.key_path.read_bytes()

    csr = store.create_renewal_csr(SERIAL)
    # Until the new certificate arrives, the old identity stays in force.
    assert store.key_path.read_bytes() == old_key
    assert IdentityStore(tmp_path).registration == old

    new = store.store_registration(
        "dev-1", ca.sign_csr(csr.encode()).decode(), ca.cert_pem.decode()
    )
    assert new.fingerprint_sha256 != old.fingerprint_sha256
    assert store.key_path.read_bytes() != old_key
    assert not store.pending_key_path.exists()
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert IdentityStore(tmp_path).registration == new


def test_power_loss_between_certificate_and_key_promotion_is_finished_on_load(
    tmp_path: Path,
) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    _register(store, ca)
    csr = store.create_renewal_csr(SERIAL)
    new_cert = ca.sign_csr(csr.encode())
    # Simulate the crash: the certificate is written, the pending key not yet renamed.
    (tmp_path / CERT_FILE).write_bytes(new_cert)

    reopened = IdentityStore(tmp_path)
    assert reopened.is_registered
    assert not (tmp_path / PENDING_KEY_FILE).exists()
    cert = x509.load_pem_x509_certificate(new_cert)
    expected = x509.load_pem_x509_csr(csr.encode()).public_key()
    assert cert.public_key() == expected


def test_a_certificate_matching_no_key_is_an_auth_error_naming_the_file(tmp_path: Path) -> None:
    ca = TestCA()
    _register(IdentityStore(tmp_path), ca)
    other = ca.sign_csr(IdentityStore(tmp_path / "x").create_csr(SERIAL).encode())
    (tmp_path / CERT_FILE).write_bytes(other)
    with pytest.raises(AuthError, match=CERT_FILE):
        IdentityStore(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (KEY_FILE, b"-----BEGIN PRIVATE KEY-----\nnope\n", "not a readable private key"),
        (CERT_FILE, b"\x00\x01garbage", "not a readable certificate"),
        (STATE_FILE, b"{not json", "not valid JSON"),
        (STATE_FILE, b'{"device_id": 5, "serial": "x"}', "device_id"),
        (STATE_FILE, b'{"device_id": "a/b", "serial": "x"}', "device id"),
    ],
)
def test_corrupt_files_raise_storage_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    _register(IdentityStore(tmp_path), TestCA())
    (tmp_path / name).write_bytes(content)
    with pytest.raises(StorageError, match=message) as info:
        IdentityStore(tmp_path)
    assert name in str(info.value)


def test_a_loose_key_mode_is_tightened_on_load(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.create_csr(SERIAL)
    os.chmod(store.key_path, 0o644)
    IdentityStore(tmp_path)
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600


def test_clear_registration_keeps_the_key(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    _register(store, TestCA())
    key = store.key_path.read_bytes()
    store.clear_registration()
    assert not store.is_registered
    assert not IdentityStore(tmp_path).is_registered
    assert store.key_path.read_bytes() == key
    with pytest.raises(AuthError, match="not registered"):
        store.client_cert_files()


def test_registration_value_is_validated() -> None:
    now = datetime.now(UTC)
    good = {
        "device_id": "dev-1",
        "serial": SERIAL,
        "not_before": now,
        "not_after": now + timedelta(days=1),
        "fingerprint_sha256": "0" * 64,
    }
    Registration(**good)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not after"):
        Registration(**{**good, "not_after": now})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        Registration(**{**good, "not_before": datetime(2026, 1, 1)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device id"):
        Registration(**{**good, "device_id": ""})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fingerprint"):
        Registration(**{**good, "fingerprint_sha256": "xyz"})  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_serial_validation_accepts_exactly_printablestring_up_to_64(serial: str) -> None:
    ok = 1 <= len(serial) <= 64 and all(c in PRINTABLE for c in serial)
    if ok:
        assert validate_serial(serial) == serial
    else:
        with pytest.raises(ValueError, match="serial"):
            validate_serial(serial)


@settings(max_examples=15, deadline=None)
@given(st.text(alphabet=PRINTABLE, min_size=1, max_size=64))
def test_any_valid_serial_round_trips_through_csr_and_certificate(
    tmp_path_factory: pytest.TempPathFactory, serial: str
) -> None:
    directory = tmp_path_factory.mktemp("id")
    ca = TestCA()
    store = IdentityStore(directory)
    cert = ca.sign_csr(store.create_csr(serial).encode())
    reg = store.store_registration("dev-1", cert.decode(), ca.cert_pem.decode())
    assert reg.serial == serial
    assert IdentityStore(directory).registration == reg


@pytest.mark.parametrize("serial", ["ABC\n", "", "A B", "é", "x" * 65, "a;b"])
def test_bad_serials_are_refused_by_name(tmp_path: Path, serial: str) -> None:
    with pytest.raises(ValueError, match="serial must be"):
        IdentityStore(tmp_path).create_csr(serial)


# -- booting without cryptography -----------------------------------------------------------


class ParseCounter:
    """Counts what the store parses, through device_direct.certificates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys = 0
        self.certificates = 0
        real_key, real_cert = certificates.load_key, certificates.load_certificate

        def load_key(data: bytes) -> certificates.DeviceKey:
            self.keys += 1
            return real_key(data)

        def load_certificate(data: bytes) -> certificates.Certificate:
            self.certificates += 1
            return real_cert(data)

        monkeypatch.setattr(certificates, "load_key", load_key)
        monkeypatch.setattr(certificates, "load_certificate", load_certificate)


def _state(directory: Path) -> dict[str, str]:
    state: dict[str, str] = json.loads((directory / STATE_FILE).read_bytes())
    return state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_identity_json_records_the_certificate_facts_and_file_digests(tmp_path: Path) -> None:
    reg = _register(IdentityStore(tmp_path), TestCA())
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    assert _state(tmp_path) == {
        "device_id": "dev-1",
        "serial": SERIAL,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "fingerprint_sha256": reg.fingerprint_sha256,
        "certificate_sha256": _sha256(tmp_path / CERT_FILE),
        "key_sha256": _sha256(tmp_path / KEY_FILE),
    }
    assert reg.fingerprint_sha256 == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_a_boot_finds_the_recorded_files_and_parses_the_key_only_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = _register(IdentityStore(tmp_path), TestCA())
    parsed = ParseCounter(monkeypatch)
    os.chmod(tmp_path / KEY_FILE, 0o644)

    store = IdentityStore(tmp_path)
    assert store.registration == reg
    assert (parsed.keys, parsed.certificates) == (0, 0)
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600  # still tightened

    # The key is read when a CSR needs it: the same key, not a new one.
    csr = x509.load_pem_x509_csr(store.create_csr(SERIAL).encode())
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    assert csr.public_key() == cert.public_key()
    assert parsed.keys == 1


def test_a_state_file_without_the_facts_is_read_by_parsing_then_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = _register(IdentityStore(tmp_path), TestCA())
    (tmp_path / STATE_FILE).write_text(json.dumps({"device_id": "dev-1", "serial": SERIAL}))
    parsed = ParseCounter(monkeypatch)

    assert IdentityStore(tmp_path).registration == reg
    assert parsed.certificates == 1
    assert _state(tmp_path)["certificate_sha256"] == _sha256(tmp_path / CERT_FILE)
    assert _state(tmp_path)["key_sha256"] == _sha256(tmp_path / KEY_FILE)
    assert IdentityStore(tmp_path).registration == reg
    assert parsed.certificates == 1  # the second boot parsed nothing


def test_power_loss_before_the_renewed_key_is_promoted_is_finished_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    _register(store, ca)
    cert = ca.sign_csr(store.create_renewal_csr(SERIAL).encode()).decode()
    pending = store.pending_key_path.read_bytes()

    def power_cut(self: IdentityStore) -> None:
        raise KeyboardInterrupt("power cut")

    with monkeypatch.context() as m:
        m.setattr(IdentityStore, "_promote_pending_key", power_cut)
        with pytest.raises(KeyboardInterrupt):
            store.store_registration("dev-1", cert, ca.cert_pem.decode())
    parsed = ParseCounter(monkeypatch)

    reopened = IdentityStore(tmp_path)
    assert reopened.registration is not None
    assert reopened.registration.fingerprint_sha256 == _state(tmp_path)["fingerprint_sha256"]
    assert (tmp_path / KEY_FILE).read_bytes() == pending
    assert not (tmp_path / PENDING_KEY_FILE).exists()
    assert (parsed.keys, parsed.certificates) == (0, 0)


def test_power_loss_between_state_and_certificate_keeps_the_old_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = TestCA()
    store = IdentityStore(tmp_path)
    old = _register(store, ca)
    cert = ca.sign_csr(store.create_renewal_csr(SERIAL).encode()).decode()
    real_write = identity_module._atomic_write

    def write(path: Path, data: bytes, mode: int) -> None:
        if path.name == CERT_FILE:
            raise KeyboardInterrupt("power cut")
        real_write(path, data, mode)

    with monkeypatch.context() as m:
        m.setattr(identity_module, "_atomic_write", write)
        with pytest.raises(KeyboardInterrupt):
            store.store_registration("dev-1", cert, ca.cert_pem.decode())

    # identity.json describes the new certificate, the disk holds the old one: the
    # digests disagree, so the files are parsed and the old identity stays in force.
    reopened = IdentityStore(tmp_path)
    assert reopened.registration == old
    assert _state(tmp_path)["certificate_sha256"] == _sha256(tmp_path / CERT_FILE)
    assert (tmp_path / PENDING_KEY_FILE).exists()  # the renewal can be tried again


def test_a_replaced_key_file_is_caught_on_load(tmp_path: Path) -> None:
    _register(IdentityStore(tmp_path), TestCA())
    IdentityStore(tmp_path / "other").create_csr(SERIAL)
    (tmp_path / KEY_FILE).write_bytes((tmp_path / "other" / KEY_FILE).read_bytes())
    with pytest.raises(AuthError, match=CERT_FILE):
        IdentityStore(tmp_path)
