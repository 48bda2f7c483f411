"""The admin API under ``/admin/v1``, for QA, tests and the CLI.

Every call needs ``Authorization: Bearer <token>``; the token is made at first start
and kept in ``<state_dir>/admin-token`` (0600). The handlers are thin: they validate
input and call the same :class:`ReferenceServer` methods Python callers use.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from emulator.server.faults import TlsFault
from emulator.server.http_common import (
    ApiError,
    field_seconds,
    field_str,
    query_int,
    read_body,
    read_json_object,
    server_of,
)

_MAX_FIRMWARE = 256 << 20


@web.middleware
async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    """401 for any admin call without the bearer token."""
    if request.path.startswith("/admin/"):
        server = server_of(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), server.admin_token.encode()
        ):
            raise ApiError(401, "unauthorized",
                           "the admin API needs 'Authorization: Bearer <token>' (the token "
                           "is in the server's state directory, file admin-token)",
                           {"WWW-Authenticate": "Bearer"})
    response: web.StreamResponse = await handler(request)
    return response


def _device(request: web.Request) -> str:
    device_id = request.match_info["id"]
    if server_of(request).storage.device(device_id) is None:
        raise ApiError(404, "unknown_device", f"no device {device_id}")
    return device_id


async def create_keys(request: web.Request) -> web.Response:
    """POST /admin/v1/registration-keys {"count", "ttl_s"} -> 201 {"keys": [...]}."""
    body = await read_json_object(request, "key request") if request.can_read_body else {}
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10000:
        raise ApiError(400, "bad_request", "field 'count' must be an integer in 1..10000")
    ttl_s = field_seconds(body, "ttl_s", 86400)
    server = server_of(request)
    keys = [server.create_registration_key(ttl_s=ttl_s) for _ in range(count)]
    return web.json_response({"keys": keys, "ttl_s": ttl_s}, status=201)


async def list_devices(request: web.Request) -> web.Response:
    """GET /admin/v1/devices -> {"devices": [...]} with last contact and upload count."""
    return web.json_response({"devices": server_of(request).storage.devices()})


async def list_uploads(request: web.Request) -> web.Response:
    """GET /admin/v1/devices/{id}/uploads -> uploads with their facts, and sequence gaps."""
    storage = server_of(request).storage
    device_id = _device(request)
    return web.json_response({"uploads": storage.uploads(device_id),
                              "sequence_gaps": storage.sequence_gaps(device_id)})


async def upload_zip(request: web.Request) -> web.Response:
    """GET /admin/v1/uploads/{upload_id} -> the zip byte for byte as the device sent it."""
    storage = server_of(request).storage
    upload_id = request.match_info["upload_id"]
    record = storage.upload_record(upload_id)
    body = storage.upload_zip(upload_id) if record is not None else None
    if record is None or body is None:
        raise ApiError(404, "unknown_upload", f"no upload {upload_id}")
    return web.Response(body=body, content_type="application/zip", headers={
        "Content-SHA256": record["sha256"], "Upload-Id": record["upload_id"],
        "Device-Id": record["device_id"],
        "Content-Disposition": f'attachment; filename="{record["device_id"]}-'
                               f'{int(record["sequence"]):08d}.zip"'})


async def meter_history(request: web.Request) -> web.Response:
    """GET /admin/v1/devices/{id}/meters[?name=] -> {"meters": [...]}."""
    storage = server_of(request).storage
    device_id = _device(request)
    return web.json_response(
        {"meters": storage.meter_history(device_id, request.query.get("name"))})


async def enqueue_action(request: web.Request) -> web.Response:
    """POST /admin/v1/devices/{id}/actions {type, params, expires_in_s} -> 201 {"id"}."""
    server = server_of(request)
    device_id = _device(request)
    body = await read_json_object(request, "action")
    type_ = field_str(body, "type", max_len=64)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "field 'params' must be a JSON object")
    expires_in_s = field_seconds(body, "expires_in_s", 86400)
    action_id = server.enqueue_action(device_id, type_, params, expires_in_s)
    return web.json_response({"id": action_id}, status=201)


async def list_actions(request: web.Request) -> web.Response:
    """GET /admin/v1/devices/{id}/actions -> every action with its result (or null)."""
    storage = server_of(request).storage
    return web.json_response({"actions": storage.actions(_device(request))})


async def list_logs(request: web.Request) -> web.Response:
    """GET /admin/v1/devices/{id}/logs -> engineering log metadata (no bodies)."""
    storage = server_of(request).storage
    logs = [{k: v for k, v in r.items() if k != "body"}
            for r in storage.logs(_device(request))]
    return web.json_response({"logs": logs})


async def publish_firmware(request: web.Request) -> web.Response:
    """POST /admin/v1/firmware?model=&version=[&expires_in_s=] with the raw image."""
    server = server_of(request)
    model = request.query.get("model", "")
    version = request.query.get("version", "")
    expires_in_s = query_int(request, "expires_in_s", 30 * 86400, minimum=1,
                             maximum=10 * 365 * 86400)
    image = await read_body(request, _MAX_FIRMWARE, "firmware image")
    try:
        manifest = server.publish_firmware(model, version, image, expires_in_s)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from exc
    return web.json_response({"manifest": manifest}, status=201)


async def list_firmware(request: web.Request) -> web.Response:
    """GET /admin/v1/firmware -> every published manifest with its signature."""
    return web.json_response({"firmware": server_of(request).storage.firmware()})


async def firmware_key(request: web.Request) -> web.Response:
    """GET /admin/v1/firmware/public-key -> the Ed25519 public key, PEM."""
    return web.Response(body=server_of(request).firmware_public_key_pem,
                        content_type="application/x-pem-file")


async def ca_certificate(request: web.Request) -> web.Response:
    """GET /admin/v1/ca-certificate -> the PEM bundle devices trust."""
    return web.Response(body=server_of(request).pki.bundle_pem,
                        content_type="application/x-pem-file")


async def get_faults(request: web.Request) -> web.Response:
    """GET /admin/v1/faults -> the fault plan in force."""
    return web.json_response(server_of(request).faults.as_dict())


async def put_faults(request: web.Request) -> web.Response:
    """PUT /admin/v1/faults {fail_next, fail_fraction, latency_ms, drop_next, tls}."""
    body = await read_json_object(request, "fault plan")
    unknown = set(body) - {"fail_next", "fail_fraction", "latency_ms", "drop_next", "tls"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown fault field(s): {', '.join(sorted(unknown))}")
    try:
        plan = server_of(request).set_fault(
            fail_next=_int(body, "fail_next"), fail_fraction=float(body.get("fail_fraction", 0)),
            latency_ms=_int(body, "latency_ms"), drop_next=_int(body, "drop_next"),
            tls=TlsFault(body.get("tls", "none")))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "bad_request", f"bad fault plan: {exc}") from exc
    return web.json_response(plan.as_dict())


async def clear_faults(request: web.Request) -> web.Response:
    """DELETE /admin/v1/faults -> no faults."""
    return web.json_response(server_of(request).clear_faults().as_dict())


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"'{name}' must be an integer")
    return value


def add_routes(app: web.Application) -> None:
    """Attach the admin API to ``app``."""
    r = app.router
    r.add_post("/admin/v1/registration-keys", create_keys)
    r.add_get("/admin/v1/devices", list_devices)
    r.add_get("/admin/v1/devices/{id}/uploads", list_uploads)
    r.add_get("/admin/v1/uploads/{upload_id}", upload_zip)
    r.add_get("/admin/v1/devices/{id}/meters", meter_history)
    r.add_post("/admin/v1/devices/{id}/actions", enqueue_action)
    r.add_get("/admin/v1/devices/{id}/actions", list_actions)
    r.add_get("/admin/v1/devices/{id}/logs", list_logs)
    r.add_post("/admin/v1/firmware", publish_firmware)
    r.add_get("/admin/v1/firmware", list_firmware)
    r.add_get("/admin/v1/firmware/public-key", firmware_key)
    r.add_get("/admin/v1/ca-certificate", ca_certificate)
    r.add_get("/admin/v1/faults", get_faults)
    r.add_put("/admin/v1/faults", put_faults)
    r.add_delete("/admin/v1/faults", clear_faults)
