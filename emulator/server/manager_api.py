"""The manager API: the second data path's routes, and the admin view of both paths.

A device manager (``device-direct manager run``) is a kind of client: it registers once
with a single-use registration key (the same keys devices use) and a CSR for its own
key, telling the server its host name, IP, OS, app version, location and contact
e-mail; it gets a client certificate whose subject is its manager id. Every later call
needs that certificate (mTLS): a device's certificate is refused here (403
``certificate_unknown``) and a manager's is refused by the device API the same way.

Device side, under ``/dd/v1/managers``:

* ``POST /register`` -> ``{manager_id, certificate, ca_certificate, not_after}``;
* ``POST /{mid}/uploads`` (``Upload-Id``, ``Content-SHA256``, a zip): a payload with a
  ``Source kind="manager"`` element, for a printer in the manager's scope
  (``sources.py`` explains the scope and its ``learn`` default); duplicates answer
  ``duplicate``, as for devices;
* ``GET /{mid}/actions`` and ``POST /{mid}/actions/{aid}/result``: actions for the
  printers it manages (each carries the printer's serial).

Admin side, under ``/admin/v1``: managers and their scope, the combined printer list
(one printer, its sources), per-printer billing meters (one source a day) and the
disagreements between sources.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import uuid
from datetime import timedelta

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from emulator.server.device_api import RESULT_STATUSES, SERIAL
from emulator.server.http_common import (
    DEVICE_ID,
    SERVER_KEY,
    ApiError,
    field_seconds,
    field_str,
    peer_serial,
    read_json_object,
    read_upload,
    server_of,
)
from emulator.server.payload_check import PayloadRejected, check_payload
from emulator.server.pki import CsrError, serial_hex
from emulator.server.sources import OutOfScope, Sources
from emulator.server.storage import KeyRefused, hash_key, iso

SOURCES_KEY: web.AppKey[Sources] = web.AppKey("sources", Sources)
MANAGER_ACTIONS = ("send-meters-now", "get-status", "print-test-page")
EMAIL = re.compile(r"^[^@\s<>]{1,64}@[^@\s<>]{1,190}$")
INFO_FIELDS = ("hostname", "ip", "os", "app_version", "location", "contact_email")


def sources_of(request: web.Request) -> Sources:
    return request.app[SOURCES_KEY]


def manager_id_for(key_hash: str) -> str:
    """A manager's id: stable per registration key (a retried registration keeps it)."""
    return "mgr-" + hashlib.sha256(("manager:" + key_hash).encode()).hexdigest()[:20]


def authenticate(request: web.Request) -> str:
    """The manager id of the request's client certificate (401/403 JSON otherwise)."""
    server = server_of(request)
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    serial = peer_serial(ssl_object) if ssl_object is not None else None
    if serial is None:
        raise ApiError(401, "client_certificate_required",
                       "this call needs the client certificate issued at registration")
    row = sources_of(request).manager_by_cert(serial)
    if row is None:
        raise ApiError(403, "certificate_unknown",
                       "the client certificate was not issued to a manager here "
                       "(or was replaced by a later registration)")
    manager_id = str(row["manager_id"])
    request[DEVICE_ID] = manager_id
    url_id = request.match_info.get("mid")
    if url_id is not None and url_id != manager_id:
        raise ApiError(403, "manager_mismatch",
                       f"the certificate belongs to manager {manager_id}, not {url_id}")
    sources_of(request).touch(manager_id, server.clock.now())
    return manager_id


async def register(request: web.Request) -> web.Response:
    """POST /dd/v1/managers/register: check the key, sign the CSR, create the manager."""
    server = server_of(request)
    sources = sources_of(request)
    body = await read_json_object(request, "manager registration")
    info = {name: field_str(body, name) for name in INFO_FIELDS}
    try:
        ipaddress.ip_address(info["ip"])
    except ValueError:
        raise ApiError(400, "bad_request", "field 'ip' must be an IPv4 or IPv6 address"
                       ) from None
    if not EMAIL.match(info["contact_email"]):
        raise ApiError(400, "bad_request", "field 'contact_email' must be an e-mail address")
    key_hash = hash_key(field_str(body, "registration_key", max_len=128))
    csr = field_str(body, "csr", max_len=8192)
    manager_id = manager_id_for(key_hash)
    try:
        cert = server.pki.sign_client_csr(csr, serial=manager_id, now=server.wall.now(),
                                          days=server.cert_days)
    except CsrError as exc:
        raise ApiError(400, "bad_csr", str(exc)) from exc
    now = server.clock.now()
    existing = sources.manager(manager_id)
    try:
        if existing is not None and existing["last_contact"] is not None:
            raise KeyRefused("used")  # a retry is allowed only before the first mTLS call
        server.storage.consume_registration_key(key_hash, now=now, serial=manager_id)
    except KeyRefused as exc:
        raise ApiError(403, f"registration_key_{exc.reason}", {
            "unknown": "the registration key is not one this server issued",
            "used": "the registration key was already used; ask for a new one",
            "expired": "the registration key has expired; ask for a new one",
        }[exc.reason]) from exc
    sources.register_manager(manager_id=manager_id, info=info,
                             cert_serial=serial_hex(cert.serial_number), now=now)
    request[DEVICE_ID] = manager_id
    return web.json_response({
        "manager_id": manager_id,
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "ca_certificate": server.pki.bundle_pem.decode(),
        "not_after": iso(cert.not_valid_after_utc),
    }, status=201)


