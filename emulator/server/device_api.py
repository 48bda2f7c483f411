"""The device API under ``/dd/v1``: registration, uploads, actions, firmware, logs.

Every call but ``/register`` needs the client certificate the server issued: the
device is the one that certificate was issued to (peer serial number -> device), never
a URL or body field. A missing certificate is 401, a revoked or unknown one 403, and a
``{id}`` in the URL that is not the certificate's device 403.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from emulator.server.firmware import (
    IMAGE_PATH,
    RangeNotSatisfiable,
    check_model,
    newest_offer,
    parse_range,
    parse_version,
)
from emulator.server.firmware_qa import serve_faulty
from emulator.server.http_common import (
    DEVICE_ID,
    SHA256_HEX,
    ApiError,
    field_str,
    peer_serial,
    read_body,
    read_json_object,
    read_upload,
    server_of,
)
from emulator.server.payload_check import PayloadRejected, check_payload
from emulator.server.pki import CsrError, serial_hex
from emulator.server.storage import KeyRefused, hash_key, iso

SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
RESULT_STATUSES = ("succeeded", "failed", "rejected", "expired")
LOG_TYPES = ("text/plain", "application/gzip")
INLINE_CHECK_BYTES = 32 << 10


def device_id_for(serial: str) -> str:
    """A device's id: stable per serial, URL-safe whatever the serial holds."""
    return "dd-" + hashlib.sha256(serial.encode()).hexdigest()[:20]


def authenticate(request: web.Request) -> str:
    """The device id of the request's client certificate (401/403 JSON when none fits)."""
    server = server_of(request)
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    serial = peer_serial(ssl_object) if ssl_object is not None else None
    if serial is None:
        raise ApiError(401, "client_certificate_required",
                       "this call needs the client certificate issued at registration")
    cert = server.storage.certificate(serial)
    if cert is None:
        raise ApiError(403, "certificate_unknown",
                       "the client certificate was not issued to any device here")
    if cert["revoked_at"] is not None:
        raise ApiError(403, "certificate_revoked",
                       f"the client certificate was revoked at {cert['revoked_at']} "
                       "(the device registered again); use the new certificate")
    device_id = str(cert["device_id"])
    request[DEVICE_ID] = device_id
    url_id = request.match_info.get("id")
    if url_id is not None and url_id != device_id:
        raise ApiError(403, "device_mismatch",
                       f"the certificate belongs to device {device_id}, not {url_id}")
    server.storage.touch_device(device_id, server.clock.now())
    return device_id


# -- registration -------------------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    """POST /dd/v1/register: check the key, sign the CSR, (re)create the device."""
    server = server_of(request)
    body = await read_json_object(request, "registration")
    serial = field_str(body, "serial", max_len=64)
    if not SERIAL.match(serial):
        raise ApiError(400, "bad_request",
                       "field 'serial' must be 1-64 letters, digits, '.', '_' or '-'")
    model = field_str(body, "model", max_len=128)
    mac = field_str(body, "mac", max_len=17)
    if not MAC.match(mac):
        raise ApiError(400, "bad_request", "field 'mac' must look like 00:11:22:33:44:55")
    firmware = body.get("firmware")
    if not isinstance(firmware, dict) or not firmware or len(firmware) > 64 or not all(
        isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 64 and 0 < len(v) <= 64
        for k, v in firmware.items()
    ):
        raise ApiError(400, "bad_request",
                       "field 'firmware' must be an object of module name -> version strings")
    key = field_str(body, "registration_key", max_len=128)
    csr = field_str(body, "csr", max_len=8192)
    wall_now = server.wall.now()  # certificate validity is checked in real time
    try:
        cert = server.pki.sign_client_csr(csr, serial=serial, now=wall_now,
                                          days=server.cert_days)
    except CsrError as exc:
        raise ApiError(400, "bad_csr", str(exc)) from exc
    now = server.clock.now()
    try:
        server.storage.consume_registration_key(hash_key(key), now=now, serial=serial)
    except KeyRefused as exc:
        raise ApiError(403, f"registration_key_{exc.reason}", {
            "unknown": "the registration key is not one this server issued",
            "used": "the registration key was already used; ask for a new one",
            "expired": "the registration key has expired; ask for a new one",
        }[exc.reason]) from exc
    device_id = device_id_for(serial)
    server.storage.register_device(
        device_id=device_id, serial=serial, model=model, mac=mac.lower(), firmware=firmware,
        cert_serial=serial_hex(cert.serial_number), not_after=cert.not_valid_after_utc,
        now=now)
    request[DEVICE_ID] = device_id
    return web.json_response({
        "device_id": device_id,
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "ca_certificate": server.pki.bundle_pem.decode(),
        "not_after": iso(cert.not_valid_after_utc),
    }, status=201)


