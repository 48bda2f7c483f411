"""The device's identity: its private key, its client certificate and its device id.

Everything lives in one directory of the device's non-volatile storage:

``key.pem``          EC P-256 private key made on the device (mode 0600). It never
                     leaves the device: only CSRs and file paths for the TLS stack are
                     handed out.
``pending-key.pem``  a fresh key whose CSR is out for renewal (mode 0600).
``certificate.pem``  the client certificate the server signed.
``ca.pem``           the CA certificate the server returned with it.
``identity.json``    ``{"device_id", "serial", "not_before", "not_after",
                     "fingerprint_sha256", "certificate_sha256", "key_sha256"}``: the
                     certificate's facts, and the SHA-256 of the certificate file and
                     of the key file it certifies.

Every file is written atomically (temporary file, fsync, rename, fsync of the
directory), so power loss leaves either the old or the new file, never half of one.

Theory of operation for renewal: :meth:`IdentityStore.create_renewal_csr` makes
``pending-key.pem`` and a CSR for it; :meth:`IdentityStore.store_registration` with the
new certificate writes ``certificate.pem`` and then renames the pending key over
``key.pem``. Power loss between those two steps leaves a certificate that matches the
pending key; loading finishes the rename. Until the new certificate arrives, the old
key and certificate stay in use.

Loading without cryptography: parsing a key or a certificate loads cryptography's Rust
bindings (several MiB, tens of milliseconds), which an ordinary boot does not need. So
``identity.json`` records the certificate's facts and the digests of the two files, and
a boot whose files have exactly those digests takes the facts from there; the key is
read when it is first used (a CSR, storing a certificate). Any other case (a state file
from before these fields, a digest that does not match: power loss between two writes,
a corrupt or replaced file) is settled by parsing the files, with the same checks and
errors as always; a successful parse then records the digests for the next boot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import ssl
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_direct.durable import atomic_write, fsync_dir
from device_direct.errors import AuthError, RemoteProtocolError, StorageError

if TYPE_CHECKING:
    # At run time device_direct.certificates (cryptography) is imported where a key or
    # a certificate is made or parsed; see "Loading without cryptography" above.
    from device_direct.certificates import Certificate, CertificateFacts, DeviceKey
    from device_direct.tls_bundled import BundledContext

RENEWAL_MARGIN = timedelta(days=30)

KEY_FILE = "key.pem"
PENDING_KEY_FILE = "pending-key.pem"
CERT_FILE = "certificate.pem"
CA_FILE = "ca.pem"
STATE_FILE = "identity.json"
# identity.json keys that let a boot skip parsing the certificate and the key.
_RECORDED = ("not_before", "not_after", "fingerprint_sha256", "certificate_sha256",
             "key_sha256")

# The X.520 serialNumber attribute is a PrintableString of at most 64 characters, so a
# serial is limited to that alphabet (without the space, which logs and URLs mangle).
_SERIAL = re.compile(r"^[A-Za-z0-9'()+,\-./:=?]{1,64}$")
# The device id goes into URL paths; keep it to characters that need no quoting.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_serial(serial: str) -> str:
    """Return ``serial`` if it can go into a certificate subject, else raise ValueError."""
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise ValueError(
            "serial must be 1-64 characters of letters, digits and ' ( ) + , - . / : = ? "
            f"(X.520 PrintableString), got {serial!r}"
        )
    return serial


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is safe in a URL path, else raise ValueError."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise ValueError(
            "device id must be 1-128 characters of letters, digits and . _ : - "
            f"(starting with a letter or digit), got {device_id!r}"
        )
    return device_id


@dataclass(frozen=True, slots=True)
class Registration:
    """What registration gave the device: its id and the validity of its certificate."""

    device_id: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        validate_serial(self.serial)
        for name in ("not_before", "not_after"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"Registration.{name} must be an aware datetime")
        if self.not_after <= self.not_before:
            raise ValueError(
                f"certificate not_after {self.not_after.isoformat()} is not after "
                f"not_before {self.not_before.isoformat()}"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", self.fingerprint_sha256):
            raise ValueError("fingerprint_sha256 must be 64 lower-case hex digits")

    def needs_renewal(self, now: datetime, margin: timedelta = RENEWAL_MARGIN) -> bool:
        """True once ``now`` is within ``margin`` of the certificate's expiry."""
        if now.tzinfo is None:
            raise ValueError("needs_renewal needs an aware datetime")
        if margin < timedelta(0):
            raise ValueError(f"renewal margin must not be negative, got {margin}")
        return now >= self.not_after - margin


