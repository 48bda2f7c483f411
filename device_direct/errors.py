"""The one exception tree of ``device_direct``.

Every error the module raises is a :class:`DeviceDirectError`. Subclasses are grouped
by cause so callers can decide what to do (retry, report, ask the user) without
parsing messages. Third-party exceptions (aiohttp, ssl, sqlite3, OSError) are
translated into these at one edge each, with ``raise ... from exc``.
"""

from __future__ import annotations

from pathlib import Path


class DeviceDirectError(Exception):
    """Root of every error raised by device_direct."""


# -- configuration -------------------------------------------------------------------


class ConfigError(DeviceDirectError):
    """A configuration file or value is wrong. Names the file and the key."""

    def __init__(self, message: str, *, path: Path | str | None = None, key: str | None = None):
        self.path = str(path) if path is not None else None
        self.key = key
        where = []
        if self.path:
            where.append(self.path)
        if key:
            where.append(f"key '{key}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


# -- network and transport -------------------------------------------------------------


class NetworkError(DeviceDirectError):
    """The server could not be reached or the exchange broke off. Retried with backoff."""


class ConnectError(NetworkError):
    """TCP connection refused, reset, or the name did not resolve."""


class TimeoutError_(NetworkError):
    """The server did not answer in time."""


class ForeignAnswer(NetworkError):
    """A 4xx answer that is not the communication server's JSON error.

    A proxy, load balancer or captive portal answered in the server's place (an HTML
    404, an nginx 413, a portal's 403): it says nothing about the payload, so the
    request is retried with backoff, never taken as a final rejection.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ProxyError(NetworkError):
    """The proxy refused the tunnel (for example 407) or could not be reached.

    ``status``: the proxy's answer to the CONNECT when it refused one (407, 502, ...);
    None when it could not be reached or the error is not about a tunnel.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class TLSError(NetworkError):
    """The TLS handshake failed; ``reason`` says which check failed.

    reason is one of: unknown-ca, expired, not-yet-valid, wrong-host, tls-version,
    handshake.
    """

    def __init__(self, message: str, *, reason: str):
        self.reason = reason
        super().__init__(f"TLS {reason}: {message}")


class AuthError(DeviceDirectError):
    """The server refused our identity (registration key, client certificate)."""


class CertificateRefused(AuthError):
    """The server refused the device's client certificate (expired, revoked, unknown).

    ``code`` is the server's error code (``certificate_revoked``, ...) or the TLS alert
    (``SSLV3_ALERT_CERTIFICATE_EXPIRED``, ...). The payloads are not at fault: the agent
    renews, registers again, or reports that the device needs registering.
    """

    def __init__(self, message: str, *, code: str) -> None:
        self.code = code
        super().__init__(message)


# -- protocol ---------------------------------------------------------------------------


class ProtocolError(DeviceDirectError):
    """Base for wire-protocol violations."""


class LocalProtocolError(ProtocolError):
    """We broke the protocol (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The server sent something we cannot accept (bad JSON, oversized body, ...)."""


class BodyTooLong(RemoteProtocolError):
    """The server sent more than the limit allowed for the body (``limit`` bytes)."""

    def __init__(self, message: str, *, limit: int) -> None:
        self.limit = limit
        super().__init__(message)


class ServerRejected(ProtocolError):
    """The server answered 4xx: the request is not retried as it is."""

    def __init__(self, status: int, error: str, detail: str = ""):
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"server rejected the request ({status} {error}): {detail}".rstrip(": "))


class ServerUnavailable(NetworkError):
    """The server answered 5xx: retried with backoff."""

    def __init__(self, status: int, detail: str = ""):
        self.status = status
        self.detail = detail
        super().__init__(f"server unavailable ({status}) {detail}".rstrip())


# -- device side ------------------------------------------------------------------------


class FirmwareError(DeviceDirectError):
    """A firmware manifest or image failed a check; ``check`` names it."""

    def __init__(self, message: str, *, check: str):
        self.check = check
        super().__init__(f"firmware {check}: {message}")


class StorageError(DeviceDirectError):
    """The device's non-volatile storage failed (disk full, corrupt file)."""


class PayloadError(DeviceDirectError):
    """A payload could not be built or read back (corrupt zip or XML)."""


class ModelError(DeviceDirectError):
    """The device model refused a command (for example printing while powered off)."""