async def renew(request: web.Request) -> web.Response:
    """POST /dd/v1/managers/{mid}/renew: a new certificate for a new key (mTLS); the
    current certificate stops working as soon as the new one is issued."""
    server = server_of(request)
    manager_id = authenticate(request)
    body = await read_json_object(request, "renewal")
    csr = field_str(body, "csr", max_len=8192)
    try:
        cert = server.pki.sign_client_csr(csr, serial=manager_id, now=server.wall.now(),
                                          days=server.cert_days)
    except CsrError as exc:
        raise ApiError(400, "bad_csr", str(exc)) from exc
    sources_of(request).replace_certificate(manager_id, serial_hex(cert.serial_number))
    return web.json_response({
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "ca_certificate": server.pki.bundle_pem.decode(),
        "not_after": iso(cert.not_valid_after_utc),
    })


async def upload(request: web.Request) -> web.Response:
    """POST /dd/v1/managers/{mid}/uploads: one printer's payload, stored once.

    A refusal (4xx) of an authenticated manager's upload is also kept
    (``Sources.record_rejection``) for the dashboard's list of managers' problems."""
    manager_id = authenticate(request)
    try:
        return await _upload(request, manager_id)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            sources_of(request).record_rejection(
                manager_id, status=exc.status, error=exc.error, detail=exc.detail,
                now=server_of(request).clock.now())
        raise


async def _upload(request: web.Request, manager_id: str) -> web.Response:
    server = server_of(request)
    sources = sources_of(request)
    upload_id, body, digest = await read_upload(request, server.max_upload_bytes)
    owner = sources.upload_owner(upload_id)
    if owner == manager_id:
        return web.json_response({"status": "duplicate", "upload_id": upload_id})
    if owner is not None or server.storage.upload_owner(upload_id) is not None:
        raise ApiError(409, "upload_id_conflict",
                       f"Upload-Id {upload_id} was already used by another client")
    try:
        facts = await asyncio.to_thread(check_payload, body, upload_id=upload_id)
    except PayloadRejected as exc:
        raise ApiError(exc.status, exc.error, exc.detail) from exc
    if facts.source != "manager":
        raise ApiError(422, "not_a_manager_payload",
                       "a manager's payload must carry <Source kind=\"manager\">")
    if not SERIAL.match(facts.serial):
        raise ApiError(422, "bad_serial", f"payload serial {facts.serial!r} is not usable")
    try:
        stored = sources.store_upload(
            manager_id, upload_id=upload_id, serial=facts.serial, model=facts.model,
            sequence=facts.sequence, generated_at=facts.generated_at, meters=facts.meters,
            body=body, sha256=digest, now=server.clock.now())
    except OutOfScope as exc:
        raise ApiError(403, "out_of_scope",
                       f"printer {exc.serial} is not this manager's to report: {exc.reason}"
                       ) from exc
    if not stored:
        return web.json_response({"status": "duplicate", "upload_id": upload_id})
    return web.json_response({"status": "stored", "upload_id": upload_id,
                              "serial": facts.serial}, status=201)


async def list_actions(request: web.Request) -> web.Response:
    """GET /dd/v1/managers/{mid}/actions: pending, unexpired actions."""
    manager_id = authenticate(request)
    return web.json_response({"actions": sources_of(request).pending_actions(
        manager_id, server_of(request).clock.now())})


async def action_result(request: web.Request) -> web.Response:
    """POST /dd/v1/managers/{mid}/actions/{aid}/result: keep the first result."""
    manager_id = authenticate(request)
    sources = sources_of(request)
    action_id = request.match_info["aid"]
    action = sources.action(action_id)
    if action is None or action["manager_id"] != manager_id:
        raise ApiError(404, "unknown_action", f"no action {action_id} for this manager")
    body = await read_json_object(request, "action result")
    status = body.get("status")
    if status not in RESULT_STATUSES:
        raise ApiError(400, "bad_request",
                       f"field 'status' must be one of {', '.join(RESULT_STATUSES)}")
    detail = body.get("detail", {})
    if not isinstance(detail, dict):
        raise ApiError(400, "bad_request", "field 'detail' must be a JSON object")
    first = sources.record_result(action_id, status, detail,
                                  now=server_of(request).clock.now())
    return web.json_response({"status": "recorded" if first else "duplicate",
                              "action_id": action_id})


# -- admin ----------------------------------------------------------------------------------


def _manager(request: web.Request) -> str:
    manager_id = request.match_info["mid"]
    if sources_of(request).manager(manager_id) is None:
        raise ApiError(404, "unknown_manager", f"no manager {manager_id}")
    return manager_id