class IdentityStore:
    """The device's key, certificate and device id in ``directory``.

    Constructing the store loads what is there (and finishes an interrupted renewal);
    corrupt files raise :class:`StorageError` naming the file, a certificate that does
    not belong to the device key raises :class:`AuthError`.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{self.directory}: cannot create identity directory: {exc}"
            ) from exc
        self._key: DeviceKey | None = None
        # True when key.pem holds the device key but it has not been parsed yet.
        self._key_unread = False
        self._registration: Registration | None = None
        # The agent's TLS context, cached by the transport: (cache key, context).
        self.ssl_context: tuple[object, ssl.SSLContext | BundledContext] | None = None
        self._load()

    # -- paths -----------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def pending_key_path(self) -> Path:
        return self.directory / PENDING_KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    # -- reading ---------------------------------------------------------------------------

    @property
    def registration(self) -> Registration | None:
        """The current registration, or None before the device registered."""
        return self._registration

    @property
    def is_registered(self) -> bool:
        return self._registration is not None

    @property
    def device_id(self) -> str | None:
        return self._registration.device_id if self._registration else None

    def client_cert_files(self) -> tuple[Path, Path]:
        """(certificate, key) paths for ``SSLContext.load_cert_chain``."""
        if self._registration is None:
            raise AuthError("the device is not registered yet: it has no client certificate")
        return self.cert_path, self.key_path

    def needs_renewal(self, now: datetime, margin: timedelta = RENEWAL_MARGIN) -> bool:
        """True once ``now`` is within ``margin`` of the client certificate's expiry."""
        if self._registration is None:
            raise AuthError("the device is not registered: register it before renewing")
        return self._registration.needs_renewal(now, margin)

    # -- making requests -------------------------------------------------------------------

    def create_csr(self, serial: str) -> str:
        """A PEM CSR for the device key (made now if the device has none yet)."""
        from device_direct import certificates

        validate_serial(serial)
        key = self._device_key()
        if key is None:
            key = certificates.new_key()
            _atomic_write(self.key_path, certificates.key_pem(key), 0o600)
            self._key = key
        return certificates.csr_pem(key, serial)

    def create_renewal_csr(self, serial: str) -> str:
        """A PEM CSR for a fresh key; the current key stays in use until it is signed."""
        from device_direct import certificates

        validate_serial(serial)
        if self._registration is None:
            raise AuthError("the device is not registered: register it before renewing")
        key = certificates.new_key()
        _atomic_write(self.pending_key_path, certificates.key_pem(key), 0o600)
        return certificates.csr_pem(key, serial)

    # -- storing results -------------------------------------------------------------------

    def store_registration(
        self, device_id: str, certificate_pem: str, ca_certificate_pem: str,
        *, serial: str | None = None,
    ) -> Registration:
        """Persist what the server returned for a registration or renewal.

        The certificate must be for the device key or for the pending renewal key, and
        name ``serial`` (the serial the CSR asked for) when it is given; anything else
        came from a confused or hostile server and raises :class:`RemoteProtocolError`
        (nothing is written then).
        """
        from device_direct import certificates

        try:
            validate_device_id(device_id)
        except ValueError as exc:
            raise RemoteProtocolError(f"server returned a bad device id: {exc}") from exc
        cert = _parse_cert(certificate_pem.encode(), "the server's certificate")
        ca = _parse_cert(ca_certificate_pem.encode(), "the server's CA certificate")
        del ca  # parsed only to reject garbage before anything is written
        facts = certificates.facts(cert)
        common_name = _usable_serial(facts.subject_cn)
        if common_name is None:
            raise RemoteProtocolError("the server's certificate has no usable subject CN")
        if serial is not None and common_name != serial:
            raise RemoteProtocolError(
                f"the server's certificate is for serial {common_name!r}, not this "
                f"device's {serial!r}")

        pending = (
            self._read_key_file(self.pending_key_path) if self.pending_key_path.exists() else None
        )
        if pending is not None and certificates.same_key(cert, pending[0]):
            new_key: DeviceKey | None = pending[0]
            key_data = pending[1]
        elif (current := self._device_key()) is not None and certificates.same_key(cert, current):
            new_key = None
            key_data = _read_bytes(self.key_path)
        else:
            raise RemoteProtocolError(
                "the server's certificate is not for this device's key (not our CSR)"
            )

        registration = _registration(facts, device_id, common_name)
        cert_pem = certificates.certificate_pem(cert)
        _atomic_write(self.ca_path, ca_certificate_pem.encode(), 0o644)
        _atomic_write(
            self.state_path, _state_json(registration, cert_pem, key_data), 0o644
        )
        _atomic_write(self.cert_path, cert_pem, 0o644)
        if new_key is not None:
            self._promote_pending_key()
            self._key = new_key
        self._registration = registration
        return registration

    def clear_registration(self) -> None:
        """Forget the certificate and device id (the server disowned them); keep the key."""
        for path in (self.cert_path, self.state_path, self.ca_path, self.pending_key_path):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"{path}: cannot delete: {exc}") from exc
        _fsync_dir(self.directory)
        self._registration = None

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self.cert_path.exists() and self._load_recorded():
            return
        self._load_parsed()

    def _load_recorded(self) -> bool:
        """Load from identity.json's facts if both files are the ones it records.

        Returns False (having changed nothing) when that cannot be confirmed."""
        state = self._recorded_state()
        if state is None or _digest(self.cert_path) != state["certificate_sha256"]:
            return False
        if _digest(self.key_path) == state["key_sha256"]:
            promote = False
        elif _digest(self.pending_key_path) == state["key_sha256"]:
            promote = True  # power went off between writing the certificate and this
        else:
            return False
        try:
            registration = Registration(
                device_id=state["device_id"],
                serial=state["serial"],
                not_before=datetime.fromisoformat(state["not_before"]),
                not_after=datetime.fromisoformat(state["not_after"]),
                fingerprint_sha256=state["fingerprint_sha256"],
            )
        except ValueError:
            return False
        if promote:
            self._promote_pending_key()
        _tighten_mode(self.key_path)
        self._key_unread = True
        self._registration = registration
        return True

    def _load_parsed(self) -> None:
        """Load by parsing the key and the certificate (checks every file's content)."""
        if self.key_path.exists():
            self._key = self._read_key(self.key_path)
        if not self.cert_path.exists():
            return
        from device_direct import certificates

        cert_data = _read_bytes(self.cert_path)
        try:
            cert = certificates.load_certificate(cert_data)
        except ValueError as exc:
            raise StorageError(
                f"{self.cert_path}: not a readable certificate (corrupt file): {exc}"
            ) from exc
        if self._key is None or not certificates.same_key(cert, self._key):
            pending = (
                self._read_key(self.pending_key_path) if self.pending_key_path.exists() else None
            )
            if pending is None or not certificates.same_key(cert, pending):
                raise AuthError(
                    f"{self.cert_path}: the client certificate does not match the device key "
                    f"{self.key_path}; clear the registration and register again"
                )
            # Power went off between writing the certificate and promoting its key.
            self._promote_pending_key()
            self._key = pending
        state = self._read_state()
        try:
            registration = _registration(
                certificates.facts(cert), state["device_id"], state["serial"]
            )
        except ValueError as exc:
            raise StorageError(f"{self.state_path}: {exc}") from exc
        self._registration = registration
        # Record the digests, so that the next boot needs no parsing. Best effort: a
        # store that cannot be written still boots, it just parses again next time.
        with contextlib.suppress(StorageError):
            _atomic_write(
                self.state_path,
                _state_json(registration, cert_data, _read_bytes(self.key_path)),
                0o644,
            )

    def _device_key(self) -> DeviceKey | None:
        """The device key (parsed on first use after a boot that did not need it)."""
        if self._key_unread:
            self._key = self._read_key(self.key_path)
            self._key_unread = False
        return self._key

    def _read_key(self, path: Path) -> DeviceKey:
        return self._read_key_file(path)[0]

    def _read_key_file(self, path: Path) -> tuple[DeviceKey, bytes]:
        from device_direct import certificates

        data = _read_bytes(path)
        try:
            key = certificates.load_key(data)
        except ValueError as exc:
            raise StorageError(f"{path}: {exc}") from exc
        _tighten_mode(path)
        return key, data

    def _recorded_state(self) -> dict[str, str] | None:
        """identity.json if it holds every recorded fact as a string, else None."""
        try:
            state: Any = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(state, dict):
            return None
        keys = ("device_id", "serial", *_RECORDED)
        if not all(isinstance(state.get(key), str) for key in keys):
            return None
        return {key: state[key] for key in keys}

    def _read_state(self) -> dict[str, str]:
        data = _read_bytes(self.state_path)
        try:
            state = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StorageError(f"{self.state_path}: not valid JSON (corrupt file): {exc}") from exc
        if not isinstance(state, dict):
            raise StorageError(f"{self.state_path}: expected a JSON object")
        for key in ("device_id", "serial"):
            if not isinstance(state.get(key), str):
                raise StorageError(f"{self.state_path}: key '{key}' missing or not a string")
        return {"device_id": state["device_id"], "serial": state["serial"]}

    def _promote_pending_key(self) -> None:
        try:
            os.replace(self.pending_key_path, self.key_path)
        except OSError as exc:
            raise StorageError(f"{self.key_path}: cannot install the renewed key: {exc}") from exc
        _fsync_dir(self.directory)
        # Whatever key was in memory is gone from the disk now.
        self._key_unread = False


