"""The reference server's state and what can be done with it, without a listener.

:class:`ServerState` owns the state directory (``pki/``, ``firmware/``,
``server.sqlite3``, ``admin-token``), the TLS context new connections get, the
server-side fault plan, and the Python API that tests, the fleet runner and the admin
API all call: registration keys, actions, firmware, faults. The request handlers
(``device_api.py``, ``admin_api.py``) see the server as this object, through
``http_common.server_of``; ``app.py``'s :class:`~emulator.server.app.ReferenceServer`
is this state plus the listener, the aiohttp application and its middlewares.

Two clocks: ``clock`` (injected; may be virtual) decides protocol time - key, action
and manifest expiry, last contact, the ``Date`` header. Certificates and request
durations use the real clock (``wall``), because OpenSSL checks validity against real
time and a log line's duration is real work.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any

from device_direct.clock import Clock, SystemClock
from emulator.errors import ServerError
from emulator.server.faults import FaultPlan, TlsFault
from emulator.server.firmware import make_manifest, sign_manifest
from emulator.server.firmware_qa import FirmwareQa
from emulator.server.pki import Pki, ServerTlsFiles, _write_private
from emulator.server.storage import Storage, hash_key

log = logging.getLogger("emulator.server")

# The longest a registration key, an action, a firmware manifest or a client
# certificate stays valid: a hundred years. Nobody means more, and far more is a date
# past the year 9999, which Python cannot hold (an OverflowError was a traceback from
# the CLI, a 500 from the admin API, and with --cert-days a 500 on every registration).
MAX_VALIDITY_S = 100 * 365 * 86400
MAX_CERT_DAYS = 100 * 365


def validity(name: str, seconds: int) -> timedelta:
    """``seconds`` as a validity period; ValueError naming ``name`` outside
    1..:data:`MAX_VALIDITY_S`."""
    if not 1 <= seconds <= MAX_VALIDITY_S:
        raise ValueError(f"{name} must be 1..{MAX_VALIDITY_S} seconds (a hundred years), "
                         f"got {seconds}")
    return timedelta(seconds=seconds)


class ServerState:
    """Keys, certificates, database, faults and the Python API of the reference server."""

    def __init__(
        self,
        state_dir: Path,
        *,
        server_names: tuple[str, ...] = ("localhost",),
        clock: Clock | None = None,
        cert_days: int = 365,
        max_upload_bytes: int = 1 << 20,
        max_log_bytes: int = 4 << 20,
        tls_files: ServerTlsFiles | None = None,
        rng: random.Random | None = None,
        shared_db: bool = False,
    ) -> None:
        if not 1 <= cert_days <= MAX_CERT_DAYS:
            raise ValueError(f"cert_days must be 1..{MAX_CERT_DAYS}, got {cert_days}")
        if max_upload_bytes < 1024:
            raise ValueError(f"max_upload_bytes must be >= 1024, got {max_upload_bytes}")
        self.state_dir = Path(state_dir)
        self.clock: Clock = clock or SystemClock()
        self.wall: Clock = SystemClock()
        self.cert_days = cert_days
        self.max_upload_bytes = max_upload_bytes
        self.max_log_bytes = max_log_bytes
        self.server_names = tuple(dict.fromkeys(("localhost", *server_names)))
        self.rng = rng or random.Random(0)
        self.faults = FaultPlan()
        self.firmware_qa = FirmwareQa()  # forced offers and image faults (QA, tests)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "firmware").mkdir(exist_ok=True)
        except OSError as exc:
            raise ServerError(f"cannot create state directory {self.state_dir}: {exc}") from exc
        self.pki = Pki(self.state_dir / "pki", server_names=self.server_names,
                       now=self.wall.now(), tls_files=tls_files)
        # shared_db: other server processes write the same database (--workers N).
        self.storage = Storage(self.state_dir / "server.sqlite3", shared=shared_db)
        self.admin_token = self._load_or_make_token()
        self.ssl_context = self._make_ssl_context()

    # -- properties others use ------------------------------------------------------------

    @property
    def ca_cert_path(self) -> Path:
        """The PEM bundle devices trust (our CA, plus the operator's if given)."""
        return self.pki.bundle_path

    @property
    def firmware_public_key_pem(self) -> bytes:
        """The Ed25519 public key (PEM) devices pin to check firmware manifests."""
        return self.pki.firmware_public_key_pem

    # -- Python API (what the admin API calls too) ----------------------------------------

    def create_registration_key(self, *, ttl_s: int = 86400) -> str:
        """A new single-use registration key valid for ``ttl_s`` seconds of server time."""
        ttl = validity("ttl_s", ttl_s)
        key = secrets.token_urlsafe(18)
        now = self.clock.now()
        self.storage.add_registration_key(hash_key(key), now=now, expires_at=now + ttl)
        return key

    def enqueue_action(self, device_id: str, type: str, params: dict[str, Any] | None = None,
                       expires_in_s: int = 86400) -> str:
        """Queue an action for a registered device; returns the action id."""
        if self.storage.device(device_id) is None:
            raise ValueError(f"unknown device {device_id!r}")
        if not type or len(type) > 64:
            raise ValueError("action type must be 1-64 characters")
        expires_in = validity("expires_in_s", expires_in_s)
        now = self.clock.now()
        return self.storage.add_action(device_id, type, dict(params or {}), now=now,
                                       expires_at=now + expires_in)

    def publish_firmware(self, model: str, version: str, image: bytes,
                         expires_in_s: int = 30 * 86400) -> dict[str, Any]:
        """Store an image and publish its signed manifest; returns the manifest."""
        if not image:
            raise ValueError("firmware image is empty")
        expires_in = validity("expires_in_s", expires_in_s)
        now = self.clock.now()
        manifest = make_manifest(model, version, image, expires_at=now + expires_in)
        path = self.firmware_image_path(manifest["sha256"])
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(image)
        os.replace(tmp, path)
        self.storage.add_firmware(manifest, sign_manifest(manifest, self.pki.firmware_key),
                                  now=now)
        return manifest

    def _load_or_make_token(self) -> str:
        path = self.state_dir / "admin-token"
        try:
            if path.exists():
                token = path.read_text(encoding="ascii").strip()
                if len(token) < 16:
                    raise ServerError(f"admin token in {path} is too short; delete the file "
                                      "to make a new one")
                return token
            token = secrets.token_urlsafe(32)
            _write_private(path, (token + "\n").encode())
            return token
        except (OSError, UnicodeDecodeError) as exc:
            raise ServerError(f"cannot read or write admin token {path}: {exc}") from exc

    def firmware_image_path(self, sha256: str) -> Path:
        return self.state_dir / "firmware" / f"{sha256}.bin"

    def set_fault(self, *, fail_next: int = 0, fail_fraction: float = 0.0,
                  latency_ms: int = 0, drop_next: int = 0,
                  tls: TlsFault | str = TlsFault.NONE) -> FaultPlan:
        """Replace the fault plan (see ``faults.py``); a TLS fault swaps the certificate
        new connections get."""
        plan = FaultPlan(fail_next=fail_next, fail_fraction=fail_fraction,
                         latency_ms=latency_ms, drop_next=drop_next, tls=TlsFault(tls))
        if plan.tls is not self.faults.tls:
            self._load_server_cert(plan.tls)
        self.faults = plan
        log.warning("server faults set: %s", plan.as_dict())
        return plan

    def clear_faults(self) -> FaultPlan:
        """Switch every server-side fault off and serve the good certificate again."""
        return self.set_fault()

    # -- TLS ------------------------------------------------------------------------------

    def _make_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # Optional: /register is reached without a client certificate; device calls
        # check for one themselves and answer 401 with a JSON body.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(self.pki.dir / "ca.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        # No session tickets: a device connects once a day, long after a ticket's
        # lifetime (2 h), and asyncio cannot offer one anyway. Issuing two per handshake
        # (TLS 1.3's default) cost the server a seventh of its time per daily session,
        # and each device the work of storing them.
        ctx.num_tickets = 0
        ctx.options |= ssl.OP_NO_TICKET
        # The certificate alone, or with its CA in a directory with one CA (see
        # emulator/server/pki.py: what each handshake costs either side).
        chain, key = self.pki.server_chain_path, self.pki.server_key_path
        try:
            ctx.load_cert_chain(str(chain), str(key))
        except ssl.SSLError as exc:  # OpenSSL names neither file ("[SSL] PEM lib")
            raise ServerError(f"cannot use server certificate {chain} with key {key}: {exc} "
                              "(PEM files; the key must be the certificate's)") from exc
        return ctx

    def _load_server_cert(self, mode: TlsFault) -> None:
        # load_cert_chain on the live context: OpenSSL copies the certificate into each
        # new connection when it is created, so new handshakes get the new one at once
        # and connections already open keep theirs.
        if mode is TlsFault.NONE:
            self.ssl_context.load_cert_chain(str(self.pki.server_chain_path),
                                             str(self.pki.server_key_path))
            return
        now = self.wall.now()
        if mode is TlsFault.EXPIRED:
            cert, key = self.pki.make_server_cert(
                self.server_names, now=now, not_before=now - timedelta(days=30),
                not_after=now - timedelta(days=1))
        else:
            cert, key = self.pki.make_server_cert(("wrong-host.invalid",), now=now,
                                                  include_loopback=False)
        cert_path, key_path = self.pki.dir / "fault-server.pem", self.pki.dir / "fault-server.key"
        cert_path.write_bytes(cert)
        _write_private(key_path, key)
        self.ssl_context.load_cert_chain(str(cert_path), str(key_path))