async def admin_managers(request: web.Request) -> web.Response:
    """GET /admin/v1/managers -> {"managers": [...]} with identity, scope, uploads."""
    return web.json_response({"managers": sources_of(request).managers()})


async def admin_put_scope(request: web.Request) -> web.Response:
    """PUT /admin/v1/managers/{mid}/scope {"serials": [...]}: fix the manager's scope."""
    manager_id = _manager(request)
    body = await read_json_object(request, "scope")
    serials = body.get("serials")
    if not isinstance(serials, list) or len(serials) > 10000 or not all(
            isinstance(s, str) and SERIAL.match(s) for s in serials):
        raise ApiError(400, "bad_request",
                       "field 'serials' must be a list of at most 10000 printer serials")
    sources = sources_of(request)
    sources.set_scope(manager_id, serials)
    manager = sources.manager(manager_id)
    assert manager is not None
    return web.json_response({"manager_id": manager_id, "scope": manager["scope"]})


async def admin_manager_uploads(request: web.Request) -> web.Response:
    """GET /admin/v1/managers/{mid}/uploads -> what the manager sent."""
    return web.json_response({"uploads": sources_of(request).uploads(_manager(request))})


async def admin_enqueue_action(request: web.Request) -> web.Response:
    """POST /admin/v1/managers/{mid}/actions {"serial", "type", "params", "ttl_s"}."""
    manager_id = _manager(request)
    body = await read_json_object(request, "action")
    serial = field_str(body, "serial", max_len=64)
    type_ = field_str(body, "type", max_len=64)
    if type_ not in MANAGER_ACTIONS:
        raise ApiError(400, "bad_request",
                       f"field 'type' must be one of {', '.join(MANAGER_ACTIONS)}")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "field 'params' must be a JSON object")
    ttl_s = field_seconds(body, "ttl_s", 86400)
    server = server_of(request)
    now = server.clock.now()
    action_id = str(uuid.UUID(int=server.rng.getrandbits(128), version=4))
    sources_of(request).add_action(action_id, manager_id, serial, type_, params, now=now,
                                   expires_at=now + timedelta(seconds=ttl_s))
    return web.json_response({"id": action_id, "serial": serial, "type": type_},
                             status=201)


async def admin_manager_actions(request: web.Request) -> web.Response:
    """GET /admin/v1/managers/{mid}/actions -> every action with its result."""
    return web.json_response({"actions": sources_of(request).actions(_manager(request))})


async def admin_printers(request: web.Request) -> web.Response:
    """GET /admin/v1/printers -> one entry per printer (serial, model) with its sources."""
    return web.json_response({"printers": sources_of(request).printers()})


async def admin_printer_meters(request: web.Request) -> web.Response:
    """GET /admin/v1/printers/{serial}/meters?model=M -> billing days and disagreements."""
    serial = request.match_info["serial"]
    sources = sources_of(request)
    models = [p["model"] for p in sources.printers() if p["serial"] == serial]
    model = request.query.get("model") or (models[0] if len(models) == 1 else "")
    if model not in models:
        raise ApiError(404 if not models else 400, "unknown_printer" if not models else
                       "bad_request", f"no printer {serial}" if not models else
                       f"serial {serial} names several models: give ?model=")
    return web.json_response(sources.billing(serial, model))


async def admin_disagreements(request: web.Request) -> web.Response:
    """GET /admin/v1/disagreements -> every meter two sources disagree on."""
    return web.json_response({"disagreements": sources_of(request).disagreements()})


async def _open(app: web.Application) -> None:
    app[SOURCES_KEY] = Sources(app[SERVER_KEY].storage.path)


async def _close(app: web.Application) -> None:
    app[SOURCES_KEY].close()


def add_routes(app: web.Application) -> None:
    """Attach the manager API and the combined admin view to ``app``."""
    app.on_startup.append(_open)
    app.on_cleanup.append(_close)
    r = app.router
    r.add_post("/dd/v1/managers/register", register)
    r.add_post("/dd/v1/managers/{mid}/renew", renew)
    r.add_post("/dd/v1/managers/{mid}/uploads", upload)
    r.add_get("/dd/v1/managers/{mid}/actions", list_actions)
    r.add_post("/dd/v1/managers/{mid}/actions/{aid}/result", action_result)
    r.add_get("/admin/v1/managers", admin_managers)
    r.add_put("/admin/v1/managers/{mid}/scope", admin_put_scope)
    r.add_get("/admin/v1/managers/{mid}/uploads", admin_manager_uploads)
    r.add_post("/admin/v1/managers/{mid}/actions", admin_enqueue_action)
    r.add_get("/admin/v1/managers/{mid}/actions", admin_manager_actions)
    r.add_get("/admin/v1/printers", admin_printers)
    r.add_get("/admin/v1/printers/{serial}/meters", admin_printer_meters)
    r.add_get("/admin/v1/disagreements", admin_disagreements)
