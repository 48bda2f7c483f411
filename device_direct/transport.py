"""HTTPS to the communication server: one kept connection, one TLS context, mutual TLS.

The :class:`Transport` speaks the wire contract of ``/dd/v1`` and nothing else: it does
not retry, schedule or decide. Every failure comes out as a
:class:`device_direct.errors.DeviceDirectError` subclass; the connection's, the HTTP
parser's, ssl and OSError exceptions are translated in one place, :func:`map_exceptions`,
and the decision of which TLS check failed is the pure function :func:`tls_reason`.

HTTP/1.1 is the project's own small client (:mod:`device_direct.core.http1`, sans-I/O,
and :mod:`device_direct.http_connection`, the connection), not aiohttp's ClientSession:
the same device-day costs ~0.6 ms less CPU without the session's machinery (measured
figures in that module and docs/fleet.md). The requests of one sync share one
connection; no redirects are followed, nothing is decompressed (``Accept-Encoding:
identity``), there are no cookies, and the User-Agent is ``device-direct/<version>``.

TLS: 1.2 minimum, certificate and host name always checked, trust only the configured
CA bundle. The host name checked is the configured server name, which may differ from
the host in the URL (connect to 127.0.0.1, verify "localhost"). After registration (or
renewal) the context is rebuilt with the client certificate; the kept connection is
never reused with another context (it is keyed by its :class:`Route`).

Bodies are read with a hard cap: a server that sends more than the cap, or something
that is not the JSON object the endpoint promises, raises :class:`RemoteProtocolError`
naming the endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import re
import socket
import ssl
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

from yarl import URL

from device_direct import __version__
from device_direct.clock import Clock
from device_direct.config import TlsLibrary
from device_direct.core.http1 import MalformedResponse, ResponseIncomplete
from device_direct.core.upload_id import is_upload_id
from device_direct.errors import (
    AuthError,
    BodyTooLong,
    CertificateRefused,
    ConfigError,
    ConnectError,
    ForeignAnswer,
    LocalProtocolError,
    NetworkError,
    ProxyError,
    RemoteProtocolError,
    ServerRejected,
    ServerUnavailable,
    TimeoutError_,
    TLSError,
)
from device_direct.http_connection import (
    ConnectFailed,
    ConnectionBroke,
    Exchange,
    ProxyRefused,
    ProxyUnreachable,
    Route,
    ServerLink,
)
from device_direct.identity import IdentityStore

if TYPE_CHECKING:
    from device_direct.tls_bundled import BundledContext


# Every request's own fields besides Host (and Content-Length, Content-Type).
_FIXED_FIELDS: list[tuple[str, str]] = [
    ("User-Agent", f"device-direct/{__version__}"),
    ("Accept-Encoding", "identity"),  # a compressed body would dodge the size limits
]
JSON_LIMIT = 1024 * 1024  # bytes; control messages are small, anything bigger is hostile
_CHUNK = 64 * 1024
ACTION_STATUSES = frozenset({"succeeded", "failed", "rejected", "expired"})

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) -> which check failed.
_VERIFY_REASONS: dict[int, str] = {
    9: "not-yet-valid",  # CERT_NOT_YET_VALID
    10: "expired",  # CERT_HAS_EXPIRED
    2: "unknown-ca",  # UNABLE_TO_GET_ISSUER_CERT
    18: "unknown-ca",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown-ca",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "unknown-ca",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown-ca",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: "wrong-host",  # HOSTNAME_MISMATCH
    64: "wrong-host",  # IP_ADDRESS_MISMATCH
}
_REASON_HINTS: dict[str, str] = {
    "unknown-ca": "the server certificate is not signed by a CA in the configured bundle",
    "expired": "the server certificate has expired (or the device clock is wrong)",
    "not-yet-valid": "the server certificate is not valid yet (or the device clock is wrong)",
    "wrong-host": "the server certificate is not for the expected server name",
    "tls-version": "the server does not offer TLS 1.2 or newer",
    "handshake": "the TLS handshake failed",
}
# ssl.SSLError.reason values meaning the server only speaks an old protocol version.
_VERSION_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "WRONG_SSL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "UNKNOWN_PROTOCOL",
    }
)
# Alerts the server sends about *our* certificate: the identity is refused, not the link.
_CLIENT_CERT_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    }
)


def tls_reason(verify_code: int | None, ssl_reason: str | None) -> str:
    """Which TLS check failed, from OpenSSL's verify code and/or error reason.

    Returns one of unknown-ca, expired, not-yet-valid, wrong-host, tls-version,
    handshake.
    """
    if verify_code is not None and verify_code in _VERIFY_REASONS:
        return _VERIFY_REASONS[verify_code]
    if ssl_reason is not None and ssl_reason.upper() in _VERSION_REASONS:
        return "tls-version"
    return "handshake"


API_BASE = "/dd/v1"
# The server's error codes that refuse the client certificate itself (device_api.py):
# the device's identity must be renewed or registered again, the payload is not at fault.
CERTIFICATE_REFUSALS = frozenset(
    {"client_certificate_required", "certificate_unknown", "certificate_revoked",
     "certificate_expired", "device_mismatch"}
)
_ERROR_CODE = re.compile(r"[a-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each part of an exchange."""

    connect: float = 15.0  # TCP connect + TLS handshake (+ proxy CONNECT)
    request: float = 60.0  # a whole control request, body included
    upload: float = 300.0  # a whole upload: zips can be large on slow links
    read: float = 60.0  # silence allowed between two chunks of a download

    def __post_init__(self) -> None:
        for name in ("connect", "request", "upload", "read"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Timeouts.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The server's answer to an upload."""

    status: Literal["stored", "duplicate"]
    http_status: int

    def __post_init__(self) -> None:
        if self.status not in ("stored", "duplicate"):
            raise ValueError(f"upload status must be stored or duplicate, got {self.status!r}")


@functools.lru_cache(maxsize=16)
def _api_base(base_url: str) -> tuple[URL, str, int, str]:
    """The API's base URL for the server URL of a config, its host, port and path (requests
    go to that path + theirs). Parsed once: a transport is made every session of a day.

    The config names the server ("https://dd.example.com"); the API lives under /dd/v1
    there. A URL that already ends in /dd/v1 is taken as it is."""
    url = URL(base_url)
    if url.scheme != "https" or not url.host:
        raise ConfigError(f"server URL must be https://host[:port]/..., got {base_url!r}")
    path = url.path.rstrip("/")
    if not path.endswith(API_BASE):
        path += API_BASE
    base = url.with_path(path).with_query(None).with_fragment(None)
    return base, url.host, url.port or 443, base.raw_path


@functools.lru_cache(maxsize=1024)
def _segment(text: str) -> str:
    """``text`` quoted as one path segment (a device or action id: a few, used daily)."""
    return quote(text, safe="")


@functools.lru_cache(maxsize=64)
def _query(params: tuple[tuple[str, str], ...]) -> str:
    """``params`` as a query string (the firmware check's model and version: the same
    every day)."""
    return urlencode(params, quote_via=quote)


def map_exceptions(endpoint: str) -> _MappedExceptions:
    """A ``with`` block that translates the connection's, the parser's, ssl and OS
    exceptions raised in it into device_direct errors. ``endpoint`` ("POST
    /dd/v1/register") goes into every message. Errors of our own raised in the block (a
    body over its limit) pass as they are."""
    return _MappedExceptions(endpoint)


class _MappedExceptions:
    """:func:`map_exceptions`' block (a class: a few requests a day each enter one)."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> Literal[False]:
        if exc is None:
            return False
        error = _translated(self.endpoint, exc)
        if error is None:
            return False  # not one of those: it passes as it is
        raise error from exc


def _translated(endpoint: str, exc: BaseException) -> Exception | None:
    """The device_direct error for ``exc``, or None when it has none."""
    if isinstance(exc, ProxyRefused):
        return ProxyError(f"{endpoint}: proxy refused the tunnel ({exc.status} {exc.reason})",
                          status=exc.status)
    if isinstance(exc, ProxyUnreachable):
        return ProxyError(f"{endpoint}: cannot reach the proxy: {exc.detail}")
    if isinstance(exc, ConnectFailed):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionResetError | BrokenPipeError):
            # Cut during the TLS handshake without an alert (an asyncio TLS server that
            # refuses our versions does this): say so; the caller may find out why.
            return HandshakeCut(
                f"{endpoint}: the server closed the connection during the TLS handshake "
                f"({type(os_error).__name__})")
        if isinstance(os_error, socket.gaierror):
            return ConnectError(f"{endpoint}: cannot resolve the server name: {os_error}")
        return ConnectError(f"{endpoint}: cannot connect: {os_error}")
    if isinstance(exc, ConnectionBroke):
        return ConnectError(f"{endpoint}: the connection broke off: {exc.os_error}")
    if isinstance(exc, ResponseIncomplete):
        if not exc.head_complete:  # "the server closed the connection before answering"
            return ConnectError(f"{endpoint}: {exc}")
        of = f" of {exc.expected}" if exc.expected is not None else ""
        return ConnectError(f"{endpoint}: the response body broke off: {exc.received}{of} "
                            "bytes arrived")
    if isinstance(exc, MalformedResponse):
        return RemoteProtocolError(f"{endpoint}: malformed response: {exc.detail}")
    if isinstance(exc, TimeoutError):
        return TimeoutError_(f"{endpoint}: the server did not answer in time")
    if isinstance(exc, ssl.SSLError):
        return _from_ssl_error(endpoint, exc, exc)
    if isinstance(exc, OSError):
        return ConnectError(f"{endpoint}: {exc}")
    return None


class HandshakeCut(ConnectError):
    """The server closed the connection in the TLS handshake, without saying why."""


async def probe_tls_version(host: str, port: int, server_name: str,
                            timeout: float) -> str | None:
    """The TLS version the server completes a handshake with when older ones are allowed
    (``"TLSv1.1"``), or None when it cannot be found out.

    Only a diagnosis after a handshake that was cut: nothing is sent but the hello, the
    connection is closed at once, and the answer only names the cause in the error."""
    import asyncio
    import warnings

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name),
            timeout)
    except (OSError, TimeoutError, ValueError):
        return None
    ssl_object = writer.get_extra_info("ssl_object")
    version = ssl_object.version() if ssl_object is not None else None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return version if isinstance(version, str) else None


def _from_ssl_error(endpoint: str, error: BaseException | None, outer: BaseException) -> Exception:
    ssl_reason = getattr(error, "reason", None)
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = tls_reason(error.verify_code, ssl_reason)
        detail = error.verify_message or str(error)
        return TLSError(f"{endpoint}: {_REASON_HINTS[reason]} ({detail})", reason=reason)
    if isinstance(ssl_reason, str) and ssl_reason.upper() in _CLIENT_CERT_ALERTS:
        return CertificateRefused(
            f"{endpoint}: the server refused the device's client certificate in the TLS "
            f"handshake ({ssl_reason})", code=ssl_reason.upper()
        )
    reason = tls_reason(None, ssl_reason)
    return TLSError(f"{endpoint}: {_REASON_HINTS[reason]} ({error or outer})", reason=reason)


def build_ssl_context(
    ca_bundle: Path | None, client_cert: tuple[Path, Path] | None = None
) -> ssl.SSLContext:
    """The one client TLS context: TLS >= 1.2, host name checked.

    Trusts only ``ca_bundle`` when given, else the system trust store.
    """
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(ca_bundle) if ca_bundle is not None else None
        )
    except FileNotFoundError:
        raise ConfigError("CA bundle file not found", path=ca_bundle) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"CA bundle cannot be loaded: {exc}", path=ca_bundle) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    if client_cert is not None:
        cert, key = client_cert
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise AuthError(f"{cert}: cannot load the client certificate and key: {exc}") from exc
    return ctx


# The context of a device that has not registered yet (the server checked, no client
# certificate) holds nothing of the device's own, so the agents of one process that
# trust the same CA bundle (a fleet's thousands) share it: each registering device saves
# a context build (~0.3 ms of CPU: OpenSSL's SSL_CTX_new and the bundle parsed). Keyed
# by the bundle's path and a digest of its bytes: an edited bundle is loaded afresh.
# Client sessions are not cached by OpenSSL across connections (Python never sets a
# session on them), so sharing it changes nothing on the wire: each device still makes
# its own full handshake and checks the server's certificate and name.
_TRUST_CONTEXTS: dict[tuple[str, str, bytes], ssl.SSLContext | BundledContext] = {}
_TRUST_CONTEXTS_MAX = 4


def build_tls_context(library: TlsLibrary, ca_bundle: Path | None,
                      client_cert: tuple[Path, Path] | None = None
                      ) -> ssl.SSLContext | BundledContext:
    """:func:`build_ssl_context` on ``library``'s OpenSSL: the system's, through Python's
    :mod:`ssl`, or the one cryptography ships (:mod:`device_direct.tls_bundled`)."""
    if library == "system":
        return build_ssl_context(ca_bundle, client_cert)
    from device_direct.tls_bundled import BundledContext

    return BundledContext(ca_bundle, client_cert)


def shared_trust_context(ca_bundle: Path, library: TlsLibrary = "system"
                         ) -> ssl.SSLContext | BundledContext:
    """:func:`build_tls_context` of ``ca_bundle`` without a client certificate, built
    once per library and bundle content in this process and shared; do not change it."""
    try:
        data = ca_bundle.read_bytes()
    except FileNotFoundError:
        raise ConfigError("CA bundle file not found", path=ca_bundle) from None
    except OSError as exc:
        raise ConfigError(f"CA bundle cannot be loaded: {exc}", path=ca_bundle) from exc
    key = (library, str(ca_bundle), hashlib.sha256(data).digest())
    ctx = _TRUST_CONTEXTS.get(key)
    if ctx is None:
        ctx = build_tls_context(library, ca_bundle)
        while len(_TRUST_CONTEXTS) >= _TRUST_CONTEXTS_MAX:
            del _TRUST_CONTEXTS[next(iter(_TRUST_CONTEXTS))]
        _TRUST_CONTEXTS[key] = ctx
    return ctx


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 9110 ``Date`` header as an aware UTC datetime; None if absent or unreadable."""
    if not value:
        return None
    return _parse_http_date(value)


# Every response carries a Date, and it changes once a second: a fleet's thousands of
# devices (and a device's three requests of a day) parse the same few strings.
@functools.lru_cache(maxsize=8)
def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with unknown local zone (RFC 5322)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def content_range_start(value: str | None) -> int | None:
    """The first byte position of a ``Content-Range: bytes a-b/n`` header, else None."""
    if not value:
        return None
    unit, _, rest = value.strip().partition(" ")
    first, sep, _ = rest.partition("-")
    if unit.lower() != "bytes" or not sep or not first.isdigit():
        return None
    return int(first)


class Transport:
    """The device's HTTPS client for ``/dd/v1``: one kept connection, one TLS context.

    Create it, call :meth:`register` once (or rely on a stored identity), then the
    device calls; :meth:`close` at the end (or use ``async with``).
    """

    def __init__(
        self,
        base_url: str,
        ca_bundle: Path | str | None,
        server_name: str,
        identity: IdentityStore,
        clock: Clock,
        *,
        proxy: str | None = None,
        proxy_credentials: tuple[str, str] | None = None,
        timeouts: Timeouts | None = None,
        json_limit: int = JSON_LIMIT,
        tls_library: TlsLibrary = "system",
    ) -> None:
        if not server_name:
            raise ConfigError("the expected server name must not be empty")
        if json_limit <= 0:
            raise ValueError(f"json_limit must be positive, got {json_limit}")
        self._base, self._host, self._port, self._base_path = _api_base(base_url)
        # The config's Path as it is (a transport is made every session of every day).
        self._ca_bundle = (ca_bundle if isinstance(ca_bundle, Path) or ca_bundle is None
                           else Path(ca_bundle))
        self._server_name = server_name
        self._identity = identity
        self._clock = clock
        self._timeouts = timeouts or Timeouts()
        self._json_limit = json_limit
        self._tls_library: TlsLibrary = tls_library
        self._proxy: str | None = None
        self._proxy_address: tuple[str, int] | None = None
        self._proxy_authorization: str | None = None
        self._route: Route | None = None  # made on first use, again when TLS or proxy change
        self.set_proxy(proxy, proxy_credentials)
        self._ssl = self._build_context()
        self._link = ServerLink()
        self._server_date: datetime | None = None
        self._server_date_seen_at: datetime | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the kept connection."""
        self._link.close()

    def set_proxy(self, proxy: str | None, credentials: tuple[str, str] | None = None) -> None:
        """Send later requests through ``proxy`` (``http://host:port``), or directly."""
        address = None
        if proxy is not None:
            purl = URL(proxy)
            if purl.scheme != "http" or not purl.host:
                raise ConfigError(f"proxy URL must be http://host:port, got {proxy!r}")
            address = (purl.host, purl.port or 80)
        if credentials is not None and proxy is None:
            raise ConfigError("proxy credentials given without a proxy")
        self._proxy = proxy
        self._proxy_address = address
        self._proxy_credentials = credentials
        # Sent on the CONNECT request to the proxy only, never to the server.
        self._proxy_authorization = _basic_auth(*credentials) if credentials else None
        self._route = None

    @property
    def proxy_setting(self) -> tuple[str | None, tuple[str, str] | None]:
        """The proxy URL and credentials in use (``(None, None)``: direct)."""
        return self._proxy, self._proxy_credentials

    @property
    def device_id(self) -> str | None:
        return self._identity.device_id

    @property
    def base_url(self) -> str:
        return str(self._base)

    def server_time(self) -> datetime | None:
        """The server's clock from the ``Date`` header of the last response, if any."""
        return self._server_date

    def clock_offset(self) -> timedelta | None:
        """Server time minus device time when the last ``Date`` header arrived."""
        if self._server_date is None or self._server_date_seen_at is None:
            return None
        return self._server_date - self._server_date_seen_at

    # -- registration ------------------------------------------------------------------

    async def register(
        self,
        serial: str,
        model: str,
        mac: str,
        firmware: Mapping[str, str],
        registration_key: str,
    ) -> str:
        """Register with a one-time key; store the client certificate; return the device id."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in firmware.items()):
            raise LocalProtocolError("firmware must map module names to version strings")
        for name, value in (("model", model), ("mac", mac), ("registration_key", registration_key)):
            if not isinstance(value, str) or not value:
                raise LocalProtocolError(f"register: {name} must be a non-empty string")
        try:
            csr = self._identity.create_csr(serial)
        except ValueError as exc:
            raise LocalProtocolError(f"register: {exc}") from exc
        body = {
            "serial": serial,
            "model": model,
            "mac": mac,
            "firmware": dict(firmware),
            "registration_key": registration_key,
            "csr": csr,
        }
        endpoint = "POST /dd/v1/register"
        status, data = await self._json_call("POST", "/register", endpoint, json_body=body)
        if status not in (200, 201):
            raise RemoteProtocolError(f"{endpoint}: unexpected status {status}")
        device_id: str = _field(data, "device_id", str, endpoint)
        self._store_certificate(data, endpoint, device_id, serial=serial)
        return device_id

    async def renew(self) -> None:
        """Get a new client certificate for a fresh key over mutual TLS.

        ``POST /dd/v1/devices/{id}/renew`` with ``{"csr": PEM}`` answers like register
        (``certificate``, ``ca_certificate``, ``not_after``). The old key and
        certificate stay in use until the new ones are stored.
        """
        registration = self._identity.registration
        if registration is None:
            raise AuthError("renew: the device is not registered yet")
        csr = self._identity.create_renewal_csr(registration.serial)
        endpoint = "POST /dd/v1/devices/{id}/renew"
        status, data = await self._json_call(
            "POST", self._device_path("/renew"), endpoint, json_body={"csr": csr}, device=True
        )
        if status not in (200, 201):
            raise RemoteProtocolError(f"{endpoint}: unexpected status {status}")
        self._store_certificate(data, endpoint, registration.device_id,
                                serial=registration.serial)

    def _store_certificate(self, data: dict[str, Any], endpoint: str, device_id: str,
                           *, serial: str | None = None) -> None:
        """Store the answer's certificate; ``serial``: the subject the CSR asked for."""
        certificate = _field(data, "certificate", str, endpoint)
        ca_certificate = _field(data, "ca_certificate", str, endpoint)
        try:
            self._identity.store_registration(device_id, certificate, ca_certificate,
                                              serial=serial)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{endpoint}: {exc}") from exc
        self._ssl = self._build_context()

    # -- device calls ------------------------------------------------------------------

    async def upload(self, zip_bytes: bytes, upload_id: str) -> UploadResult:
        """Upload one payload zip; 201 is stored, 200 is a duplicate of an earlier one."""
        try:
            # Our own ids are canonical already: only another form is parsed.
            canonical = upload_id if is_upload_id(upload_id) else str(uuid.UUID(upload_id))
        except (ValueError, TypeError, AttributeError) as exc:
            raise LocalProtocolError(
                f"upload: Upload-Id must be a UUID, got {upload_id!r}"
            ) from exc
        headers = {
            "Upload-Id": canonical,
            "Content-SHA256": hashlib.sha256(zip_bytes).hexdigest(),
            "Content-Type": "application/zip",
        }
        endpoint = "POST /dd/v1/devices/{id}/uploads"
        status, data = await self._json_call(
            "POST",
            self._device_path("/uploads"),
            endpoint,
            data=zip_bytes,
            headers=headers,
            device=True,
            total=self._timeouts.upload,
        )
        answer = data.get("status")
        if status == 201 and answer == "stored":
            return UploadResult("stored", status)
        if status == 200 and answer == "duplicate":
            return UploadResult("duplicate", status)
        raise RemoteProtocolError(f"{endpoint}: unexpected answer {status} status={answer!r}")

    async def poll_actions(self) -> list[dict[str, Any]]:
        """The server's pending actions, each a dict with at least ``id`` and ``type``."""
        endpoint = "GET /dd/v1/devices/{id}/actions"
        _, data = await self._json_call("GET", self._device_path("/actions"), endpoint, device=True)
        actions: list[dict[str, Any]] = _field(data, "actions", list, endpoint)
        for action in actions:
            if not isinstance(action, dict):
                raise RemoteProtocolError(f"{endpoint}: an action is not a JSON object")
            for key in ("id", "type"):
                if not isinstance(action.get(key), str) or not action[key]:
                    raise RemoteProtocolError(f"{endpoint}: an action has no string '{key}'")
        return actions

    async def report_action(
        self, action_id: str, status: str, detail: Mapping[str, Any] | str = ""
    ) -> None:
        """Report an action's outcome: succeeded, failed, rejected or expired.

        ``detail`` goes out as a JSON object; a plain string becomes
        ``{"message": text}`` (the server accepts objects only).
        """
        if status not in ACTION_STATUSES:
            raise LocalProtocolError(
                f"report_action: status must be one of {sorted(ACTION_STATUSES)}, got {status!r}"
            )
        if not action_id:
            raise LocalProtocolError("report_action: empty action id")
        body_detail = {"message": detail} if isinstance(detail, str) else dict(detail)
        endpoint = "POST /dd/v1/devices/{id}/actions/{aid}/result"
        path = self._device_path(f"/actions/{_segment(action_id)}/result")
        await self._json_call(
            "POST",
            path,
            endpoint,
            json_body={"status": status, "detail": body_detail},
            device=True,
            allow_empty=True,
        )

    async def check_firmware(self, model: str, version: str) -> dict[str, Any] | None:
        """None if no update (204), else ``{"manifest": {...}, "signature": "<b64>"}``.

        The manifest's signature is not checked here: that is the firmware logic's job.
        """
        endpoint = "GET /dd/v1/devices/{id}/firmware"
        status, data = await self._json_call(
            "GET",
            self._device_path("/firmware"),
            endpoint,
            params={"model": model, "version": version},
            device=True,
            allow_empty=True,
        )
        if status == 204:
            return None
        _field(data, "manifest", dict, endpoint)
        _field(data, "signature", str, endpoint)
        return data

    async def upload_logs(self, text: str) -> None:
        """Send engineering logs (only call this with the customer's consent)."""
        endpoint = "POST /dd/v1/devices/{id}/logs"
        await self._json_call(
            "POST",
            self._device_path("/logs"),
            endpoint,
            data=text.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
            device=True,
            allow_empty=True,
            total=self._timeouts.upload,
        )

    async def download(self, url: str, start: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
        """Yield the bytes of ``url`` from offset ``start``, at most ``max_bytes`` of them.

        ``url`` is a path on the server or an absolute URL on the same origin. A server
        that sends more than ``max_bytes`` makes this raise :class:`RemoteProtocolError`
        without reading past the limit. Use with ``contextlib.aclosing`` when breaking
        off early.
        """
        if start < 0 or max_bytes < 0:
            raise LocalProtocolError(f"download: bad range start={start} max_bytes={max_bytes}")
        target = self._same_origin(url)
        endpoint = f"GET {target.path}"
        self._check_registered(device=True)
        fields = [*_FIXED_FIELDS, ("Range", f"bytes={start}-")] if start else _FIXED_FIELDS
        with map_exceptions(endpoint):
            exchange = await self._link.exchange(
                self._current_route(), "GET", target.raw_path_qs, fields, None,
                connect_timeout=self._timeouts.connect, read_timeout=self._timeouts.read)
            try:
                self._note_date(exchange)
                if exchange.status >= 300:
                    await self._raise_for_status(exchange, endpoint, device=True)
                skip = 0
                if exchange.status == 206:
                    first = content_range_start(exchange.headers.get("Content-Range"))
                    if first != start:
                        raise RemoteProtocolError(
                            f"{endpoint}: asked for bytes from {start}, got Content-Range "
                            f"{exchange.headers.get('Content-Range')!r}"
                        )
                elif exchange.status == 200:
                    skip = start  # the server ignored Range: drop what we already have
                else:
                    raise RemoteProtocolError(f"{endpoint}: unexpected status {exchange.status}")
                length = exchange.content_length
                if length is not None and length - skip > max_bytes:
                    raise BodyTooLong(
                        f"{endpoint}: body of {length - skip} bytes is longer than the "
                        f"{max_bytes} allowed", limit=max_bytes
                    )
                received = 0
                while True:
                    chunk = await exchange.next_chunk()
                    if not chunk:
                        if skip:
                            raise RemoteProtocolError(
                                f"{endpoint}: body ended before offset {start}")
                        return
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    # A piece that goes past the limit proves the body too long: it is
                    # not handed on, and nothing further is read.
                    if received + len(chunk) > max_bytes:
                        raise BodyTooLong(
                            f"{endpoint}: body is longer than the {max_bytes} bytes allowed",
                            limit=max_bytes,
                        )
                    received += len(chunk)
                    for offset in range(0, len(chunk), _CHUNK):
                        yield chunk[offset:offset + _CHUNK]
            finally:
                exchange.close()

    # -- the one request path ----------------------------------------------------------

    async def _json_call(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        device: bool = False,
        allow_empty: bool = False,
        total: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON object) for a 2xx answer."""
        self._check_registered(device)
        target = self._base_path + path
        if params:
            target += "?" + _query(tuple(params.items()))
        fields = _FIXED_FIELDS
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            fields = [*fields, ("Content-Type", "application/json")]
        if headers:
            fields = [*fields, *headers.items()]
        try:
            with map_exceptions(endpoint):
                async with asyncio.timeout(total or self._timeouts.request):
                    exchange = await self._link.exchange(
                        self._current_route(), method, target, fields, data,
                        connect_timeout=self._timeouts.connect)
                    try:
                        return await self._answer(exchange, endpoint, device, allow_empty)
                    finally:
                        exchange.close()
        except HandshakeCut as exc:
            raise await self._diagnose(exc) from exc

    async def _answer(self, exchange: Exchange, endpoint: str, device: bool,
                      allow_empty: bool) -> tuple[int, dict[str, Any]]:
        self._note_date(exchange)
        status = exchange.status
        if status >= 300:
            await self._raise_for_status(exchange, endpoint, device=device)
        body = await self._read_limited(exchange, endpoint)
        if not body and allow_empty:
            return status, {}
        return status, _json_object(body, endpoint)

    async def _diagnose(self, exc: HandshakeCut) -> NetworkError:
        """Why a handshake was cut: a server that only speaks TLS < 1.2 is named as such."""
        host, port = self._base.host, self._base.port
        if self._proxy is not None or host is None or port is None:
            return exc
        version = await probe_tls_version(host, port, self._server_name,
                                          self._timeouts.connect)
        if version in ("TLSv1", "TLSv1.1", "SSLv3"):
            return TLSError(f"{exc} (the server only speaks {version}; "
                            f"{_REASON_HINTS['tls-version']})", reason="tls-version")
        return exc

    def _check_registered(self, device: bool) -> None:
        if device and not self._identity.is_registered:
            raise AuthError("the device is not registered yet: register before device calls")

    def _current_route(self) -> Route:
        route = self._route
        if route is None or route.ssl is not self._ssl:
            route = self._route = Route(
                self._host, self._port, self._ssl, self._server_name,
                proxy=self._proxy_address, proxy_authorization=self._proxy_authorization)
        return route

    async def _raise_for_status(
        self, response: Exchange, endpoint: str, *, device: bool
    ) -> None:
        status = response.status
        try:
            body = await self._read_limited(response, endpoint)
        except RemoteProtocolError:
            body = b""  # the status says enough; an oversized error body is dropped
        contract = contract_error(response.content_type, body)
        if status >= 500:
            error, detail = contract or (response.reason or "", "")
            raise ServerUnavailable(status, f"{endpoint}: {error} {detail}".strip())
        if status >= 400 and contract is None:
            # Only the server's own JSON error is a verdict on the request; anything
            # else came from something in between and is retried.
            raise ForeignAnswer(
                status,
                f"{endpoint}: {status} {response.reason or ''} answered by something other "
                f"than the communication server ({response.content_type or 'no body'}; "
                "a proxy, load balancer or captive portal?)",
            )
        if contract is None:
            raise RemoteProtocolError(
                f"{endpoint}: unexpected status {status} (redirects are refused)")
        error, detail = contract
        if status in (401, 403):
            if device and (status == 401 or error in CERTIFICATE_REFUSALS):
                raise CertificateRefused(
                    f"{endpoint}: the server refused the device's client certificate "
                    f"({status} {error}): {detail}", code=error)
            if not device:
                raise AuthError(
                    f"{endpoint}: the server refused the registration ({status} {error}): "
                    f"{detail}")
        raise ServerRejected(status, error, f"{endpoint}: {detail}".rstrip(": "))

    async def _read_limited(self, response: Exchange, endpoint: str) -> bytes:
        limit = self._json_limit
        if response.content_length is not None and response.content_length > limit:
            raise RemoteProtocolError(
                f"{endpoint}: response of {response.content_length} bytes exceeds the "
                f"{limit}-byte limit"
            )
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await response.next_chunk()
            if not chunk:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            size += len(chunk)
            if size > limit:
                raise RemoteProtocolError(
                    f"{endpoint}: response body exceeds the {limit}-byte limit"
                )
            parts.append(chunk)

    def _note_date(self, response: Exchange) -> None:
        date = parse_http_date(response.headers.get("Date"))
        if date is not None:
            self._server_date = date
            self._server_date_seen_at = self._clock.now()

    # -- plumbing ----------------------------------------------------------------------

    def _build_context(self) -> ssl.SSLContext | BundledContext:
        # One context per agent: kept on the identity store and rebuilt only when the
        # certificate changes (loading the CA bundle and key costs ~1 ms a time). Before
        # the device registered, the process's shared one (shared_trust_context).
        reg = self._identity.registration
        library = self._tls_library
        key = (library, str(self._ca_bundle),
               reg.fingerprint_sha256 if reg is not None else None)
        cached = self._identity.ssl_context
        if cached is not None and cached[0] == key:
            return cached[1]
        if reg is None and self._ca_bundle is not None:
            ctx = shared_trust_context(self._ca_bundle, library)
        else:
            client = self._identity.client_cert_files() if reg is not None else None
            ctx = build_tls_context(library, self._ca_bundle, client)
        self._identity.ssl_context = (key, ctx)
        return ctx

    def _device_path(self, suffix: str) -> str:
        device_id = self._identity.device_id
        if device_id is None:
            raise AuthError("the device is not registered yet: register before device calls")
        return f"/devices/{_segment(device_id)}{suffix}"

    def _same_origin(self, url: str) -> URL:
        target = URL(url)
        if not target.is_absolute():
            if not url.startswith("/"):
                raise RemoteProtocolError(f"download URL must be a path or https URL: {url!r}")
            return self._base.with_path(target.path).with_query(target.query)
        if (target.scheme, target.host, target.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise RemoteProtocolError(
                f"download URL {url!r} is not on the communication server {self._base.origin()}"
            )
        return target


def _basic_auth(user: str, password: str) -> str:
    if ":" in user:
        raise ConfigError("proxy user name must not contain ':'")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _field(data: dict[str, Any], key: str, kind: type, endpoint: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise RemoteProtocolError(
            f"{endpoint}: response field '{key}' missing or not a {kind.__name__}"
        )
    return value


def _json_object(body: bytes, endpoint: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"{endpoint}: response is not JSON: {exc}") from exc
    except RecursionError as exc:  # [[[... a few thousand deep: within the size limit
        raise RemoteProtocolError(f"{endpoint}: response is not JSON: nested deeper than "
                                  "Python's recursion limit") from exc
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"{endpoint}: response is JSON but not an object")
    return data


def contract_error(content_type: str, body: bytes) -> tuple[str, str] | None:
    """(error, detail) if ``body`` is the contract's JSON error, else None.

    The contract (docs/protocol.md): ``application/json``, an object whose ``error`` is
    a machine code (lower-case letters, digits, ``_`` or ``-``), and whose ``detail`` is text.
    """
    if content_type != "application/json":
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    error, detail = data.get("error"), data.get("detail")
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return None
    if not isinstance(detail, str):
        return None
    return error, detail