async def renew(request: web.Request) -> web.Response:
    """POST /dd/v1/devices/{id}/renew: a new client certificate for a new key (mTLS).

    The device proves itself with its current certificate and sends a CSR for a fresh
    key; the new certificate replaces (revokes) the current one.
    """
    server = server_of(request)
    device_id = authenticate(request)
    body = await read_json_object(request, "renewal")
    csr = field_str(body, "csr", max_len=8192)
    device = server.storage.device(device_id)
    assert device is not None  # authenticate() found its certificate
    try:
        cert = server.pki.sign_client_csr(csr, serial=str(device["serial"]),
                                          now=server.wall.now(), days=server.cert_days)
    except CsrError as exc:
        raise ApiError(400, "bad_csr", str(exc)) from exc
    server.storage.replace_certificate(
        device_id, cert_serial=serial_hex(cert.serial_number),
        not_after=cert.not_valid_after_utc, now=server.clock.now())
    return web.json_response({
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "ca_certificate": server.pki.bundle_pem.decode(),
        "not_after": iso(cert.not_valid_after_utc),
    })


# -- uploads --------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    """POST /dd/v1/devices/{id}/uploads: check and store a payload zip once."""
    server = server_of(request)
    device_id = authenticate(request)
    upload_id, body, digest = await read_upload(request, server.max_upload_bytes)
    owner = server.storage.upload_owner(upload_id)
    if owner == device_id:
        return web.json_response({"status": "duplicate", "upload_id": upload_id})
    if owner is not None:
        raise ApiError(409, "upload_id_conflict",
                       f"Upload-Id {upload_id} was already used by another device")
    try:
        # Unzip + XSD validation is the heavy part: a daily payload (tens of KiB, well
        # under a millisecond) is checked in place, a big one off the event loop.
        if len(body) <= INLINE_CHECK_BYTES:
            facts = check_payload(body, upload_id=upload_id)
        else:
            facts = await asyncio.to_thread(check_payload, body, upload_id=upload_id)
    except PayloadRejected as exc:
        raise ApiError(exc.status, exc.error, exc.detail) from exc
    if facts.source != "device":  # a manager's reading goes to /dd/v1/managers/
        raise ApiError(422, "not_a_device_payload",
                       "a device uploads its own data: <Source> is for managers' payloads")
    if device_id_for(facts.serial) != device_id:  # the id is derived from the serial
        raise ApiError(403, "serial_mismatch",
                       f"payload serial {facts.serial!r} is not this certificate's device")
    stored = server.storage.store_upload(device_id, facts, body=body, sha256=digest,
                                         now=server.clock.now())
    if not stored:  # the same Upload-Id won a race on another connection
        return web.json_response({"status": "duplicate", "upload_id": upload_id})
    return web.json_response(
        {"status": "stored", "upload_id": upload_id, "sequence": facts.sequence}, status=201)


# -- actions --------------------------------------------------------------------------------


async def list_actions(request: web.Request) -> web.Response:
    """GET /dd/v1/devices/{id}/actions: pending, unexpired actions."""
    server = server_of(request)
    device_id = authenticate(request)
    return web.json_response(
        {"actions": server.storage.pending_actions(device_id, server.clock.now())})


async def action_result(request: web.Request) -> web.Response:
    """POST /dd/v1/devices/{id}/actions/{aid}/result: keep the first result."""
    server = server_of(request)
    device_id = authenticate(request)
    action_id = request.match_info["aid"]
    action = server.storage.action(action_id)
    if action is None or action["device_id"] != device_id:
        raise ApiError(404, "unknown_action", f"no action {action_id} for this device")
    body = await read_json_object(request, "action result")
    status = body.get("status")
    if status not in RESULT_STATUSES:
        raise ApiError(400, "bad_request",
                       f"field 'status' must be one of {', '.join(RESULT_STATUSES)}")
    detail = body.get("detail", {})
    if not isinstance(detail, dict):
        raise ApiError(400, "bad_request", "field 'detail' must be a JSON object")
    first = server.storage.record_result(action_id, status, detail, now=server.clock.now())
    return web.json_response({"status": "recorded" if first else "duplicate",
                              "action_id": action_id})