# -- helpers -------------------------------------------------------------------------------


def _usable_serial(common_name: str | None) -> str | None:
    if common_name is None:
        return None
    try:
        return validate_serial(common_name)
    except ValueError:
        return None


def _registration(facts: CertificateFacts, device_id: str, serial: str) -> Registration:
    return Registration(
        device_id=device_id,
        serial=serial,
        not_before=facts.not_before,
        not_after=facts.not_after,
        fingerprint_sha256=facts.fingerprint_sha256,
    )


def _state_json(registration: Registration, cert_pem: bytes, key_pem: bytes) -> bytes:
    return json.dumps({
        "device_id": registration.device_id,
        "serial": registration.serial,
        "not_before": registration.not_before.isoformat(),
        "not_after": registration.not_after.isoformat(),
        "fingerprint_sha256": registration.fingerprint_sha256,
        "certificate_sha256": hashlib.sha256(cert_pem).hexdigest(),
        "key_sha256": hashlib.sha256(key_pem).hexdigest(),
    }).encode()


def _parse_cert(data: bytes, what: str) -> Certificate:
    from device_direct import certificates

    try:
        return certificates.load_certificate(data)
    except ValueError as exc:
        raise RemoteProtocolError(f"{what} is not a PEM certificate: {exc}") from exc


def _digest(path: Path) -> str | None:
    """SHA-256 of a file's content; None if it cannot be read (the caller parses then)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from exc


def _tighten_mode(path: Path) -> None:
    # A key readable by others is a leak, but refusing to boot over it would brick the
    # device; put the mode back to 0600 instead.
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StorageError(f"{path}: cannot restrict permissions: {exc}") from exc


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(path, data, mode=mode)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    try:
        fsync_dir(directory)
    except OSError as exc:
        raise StorageError(f"{directory}: cannot sync directory: {exc}") from exc
