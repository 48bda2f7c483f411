"""What the device and admin handlers share: JSON errors, capped body reading, the
client certificate a call came with.

Every error the server sends is JSON ``{"error": "<code>", "detail": "<human text>"}``.
Handlers raise :class:`ApiError`; the error middleware in ``app.py`` turns it (and
aiohttp's own 404/405/413) into that shape. Handlers reach the server through
:func:`server_of`, as a :class:`~emulator.server.state.ServerState`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
from typing import Any

from aiohttp import web

from emulator.server.pki import der_serial_number, serial_hex
from emulator.server.state import MAX_VALIDITY_S, ServerState

JSON_LIMIT = 64 << 10  # control messages are small; anything bigger is a mistake
# How long a request body may pause before the server gives up on it (real seconds): a
# client whose body stops (it lost power or its network mid-upload, or it is hostile)
# would otherwise hold its connection and handler for good.
BODY_IDLE_S = 30.0
# The server a request arrived at, as its handlers see it: its state and Python API.
# (app.py's ReferenceServer is a ServerState; this module never imports app.py.)
SERVER_KEY: web.AppKey[ServerState] = web.AppKey("reference_server")
# The device a request was authenticated as, for the access log (aiohttp >= 3.12).
DEVICE_ID: web.RequestKey[str] = web.RequestKey("device_id", str)


def server_of(request: web.Request) -> ServerState:
    """The state of the server a request arrived at."""
    return request.app[SERVER_KEY]


class ApiError(Exception):
    """An HTTP error answer: status, wire code, human detail."""

    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None, *,
                 close_connection: bool = False) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        # True when the rest of the request body is not worth reading (too large): the
        # answer goes out with "Connection: close" and the connection is cut after it.
        self.close_connection = close_connection
        super().__init__(f"{status} {error}: {detail}")


def error_response(status: int, error: str, detail: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every refusal uses."""
    return web.json_response({"error": error, "detail": detail}, status=status,
                             headers=headers)


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading; a chunked body
    is read up to one byte past the limit, so nothing large is ever buffered. Either
    way the 413 closes the connection: the rest of the body is never read.

    A body that sends nothing for :data:`BODY_IDLE_S` is given up: the connection is cut
    and ``ConnectionResetError`` raised, as when the client hangs up mid-body. No answer
    is sent: a JSON 4xx would tell a device its payload is refused for good, and this
    one is not (it retries a broken connection).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise ApiError(413, "too_large", f"{what} of {declared} bytes exceeds {limit} bytes",
                       close_connection=True)
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            async with asyncio.timeout(BODY_IDLE_S):
                chunk = await request.content.read(min(65536, limit + 1 - total))
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(
                f"{what} stalled: nothing for {BODY_IDLE_S:g} s after {total} bytes"
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "too_large", f"{what} exceeds {limit} bytes",
                           close_connection=True)
    return b"".join(chunks)


async def read_json_object(request: web.Request, what: str) -> dict[str, Any]:
    """A JSON object body (400 with the reason when it is not one)."""
    raw = await read_body(request, JSON_LIMIT, what)
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_json", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", f"{what} must be a JSON object")
    return value


def field_str(body: dict[str, Any], name: str, *, max_len: int = 256,
              required: bool = True) -> str:
    """A string field of a JSON body (400 naming the field when missing or wrong)."""
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(400, "bad_request",
                       f"field '{name}' must be a non-empty string of at most {max_len} chars")
    return value


def field_seconds(body: dict[str, Any], name: str, default: int) -> int:
    """A validity period field in seconds, 1 s..a hundred years (400 naming it otherwise)."""
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or \
            not 1 <= value <= MAX_VALIDITY_S:
        raise ApiError(400, "bad_request", f"field '{name}' must be an integer of seconds "
                                           f"in 1..{MAX_VALIDITY_S} (a hundred years)")
    return value


def query_int(request: web.Request, name: str, default: int, *, minimum: int,
              maximum: int) -> int:
    """An integer query parameter within bounds (400 naming it otherwise)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query '{name}' must be an integer") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, "bad_request", f"query '{name}' must be in {minimum}..{maximum}")
    return value


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


async def read_upload(request: web.Request, limit: int) -> tuple[str, bytes, str]:
    """The Upload-Id, zip body and body SHA-256 (hex) of an upload, device's or
    manager's, after the checks of the wire contract: the id's form, Content-SHA256's
    form and match, the media type, the size limit."""
    upload_id = request.headers.get("Upload-Id", "")
    if not UUID.match(upload_id):
        raise ApiError(400, "bad_upload_id", "header Upload-Id must be a lower-case UUID")
    claimed = request.headers.get("Content-SHA256", "")
    if not SHA256_HEX.match(claimed):
        raise ApiError(400, "bad_content_sha256",
                       "header Content-SHA256 must be the 64 hex digit SHA-256 of the body")
    if request.content_type != "application/zip":
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be application/zip, not {request.content_type}")
    body = await read_body(request, limit, "upload body")
    digest = hashlib.sha256(body).hexdigest()
    if digest != claimed.lower():
        raise ApiError(400, "hash_mismatch",
                       f"Content-SHA256 {claimed.lower()} does not match the body ({digest})")
    return upload_id, body, digest


def peer_serial(ssl_object: ssl.SSLObject) -> str | None:
    """The serial (:func:`serial_hex`) of the connection's client certificate, or None
    when the client sent none.

    A certificate the client sends has passed OpenSSL's verification against our CA, or
    the handshake would have failed (verify mode CERT_OPTIONAL: a client may send none,
    never a bad one), so its serial is read from the DER OpenSSL hands over: decoding the
    whole certificate to a dict (``getpeercert()``) for each call of a session was 2% of
    the server's CPU per device-day.
    """
    if ssl_object.context.verify_mode == ssl.CERT_NONE:  # nothing verified: no identity
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return serial_hex(der_serial_number(der))
    except ValueError:  # not expected from OpenSSL; the slow way then
        peer = ssl_object.getpeercert()
        if not peer or "serialNumber" not in peer:
            return None
        # OpenSSL prints serials as whole hex bytes (maybe a leading 0): compare numbers.
        return serial_hex(int(str(peer["serialNumber"]), 16))