# -- firmware -------------------------------------------------------------------------------


async def firmware_offer(request: web.Request) -> web.Response:
    """GET /dd/v1/devices/{id}/firmware?model=&version=: 204 or a signed manifest."""
    server = server_of(request)
    authenticate(request)
    model = request.query.get("model", "")
    version = request.query.get("version", "")
    try:
        check_model(model)
        parse_version(version)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"query model= and version= are needed: {exc}"
                       ) from exc
    forced = server.firmware_qa.offers.get(model)
    if forced is not None:  # QA serves a manifest the catalog never would
        return web.json_response(forced)
    offer = newest_offer(server.storage.firmware(model), version=version,
                         now=server.clock.now())
    if offer is None:
        return web.Response(status=204)
    return web.json_response({"manifest": offer["manifest"], "signature": offer["signature"]})


async def firmware_image(request: web.Request) -> web.StreamResponse:
    """GET /dd/v1/firmware/images/{sha256}: the image, with single-range support."""
    server = server_of(request)
    authenticate(request)
    sha = request.match_info["sha256"].lower()
    qa = server.firmware_qa
    image = qa.images.get(sha)
    if image is None:
        path = server.firmware_image_path(sha)
        if not SHA256_HEX.match(sha) or not server.storage.firmware_sha_known(sha) or \
                not path.is_file():
            raise ApiError(404, "not_found", f"no firmware image {sha}")
        image = await asyncio.to_thread(path.read_bytes)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha}"'}
    try:
        rng = parse_range(request.headers.get("Range"), len(image))
    except RangeNotSatisfiable as exc:
        raise ApiError(416, "range_not_satisfiable", str(exc),
                       {"Content-Range": f"bytes */{len(image)}"}) from exc
    truncate = qa.take_truncation()
    if truncate or qa.fault.extra_bytes:
        return await serve_faulty(request, image, rng, headers, truncate=truncate,
                                  extra=qa.fault.extra_bytes)
    if rng is None:
        return web.Response(body=image, content_type="application/octet-stream",
                            headers=headers)
    headers["Content-Range"] = rng.content_range
    return web.Response(status=206, body=image[rng.first: rng.last + 1],
                        content_type="application/octet-stream", headers=headers)


# -- engineering logs -------------------------------------------------------------------------


async def upload_log(request: web.Request) -> web.Response:
    """POST /dd/v1/devices/{id}/logs: an engineering log, stored apart from device data."""
    server = server_of(request)
    device_id = authenticate(request)
    if request.content_type not in LOG_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"logs must be {' or '.join(LOG_TYPES)}, not {request.content_type}")
    body = await read_body(request, server.max_log_bytes, "engineering log")
    if not body:
        raise ApiError(400, "bad_request", "the log is empty")
    if request.content_type == "application/gzip" and not body.startswith(b"\x1f\x8b"):
        raise ApiError(422, "bad_gzip", "the body is not gzip data")
    log_id = server.storage.add_log(
        device_id, body, content_type=request.content_type,
        content_encoding=request.headers.get("Content-Encoding", "identity"),
        now=server.clock.now())
    return web.json_response({"status": "stored", "log_id": log_id}, status=201)


def add_routes(app: web.Application) -> None:
    """Attach the device API to ``app``."""
    app.router.add_post("/dd/v1/register", register)
    app.router.add_post("/dd/v1/devices/{id}/renew", renew)
    app.router.add_post("/dd/v1/devices/{id}/uploads", upload)
    app.router.add_get("/dd/v1/devices/{id}/actions", list_actions)
    app.router.add_post("/dd/v1/devices/{id}/actions/{aid}/result", action_result)
    app.router.add_get("/dd/v1/devices/{id}/firmware", firmware_offer)
    app.router.add_get(IMAGE_PATH + "{sha256}", firmware_image)
    app.router.add_post("/dd/v1/devices/{id}/logs", upload_log)

