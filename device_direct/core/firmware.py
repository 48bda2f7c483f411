"""Firmware updates, sans-I/O: manifest and image checks, and the update state machine.

Theory of operation
-------------------
A manifest ``{model, version, size, sha256, url, expires_at}`` is trusted only after
:func:`verify_manifest`: Ed25519 signature over its canonical JSON with the key pinned
in the config, then this model, unexpired, and strictly newer than the running version
(anti-rollback; versions are dotted numbers compared number by number). The image is
trusted only after :func:`verify_image`: exactly ``size`` bytes with the manifest's
SHA-256. A failed check raises :class:`FirmwareError` whose ``check`` names it
(format, signature, model, expired, version, size, sha256).

One update at a time moves through::

    IDLE --start--> DOWNLOADING --downloaded--> WRITING --written--> READY
    READY --install--> TRIAL_BOOT --booted-trial--> CHECKING --healthy--> COMMITTING
    COMMITTING --committed--> IDLE (succeeded)
    CHECKING --unhealthy--> ROLLING_BACK --rolled-back--> IDLE (failed)

plus: ``interrupted`` (DOWNLOADING -> DOWNLOADING: resume with Range later),
``abort`` (DOWNLOADING, WRITING, READY -> IDLE: a check failed, nothing installed),
``fell-back`` (TRIAL_BOOT, CHECKING, COMMITTING -> IDLE: a power cut made the boot
loader fall back to the old bank, which it does on any boot of an uncommitted trial).
The shell persists the record *before* each step that touches the device, and at boot
:func:`resume_event` compares the record with the banks the device reports to decide
what the interrupted step achieved. So a power cut at any step leaves the device on the
old firmware or on the new, committed one; never on an unchecked image.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from device_direct.errors import FirmwareError, LocalProtocolError
from device_direct.model import FirmwareState

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,7}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_IMAGE_BYTES = 512 << 20  # nothing bigger fits a bank; a manifest asking more is bad


# -- versions and canonical form -------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``"100.002.057"`` -> ``(100, 2, 57)``, trailing zeros dropped; ValueError if bad."""
    if not isinstance(text, str) or not _VERSION.match(text):
        raise ValueError(f"version {text!r} is not dotted numbers like 100.2.57")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dotted-numeric version ``a`` is older, equal or newer than ``b``."""
    pa, pb = parse_version(a), parse_version(b)
    return (pa > pb) - (pa < pb)


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The bytes a manifest signature covers (sorted keys, no spaces, UTF-8)."""
    return json.dumps(dict(doc), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def load_public_key(key: Ed25519PublicKey | str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object or PEM text."""
    # Imported here, like InvalidSignature in _signature_ok: cryptography's key code
    # loads its Rust bindings (several MiB), needed only when an update is checked.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(key, Ed25519PublicKey):
        return key
    try:
        loaded = load_pem_public_key(key.encode() if isinstance(key, str) else key)
    except (ValueError, TypeError) as exc:
        raise FirmwareError(f"the pinned key is not a PEM public key ({exc})",
                            check="key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise FirmwareError("the pinned key is not an Ed25519 key", check="key")
    return loaded


def _signature_ok(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


# -- manifests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """A signed firmware manifest, its fields validated (not yet its signature)."""

    model: str
    version: str
    size: int
    sha256: str
    url: str
    expires_at: datetime
    signature: bytes = field(repr=False, default=b"")
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("manifest field 'model' must be a non-empty string")
        parse_version(self.version)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not (
            0 < self.size <= MAX_IMAGE_BYTES
        ):
            raise ValueError(f"manifest field 'size' must be 1..{MAX_IMAGE_BYTES}, "
                             f"got {self.size!r}")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ValueError("manifest field 'sha256' must be 64 lower-case hex digits")
        if not isinstance(self.url, str) or not self.url:
            raise ValueError("manifest field 'url' must be a non-empty string")
        if self.expires_at.tzinfo is None:
            raise ValueError("manifest field 'expires_at' must carry a time zone")

    @classmethod
    def from_offer(cls, offer: Mapping[str, Any]) -> Manifest:
        """Parse ``{"manifest": {...}, "signature": "<base64>"}``; FirmwareError(format)."""
        try:
            doc = offer.get("manifest")
            sig = offer.get("signature")
            if not isinstance(doc, Mapping):
                raise ValueError("the offer has no 'manifest' object")
            if not isinstance(sig, str):
                raise ValueError("the offer has no 'signature' string")
            try:
                signature = base64.b64decode(sig, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("'signature' is not base64") from None
            expires = doc.get("expires_at")
            if not isinstance(expires, str):
                raise ValueError("manifest field 'expires_at' must be an ISO 8601 string")
            try:
                expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"manifest field 'expires_at' is not a time: {expires!r}"
                                 ) from None
            f: dict[str, Any] = {k: doc.get(k) for k in ("model", "version", "size",
                                                          "sha256", "url")}
            return cls(model=f["model"], version=f["version"], size=f["size"],
                       sha256=f["sha256"], url=f["url"], expires_at=expires_at,
                       signature=signature, raw=dict(doc))
        except (ValueError, TypeError, AttributeError) as exc:
            raise FirmwareError(str(exc), check="format") from None

    def to_offer(self) -> dict[str, Any]:
        """The offer this manifest came from (for the persisted update record)."""
        return {"manifest": dict(self.raw),
                "signature": base64.b64encode(self.signature).decode("ascii")}


def verify_manifest(
    offer: Mapping[str, Any] | Manifest,
    *,
    public_key: Ed25519PublicKey | str | bytes,
    model: str,
    running_version: str,
    now: datetime,
) -> Manifest:
    """Check an offer (or parsed manifest); return it, or raise FirmwareError(check=...).

    Checks, in order: format, signature (over the canonical JSON of the manifest as
    received), model, expired, version (must be newer than ``running_version``).
    """
    manifest = offer if isinstance(offer, Manifest) else Manifest.from_offer(offer)
    key = load_public_key(public_key)
    if not _signature_ok(key, manifest.signature, canonical_json(manifest.raw)):
        raise FirmwareError("the manifest signature does not verify with the pinned key",
                            check="signature")
    if manifest.model != model:
        _check_target(manifest.model, manifest.version, model=model,
                      running_version=running_version)
    if manifest.expires_at <= now:
        raise FirmwareError(f"the manifest expired at {manifest.expires_at.isoformat()}",
                            check="expired")
    _check_target(manifest.model, manifest.version, model=model,
                  running_version=running_version)
    return manifest


def _check_target(image_model: str, version: str, *, model: str, running_version: str) -> None:
    if image_model != model:
        raise FirmwareError(f"the image is for model {image_model!r}, this device is "
                            f"{model!r}", check="model")
    try:
        newer = compare_versions(version, running_version) > 0
    except ValueError as exc:
        raise FirmwareError(str(exc), check="version") from None
    if not newer:
        raise FirmwareError(f"version {version} is not newer than the running "
                            f"{running_version} (anti-rollback)", check="version")


@dataclass(frozen=True, slots=True)
class ImageDigest:
    """Size and SHA-256 of an image that was hashed as it streamed by (never held whole)."""

    size: int
    sha256: str

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.sha256) != 64:
            raise ValueError(f"bad image digest {self.size} {self.sha256!r}")


def check_image(manifest: Manifest, image: bytes | ImageDigest) -> None:
    """Size and SHA-256 of a downloaded image (its bytes, or the digest made while it
    streamed to storage) against its (verified) manifest."""
    size = image.size if isinstance(image, ImageDigest) else len(image)
    if size != manifest.size:
        raise FirmwareError(f"image is {size} bytes, the manifest says {manifest.size}",
                            check="size")
    digest = (image.sha256 if isinstance(image, ImageDigest)
              else hashlib.sha256(image).hexdigest())
    if digest != manifest.sha256:
        raise FirmwareError(f"image SHA-256 {digest} is not the manifest's {manifest.sha256}",
                            check="sha256")


# -- DLM files (print-job firmware on port 9100) -------------------------------------------


@dataclass(frozen=True, slots=True)
class DlmHeader:
    """The ``%%XRXbegin ... %%XRXend`` header of a DLM firmware file.

    The signature is Ed25519 over the canonical JSON of ``{"model": name, "version":
    version, "size": len(payload), "sha256": hex of the payload}`` (see
    :func:`dlm_signed_bytes`), made with the same key as the manifests.
    """

    name: str
    version: str
    signature: bytes = field(repr=False)


_DLM_BEGIN = b"%%XRXbegin"
_DLM_END = b"%%XRXend"
_DLM_LINE = re.compile(rb'^%%(OID_ATT_[A-Z_]+)\s+(?:"([^"]*)"|(\S+))\s*$')
MAX_DLM_HEADER = 16 << 10


def parse_dlm(data: bytes) -> tuple[DlmHeader, bytes]:
    """Split a DLM file into its header and payload; FirmwareError(check="format")."""
    if not data.startswith(_DLM_BEGIN):
        raise FirmwareError("a DLM file starts with %%XRXbegin", check="format")
    end = data.find(_DLM_END, 0, MAX_DLM_HEADER)
    if end < 0:
        raise FirmwareError(f"no %%XRXend in the first {MAX_DLM_HEADER} bytes", check="format")
    eol = data.find(b"\n", end)
    payload = data[eol + 1:] if eol >= 0 else b""
    fields: dict[str, str] = {}
    for line in data[len(_DLM_BEGIN):end].splitlines():
        line = line.strip()
        if not line:
            continue
        m = _DLM_LINE.match(line)
        if m is None:
            raise FirmwareError(f"unreadable DLM header line {line[:80]!r}", check="format")
        fields[m.group(1).decode()] = (m.group(2) if m.group(2) is not None
                                       else m.group(3)).decode("latin-1")
    if fields.get("OID_ATT_JOB_TYPE") != "OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE":
        raise FirmwareError("the DLM header has no dynamic-loadable-module job type",
                            check="format")
    try:
        header = DlmHeader(name=fields["OID_ATT_DLM_NAME"],
                           version=fields["OID_ATT_DLM_VERSION"],
                           signature=bytes.fromhex(fields["OID_ATT_DLM_SIGNATURE"]))
    except KeyError as exc:
        raise FirmwareError(f"the DLM header lacks {exc.args[0]}", check="format") from None
    except ValueError:
        raise FirmwareError("OID_ATT_DLM_SIGNATURE is not hex", check="format") from None
    return header, payload


def dlm_signed_bytes(header: DlmHeader, payload: bytes) -> bytes:
    """What a DLM signature covers."""
    return canonical_json({"model": header.name, "version": header.version,
                           "size": len(payload),
                           "sha256": hashlib.sha256(payload).hexdigest()})


def verify_image(
    manifest_or_header: Mapping[str, Any] | Manifest | DlmHeader,
    image: bytes,
    *,
    public_key: Ed25519PublicKey | str | bytes,
    model: str,
    running_version: str,
    now: datetime,
) -> None:
    """Check an image before it may go into a bank; raise FirmwareError(check=...).

    ``manifest_or_header`` is a server offer ``{"manifest", "signature"}``, a parsed
    :class:`Manifest`, or the :class:`DlmHeader` of a file pushed to port 9100 (use
    :func:`parse_dlm` to split one). Checks signature, model, expiry (manifests only),
    anti-rollback version, size and SHA-256.
    """
    if isinstance(manifest_or_header, DlmHeader):
        key = load_public_key(public_key)
        if not _signature_ok(key, manifest_or_header.signature,
                             dlm_signed_bytes(manifest_or_header, image)):
            raise FirmwareError("the DLM signature does not verify with the pinned key "
                                "(or the payload was altered)", check="signature")
        _check_target(manifest_or_header.name, manifest_or_header.version, model=model,
                      running_version=running_version)
        return
    manifest = verify_manifest(manifest_or_header, public_key=public_key, model=model,
                               running_version=running_version, now=now)
    check_image(manifest, image)


# -- maintenance window --------------------------------------------------------------------


def install_time(now: datetime, window: tuple[time, time] | None, zone: ZoneInfo) -> datetime:
    """When an update downloaded at ``now`` may be installed: now if there is no
    window or ``now`` is in it, else the next start of the device-local window."""
    if window is None:
        return now
    start, end = window
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside:
        return now
    for days in (0, 1, 2):
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, start, tzinfo=zone).astimezone(now.tzinfo)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a daily window starts within two days")


# -- the update state machine ----------------------------------------------------------------


class UpdateState(enum.Enum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    WRITING = "writing"
    READY = "ready"
    TRIAL_BOOT = "trial-boot"
    CHECKING = "checking"
    COMMITTING = "committing"
    ROLLING_BACK = "rolling-back"


class UpdateEvent(enum.Enum):
    START = "start"
    INTERRUPTED = "interrupted"
    DOWNLOADED = "downloaded"
    WRITTEN = "written"
    ABORT = "abort"
    INSTALL = "install"
    BOOTED_TRIAL = "booted-trial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    FELL_BACK = "fell-back"


_U, _V = UpdateState, UpdateEvent
UPDATE_TRANSITIONS: dict[tuple[UpdateState, UpdateEvent], UpdateState] = {
    (_U.IDLE, _V.START): _U.DOWNLOADING,
    (_U.DOWNLOADING, _V.INTERRUPTED): _U.DOWNLOADING,
    (_U.DOWNLOADING, _V.DOWNLOADED): _U.WRITING,
    (_U.DOWNLOADING, _V.ABORT): _U.IDLE,
    (_U.WRITING, _V.WRITTEN): _U.READY,
    (_U.WRITING, _V.ABORT): _U.IDLE,
    (_U.READY, _V.INSTALL): _U.TRIAL_BOOT,
    (_U.READY, _V.ABORT): _U.IDLE,
    (_U.TRIAL_BOOT, _V.BOOTED_TRIAL): _U.CHECKING,
    (_U.TRIAL_BOOT, _V.FELL_BACK): _U.IDLE,
    (_U.CHECKING, _V.HEALTHY): _U.COMMITTING,
    (_U.CHECKING, _V.UNHEALTHY): _U.ROLLING_BACK,
    (_U.CHECKING, _V.FELL_BACK): _U.IDLE,
    (_U.COMMITTING, _V.COMMITTED): _U.IDLE,
    (_U.COMMITTING, _V.FELL_BACK): _U.IDLE,
    (_U.ROLLING_BACK, _V.ROLLED_BACK): _U.IDLE,
}


def update_transition(state: UpdateState, event: UpdateEvent) -> UpdateState:
    """The state after ``event``; LocalProtocolError when the table has no such pair."""
    try:
        return UPDATE_TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"firmware update cannot take event {event.value!r} in state {state.value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """The persisted firmware update (state IDLE: none in progress)."""

    state: UpdateState = UpdateState.IDLE
    offer: Mapping[str, Any] | None = None  # {"manifest", "signature"} as received
    version: str = ""  # the version being installed
    old_version: str = ""
    action_id: str | None = None  # the upgrade_firmware action waiting for the outcome
    install_now: bool = False
    resumed_from: tuple[int, ...] = ()  # byte offsets downloads resumed at
    attempts: int = 0
    next_try_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.state, UpdateState):
            raise ValueError(f"UpdateRecord.state must be an UpdateState, got {self.state!r}")
        if self.state is not UpdateState.IDLE and (self.offer is None or not self.version):
            raise ValueError(f"an update in state {self.state.value} needs its offer and "
                             "version")
        if self.attempts < 0:
            raise ValueError("UpdateRecord.attempts must be >= 0")

    def step(self, event: UpdateEvent, **changes: Any) -> UpdateRecord:
        """This record after ``event`` (checked against the table), with ``changes``.

        Reaching IDLE clears the update's fields."""
        after = update_transition(self.state, event)
        if after is UpdateState.IDLE:
            return UpdateRecord()
        return replace(self, state=after, **changes)

    @property
    def manifest(self) -> Manifest:
        if self.offer is None:
            raise LocalProtocolError("no firmware update in progress")
        return Manifest.from_offer(self.offer)

    def to_json(self) -> dict[str, Any]:
        return {
            "version_of_record": 1,
            "state": self.state.value,
            "offer": dict(self.offer) if self.offer is not None else None,
            "version": self.version,
            "old_version": self.old_version,
            "action_id": self.action_id,
            "install_now": self.install_now,
            "resumed_from": list(self.resumed_from),
            "attempts": self.attempts,
            "next_try_at": self.next_try_at.isoformat() if self.next_try_at else None,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> UpdateRecord:
        """Parse :meth:`to_json` output; ValueError naming the bad field."""
        if not isinstance(doc, Mapping) or doc.get("version_of_record") != 1:
            raise ValueError("not a version 1 firmware update record")
        try:
            state = UpdateState(doc.get("state"))
        except ValueError:
            raise ValueError(f"field 'state' is not an update state: {doc.get('state')!r}"
                             ) from None
        nxt = doc.get("next_try_at")
        resumed = doc.get("resumed_from", [])
        if not isinstance(resumed, list) or not all(isinstance(x, int) for x in resumed):
            raise ValueError("field 'resumed_from' must be a list of integers")
        offer = doc.get("offer")
        if offer is not None and not isinstance(offer, Mapping):
            raise ValueError("field 'offer' must be an object")
        return cls(state=state, offer=offer, version=str(doc.get("version") or ""),
                   old_version=str(doc.get("old_version") or ""),
                   action_id=doc.get("action_id"), install_now=bool(doc.get("install_now")),
                   resumed_from=tuple(resumed), attempts=int(doc.get("attempts", 0)),
                   next_try_at=datetime.fromisoformat(nxt) if nxt else None)


def resume_event(record: UpdateRecord, firmware: FirmwareState) -> UpdateEvent | None:
    """At boot: what the step that was cut off achieved, judged from the banks.

    None means: carry on from the recorded state (download on, write again, wait for
    the window, check health again, commit again, roll back again).
    """
    on_new = firmware.running_version == record.version
    state = record.state
    if state is UpdateState.TRIAL_BOOT:
        if on_new and firmware.trial:
            return UpdateEvent.BOOTED_TRIAL
        return UpdateEvent.FELL_BACK
    if state is UpdateState.CHECKING:
        return None if on_new and firmware.trial else UpdateEvent.FELL_BACK
    if state is UpdateState.COMMITTING:
        if on_new and not firmware.trial:
            return UpdateEvent.COMMITTED
        return None if on_new else UpdateEvent.FELL_BACK
    if state is UpdateState.ROLLING_BACK:
        return None if firmware.trial else UpdateEvent.ROLLED_BACK
    return None
