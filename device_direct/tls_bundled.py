"""The device's TLS through the OpenSSL that ``cryptography`` ships (``tls_library = "bundled"``).

The transport's TLS is normally the system's, through Python's :mod:`ssl`. On a machine
whose system OpenSSL is 3.0 (Debian 12, this project's machines) that costs a fleet
dearly: 3.0's per-connection set-up (provider look-ups, the key decoders) makes a
client handshake about 1.0 ms of CPU and a context with the device's own certificate
about 1.1 ms. ``cryptography``, already a dependency of the device, ships a current
OpenSSL in its wheels, and its cffi bindings (the ones pyOpenSSL is built on) reach
libssl. Through them the same handshake costs about 0.5-0.7 of that and the same context
about 0.25-0.4 (``bench/tls_library.py``). Nothing else changes; no new dependency.
cryptography makes no compatibility promise for these bindings: :func:`available` checks
that every function the link calls is there, and a fleet's ``--tls-library auto`` falls
back to the system's when one is missing.

What a connection does is what :func:`device_direct.transport.build_ssl_context` asks of
the system's OpenSSL:

* TLS 1.2 or newer; for TLS 1.2, Python's default cipher list; key-share groups in
  OpenSSL 3.0's default order (X25519 first, its only key share); no compression;
* the server's chain verified against the CA bundle (the system's trust store when
  there is none), its name checked during the handshake (no partial wildcards), SNI
  sent for a name and not for an address;
* the device's client certificate and key, when it has them.

Errors come out as the stdlib's would, so that
:func:`device_direct.transport.map_exceptions` stays the one place that translates them:
:class:`ssl.SSLCertVerificationError` with OpenSSL's ``verify_code`` and
``verify_message``; :class:`ssl.SSLError` with OpenSSL's ``reason`` mnemonic and
``library``; :class:`ConnectionResetError` when the server cuts the handshake.

:func:`open_tls` and :func:`start_tls` are what :mod:`device_direct.http_connection` calls
instead of ``loop.create_connection(ssl=...)`` and ``loop.start_tls``. The bindings are
imported on first use only: an agent on the system's TLS never loads them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path
from typing import Any

from device_direct.config import TlsLibrary
from device_direct.errors import AuthError, ConfigError

# Python's default for TLS 1.2 (ssl._DEFAULT_CIPHERS); TLS 1.3 suites are OpenSSL's.
_CIPHERS = (b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:"
            b"!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")
# OpenSSL 3.0's default groups, in its order (a newer OpenSSL also offers, and sends a
# key share for, a post-quantum hybrid that a device on 3.0 would not).
_GROUPS = b"X25519:P-256:X448:P-521:P-384"
_READ_SIZE = 16 * 1024  # one TLS record's plaintext at most
_NEEDED = (
    "SSL_CTX_new", "TLS_client_method", "SSL_CTX_free", "SSL_CTX_set_min_proto_version",
    "SSL_CTX_set_options", "SSL_CTX_set_cipher_list", "SSL_CTX_set1_curves_list",
    "SSL_CTX_load_verify_locations", "SSL_CTX_set_default_verify_paths",
    "SSL_CTX_use_certificate_chain_file", "SSL_CTX_use_PrivateKey_file",
    "SSL_CTX_check_private_key", "SSL_CTX_set_verify", "SSL_new", "SSL_free", "SSL_set_bio",
    "SSL_set_connect_state", "SSL_set_tlsext_host_name", "SSL_get0_param",
    "X509_VERIFY_PARAM_set1_host", "X509_VERIFY_PARAM_set1_ip",
    "X509_VERIFY_PARAM_set_hostflags", "SSL_do_handshake", "SSL_get_error", "SSL_read",
    "SSL_write", "SSL_shutdown", "SSL_get_verify_result", "X509_verify_cert_error_string",
    "BIO_new", "BIO_s_mem", "BIO_read", "BIO_write", "ERR_get_error", "ERR_clear_error",
    "ERR_reason_error_string", "ERR_lib_error_string", "OpenSSL_version", "SSL_get_version",
)

_binding: tuple[Any, Any] | None = None  # (lib, ffi), loaded on first use


def _bindings() -> tuple[Any, Any]:
    global _binding
    if _binding is None:
        from cryptography.hazmat.bindings.openssl.binding import Binding

        lib = Binding.lib
        missing = [name for name in _NEEDED if not hasattr(lib, name)]
        if missing:
            raise ConfigError("server.tls_library: this cryptography's OpenSSL bindings "
                              f"lack {', '.join(missing)}: use \"system\"",
                              key="server.tls_library")
        _binding = (lib, Binding.ffi)
    return _binding


def available() -> str | None:
    """The bundled OpenSSL's version (``"OpenSSL 4.0.3 29 Sep 2026"``), or None when
    this installation of ``cryptography`` cannot be used for the device's TLS."""
    try:
        lib, ffi = _bindings()
    except (ImportError, ConfigError):
        return None
    return str(ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode("ascii", "replace"))


def preferred() -> TlsLibrary:
    """``"bundled"`` where this installation can run the device's TLS on it, else
    ``"system"``: what a fleet uses unless told (``--tls-library auto``)."""
    return "bundled" if available() is not None else "system"


def _error_text(lib: Any, ffi: Any) -> tuple[str, str]:
    """(reason mnemonic, library) of OpenSSL's last queued error, the queue emptied."""
    code, last = 1, 0
    while code:
        code = lib.ERR_get_error()
        if code:
            last = code
    if not last:
        return "", ""
    reason = lib.ERR_reason_error_string(last)
    library = lib.ERR_lib_error_string(last)
    text = ffi.string(reason).decode("ascii", "replace") if reason != ffi.NULL else ""
    lib_text = ffi.string(library).decode("ascii", "replace") if library != ffi.NULL else ""
    return text.upper().replace(" ", "_"), lib_text.upper()


class BundledContext:
    """A client TLS context of the bundled OpenSSL; see the module's docstring.

    Like an :class:`ssl.SSLContext` it is built once per device and certificate and
    shared by its connections; unlike one it is immutable once built.
    """

    __slots__ = ("_ctx", "has_client_cert")

    def __init__(self, ca_bundle: Path | None,
                 client_cert: tuple[Path, Path] | None = None) -> None:
        lib, ffi = _bindings()
        raw = lib.SSL_CTX_new(lib.TLS_client_method())
        if raw == ffi.NULL:  # pragma: no cover - out of memory
            raise MemoryError("SSL_CTX_new")
        self._ctx = ctx = ffi.gc(raw, lib.SSL_CTX_free)
        lib.ERR_clear_error()
        lib.SSL_CTX_set_min_proto_version(ctx, lib.TLS1_2_VERSION)
        lib.SSL_CTX_set_options(ctx, lib.SSL_OP_ALL | lib.SSL_OP_NO_COMPRESSION)
        if not (lib.SSL_CTX_set_cipher_list(ctx, _CIPHERS)
                and lib.SSL_CTX_set1_curves_list(ctx, _GROUPS)):  # pragma: no cover
            raise ConfigError("server.tls_library: the bundled OpenSSL refuses the "
                              f"device's TLS parameters ({_error_text(lib, ffi)[0]})",
                              key="server.tls_library")
        if ca_bundle is None:
            paths = ssl.get_default_verify_paths()
            cafile = paths.cafile.encode() if paths.cafile else ffi.NULL
            capath = paths.capath.encode() if paths.capath else ffi.NULL
            if not lib.SSL_CTX_load_verify_locations(ctx, cafile, capath):
                lib.SSL_CTX_set_default_verify_paths(ctx)
            lib.ERR_clear_error()
        else:
            if not ca_bundle.is_file():
                raise ConfigError("CA bundle file not found", path=ca_bundle)
            if not lib.SSL_CTX_load_verify_locations(ctx, str(ca_bundle).encode(), ffi.NULL):
                reason, _ = _error_text(lib, ffi)
                raise ConfigError(f"CA bundle cannot be loaded: {reason or 'no certificate'}",
                                  path=ca_bundle)
        lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)
        self.has_client_cert = client_cert is not None
        if client_cert is not None:
            cert, key = client_cert
            if not (lib.SSL_CTX_use_certificate_chain_file(ctx, str(cert).encode())
                    and lib.SSL_CTX_use_PrivateKey_file(ctx, str(key).encode(),
                                                        lib.SSL_FILETYPE_PEM)
                    and lib.SSL_CTX_check_private_key(ctx)):
                reason, _ = _error_text(lib, ffi)
                raise AuthError(f"{cert}: cannot load the client certificate and key: "
                                f"{reason or 'unreadable'}")

    def connection(self, server_name: str) -> tuple[Any, Any, Any]:
        """A new client SSL object on memory BIOs (the object, its incoming and its
        outgoing BIO), checking ``server_name``."""
        lib, ffi = _bindings()
        raw = lib.SSL_new(self._ctx)
        if raw == ffi.NULL:  # pragma: no cover - out of memory
            raise MemoryError("SSL_new")
        conn = ffi.gc(raw, lib.SSL_free)
        incoming, outgoing = lib.BIO_new(lib.BIO_s_mem()), lib.BIO_new(lib.BIO_s_mem())
        lib.SSL_set_bio(conn, incoming, outgoing)  # freed with the SSL object
        lib.SSL_set_connect_state(conn)
        param = lib.SSL_get0_param(conn)
        try:
            address = ipaddress.ip_address(server_name.strip("[]"))
        except ValueError:
            name = server_name.encode("idna")
            lib.SSL_set_tlsext_host_name(conn, name)
            lib.X509_VERIFY_PARAM_set_hostflags(param, lib.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
            ok = lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
        else:
            packed = address.packed
            ok = lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
        if not ok:  # pragma: no cover - OpenSSL refuses only out of memory
            lib.ERR_clear_error()
            raise ssl.SSLError(f"cannot check the server name {server_name!r}")
        return conn, incoming, outgoing


_HANDSHAKE, _OPEN, _ENDED = 0, 1, 2
_NO_APP = asyncio.Protocol()  # what a link that has ended holds instead of its application


class _TlsLink(asyncio.Protocol, asyncio.Transport):
    """TLS over a plain connection: the connection's protocol, and the transport that
    the application's protocol (``http_connection._Wire``) writes to and closes.

    The application hears of the connection (``connection_made``) once the handshake is
    done, and of its end once: the server's close_notify or EOF (``eof_received``), an
    alert or a broken connection (``connection_lost``).
    """

    __slots__ = ("_app", "_buffer", "_in", "_out", "_raw", "_ssl", "_state", "_waiter")

    def __init__(self, parts: tuple[Any, Any, Any], app: asyncio.Protocol,
                 waiter: asyncio.Future[None]) -> None:
        _, ffi = _bindings()
        self._ssl, self._in, self._out = parts
        self._app = app
        self._waiter = waiter
        self._raw: asyncio.Transport | None = None
        self._state = _HANDSHAKE
        self._buffer = ffi.new("char[]", _READ_SIZE)

    # -- the plain connection's side ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport  # type: ignore[assignment]  # a stream transport
        self._handshake()

    def data_received(self, data: bytes) -> None:
        lib, _ = _bindings()
        lib.BIO_write(self._in, data, len(data))
        if self._state == _OPEN:
            self._read()
        elif self._state == _HANDSHAKE:
            self._handshake()

    def eof_received(self) -> bool | None:
        if self._state == _HANDSHAKE:
            self._fail(ConnectionResetError(
                "the server closed the connection during the TLS handshake"))
        elif self._state == _OPEN:
            return self._app.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _HANDSHAKE:
            self._fail(exc if exc is not None else ConnectionResetError(
                "the connection was lost during the TLS handshake"))
        elif self._state == _OPEN:
            self._state = _ENDED
            self._tell_end(exc)

    def _handshake(self) -> None:
        lib, _ = _bindings()
        result = lib.SSL_do_handshake(self._ssl)
        if result == 1:
            self._state = _OPEN
            self._app.connection_made(self)
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._read(flush=False)  # what came with the handshake's last flight
            # Our own last flight (the Finished) waits for the first request, which
            # the opener writes as soon as it resumes, before this runs: one segment,
            # and one wake-up of the server instead of two. Without a request it
            # leaves on its own, a loop turn later.
            self._waiter.get_loop().call_soon(self._flush)
            return
        self._flush()
        err = lib.SSL_get_error(self._ssl, result)
        if err != lib.SSL_ERROR_WANT_READ:
            self._fail(self._error(err))

    def _fail(self, exc: BaseException) -> None:
        """The handshake failed: the opener raises ``exc``."""
        self._state = _ENDED
        if not self._waiter.done():
            self._waiter.set_exception(exc)
        if self._raw is not None:
            self._raw.abort()

    def _broken(self, err: int) -> None:
        """The open connection failed (an alert, a bad record): the application hears it."""
        self._state = _ENDED
        if self._raw is not None:
            self._raw.abort()
        error = self._error(err)
        self._tell_end(error if isinstance(error, Exception) else None)

    def _tell_end(self, exc: Exception | None) -> None:
        """The application hears of the end, once, and the link lets go of it.

        The two refer to each other (the application writes to the link): without
        this, every closed connection, with its SSL object and read buffer, would wait
        for the garbage collector instead of going when its last user drops it."""
        app, self._app = self._app, _NO_APP
        app.connection_lost(exc)

    def _error(self, err: int) -> OSError:
        """What the stdlib's ssl would raise for OpenSSL's error ``err``."""
        lib, ffi = _bindings()
        reason, library = _error_text(lib, ffi)
        if reason == "CERTIFICATE_VERIFY_FAILED":
            code = int(lib.SSL_get_verify_result(self._ssl))
            message = ffi.string(lib.X509_verify_cert_error_string(code)).decode(
                "ascii", "replace")
            failed = ssl.SSLCertVerificationError(
                1, f"[{library}: {reason}] certificate verify failed: {message}")
            failed.verify_code = code
            failed.verify_message = message
            error: ssl.SSLError = failed
        elif reason:
            error = ssl.SSLError(1, f"[{library}: {reason}] {reason.lower().replace('_', ' ')}")
        else:
            return ConnectionResetError(f"the TLS connection broke off (OpenSSL error {err})")
        error.reason = reason
        error.library = library
        return error

    def _read(self, flush: bool = True) -> None:
        lib, ffi = _bindings()
        conn, buffer, app = self._ssl, self._buffer, self._app
        while self._state == _OPEN:
            count = lib.SSL_read(conn, buffer, _READ_SIZE)
            if count > 0:
                app.data_received(ffi.buffer(buffer, count)[:])
                continue
            err = lib.SSL_get_error(conn, count)
            if err == lib.SSL_ERROR_WANT_READ:
                break
            if err == lib.SSL_ERROR_ZERO_RETURN:  # the server's close_notify
                lib.ERR_clear_error()
                self._state = _ENDED
                if app.eof_received() is not True and self._raw is not None:
                    self._raw.close()
                self._tell_end(None)
                return
            self._broken(err)
            return
        if flush:
            self._flush()

    def _flush(self) -> None:
        """Send what OpenSSL wrote to the outgoing memory BIO."""
        lib, ffi = _bindings()
        out, buffer, parts = self._out, self._buffer, []
        while True:
            count = lib.BIO_read(out, buffer, _READ_SIZE)
            if count <= 0:
                break
            parts.append(ffi.buffer(buffer, count)[:])
        raw = self._raw
        if parts and raw is not None and not raw.is_closing():
            raw.write(parts[0] if len(parts) == 1 else b"".join(parts))

    # -- the application's transport ---------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._state != _OPEN:
            return
        lib, _ = _bindings()
        written = lib.SSL_write(self._ssl, bytes(data), len(data))
        if written != len(data):
            self._broken(lib.SSL_get_error(self._ssl, written))
            return
        self._flush()

    def close(self) -> None:
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        if self._state == _OPEN:
            lib, _ = _bindings()
            lib.SSL_shutdown(self._ssl)  # our close_notify; the server's is not awaited
            lib.ERR_clear_error()
            self._flush()
        raw.close()

    def abort(self) -> None:
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._state != _OPEN or self._raw is None or self._raw.is_closing()

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None:
            self._raw.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tls_version" and self._state == _OPEN:
            lib, ffi = _bindings()
            return ffi.string(lib.SSL_get_version(self._ssl)).decode("ascii")
        return self._raw.get_extra_info(name, default) if self._raw is not None else default


async def open_tls(loop: asyncio.AbstractEventLoop, app: asyncio.Protocol, host: str,
                   port: int, context: BundledContext, server_name: str) -> None:
    """Connect to ``host:port``, make the TLS handshake, then hand ``app`` the TLS
    transport (its ``connection_made``). Raises what ``loop.create_connection`` would."""
    waiter: asyncio.Future[None] = loop.create_future()
    link = _TlsLink(context.connection(server_name), app, waiter)
    await loop.create_connection(lambda: link, host, port)
    try:
        await waiter
    except BaseException:
        link.abort()
        raise


async def start_tls(transport: asyncio.Transport, app: asyncio.Protocol,
                    context: BundledContext, server_name: str) -> None:
    """The TLS handshake over an open plain ``transport`` (a proxy's tunnel), then
    ``app.connection_made`` with the TLS transport, as ``loop.start_tls`` would."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    link = _TlsLink(context.connection(server_name), app, waiter)
    transport.set_protocol(link)
    link.connection_made(transport)
    try:
        await waiter
    except BaseException:
        link.abort()
        raise
