"""Conformance: the running server answers as docs/openapi.yaml says.

For every operation in the OpenAPI file there is a scenario (a happy call and refusals);
each answer's status must be documented for that operation and its JSON body must
validate against the documented schema (jsonschema, draft 2020-12, which OpenAPI 3.1
uses). The app's routes and the documented paths must be the same set.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from refserver_helpers import Device, payload_zip, register, server_ctx

from emulator.server import ReferenceServer
from emulator.server.pki import make_csr

SPEC_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _operations() -> dict[str, tuple[str, str]]:
    ops = {}
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            ops[op["operationId"]] = (method.upper(), path)
    return ops


OPERATIONS = _operations()


class Checker:
    """Sends requests for one operation and validates each answer against the spec."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server
        self.seen: dict[str, set[int]] = {}
        self.manager: Device  # registered by s_manager_register

    async def call(self, op_id: str, *, params: dict[str, str] | None = None,
                   device: Device | None = None, admin: bool = False,
                   **kw: Any) -> tuple[int, Any]:
        method, template = OPERATIONS[op_id]
        path = template.format(**(params or {}))
        ctx = device.ctx if device else server_ctx(self.server)
        headers = kw.pop("headers", {})
        query = kw.pop("query", None)
        if admin:
            headers["Authorization"] = f"Bearer {self.server.admin_token}"
        async with aiohttp.ClientSession() as s, s.request(
            method, self.server.base_url + path, ssl=ctx, headers=headers, params=query, **kw
        ) as r:
            raw = await r.read()
            status, ctype = r.status, r.content_type
            resp_headers = r.headers
        self.seen.setdefault(op_id, set()).add(status)
        responses = SPEC["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{op_id}: status {status} is not documented"
        doc = responses[str(status)]
        pointer = ["paths", template, method.lower(), "responses", str(status)]
        if "$ref" in doc:
            name = doc["$ref"].rsplit("/", 1)[1]
            doc = SPEC["components"]["responses"][name]
            pointer = ["components", "responses", name]
        content = doc.get("content", {})
        if not content:
            assert raw == b"", f"{op_id} {status}: documented without a body"
            return status, None
        assert ctype in content, f"{op_id} {status}: content type {ctype} not documented"
        for name, header in doc.get("headers", {}).items():
            if header.get("required"):
                assert name in resp_headers, f"{op_id} {status}: header {name} missing"
        if ctype != "application/json":
            return status, raw
        body = yaml.safe_load(raw)  # JSON is YAML; keeps one parser
        schema = {**SPEC, "$ref": _pointer(*pointer, "content", ctype, "schema")}
        jsonschema.Draft202012Validator(schema).validate(body)
        return status, body


@pytest.fixture
async def checker(server: ReferenceServer) -> Checker:
    return Checker(server)


Scenario = Callable[[Checker, Device, Device], Awaitable[None]]


async def s_register(c: Checker, dev: Device, other: Device) -> None:
    key = c.server.create_registration_key()
    body = {"serial": "EMU-OAS", "model": "M", "mac": "00:11:22:33:44:55",
            "firmware": {"system": "1.0"}, "registration_key": key,
            "csr": make_csr("EMU-OAS")[1].decode()}
    assert (await c.call("register", json=body))[0] == 201
    # the key is spent for any other serial
    other_body = {**body, "serial": "EMU-OAS2", "csr": make_csr("EMU-OAS2")[1].decode()}
    assert (await c.call("register", json=other_body))[0] == 403
    assert (await c.call("register", json={**body, "mac": 1}))[0] == 400


async def s_upload(c: Checker, dev: Device, other: Device) -> None:
    upload_id, zip_ = payload_zip(serial=dev.serial)
    headers = {"Content-Type": "application/zip", "Upload-Id": upload_id,
               "Content-SHA256": hashlib.sha256(zip_).hexdigest()}
    p = {"id": dev.device_id}
    assert (await c.call("upload", params=p, device=dev, data=zip_,
                         headers=dict(headers)))[0] == 201
    assert (await c.call("upload", params=p, device=dev, data=zip_,
                         headers=dict(headers)))[0] == 200
    assert (await c.call("upload", params=p, device=dev, data=b"nope",
                         headers={**headers, "Content-SHA256": "0" * 64}))[0] == 400
    assert (await c.call("upload", params=p, device=other, data=zip_,
                         headers=dict(headers)))[0] == 403
    assert (await c.call("upload", params=p, data=zip_, headers=dict(headers)))[0] == 401
    bad = b"PK not a zip"
    assert (await c.call("upload", params=p, device=dev, data=bad, headers={
        **headers, "Upload-Id": str(uuid.uuid4()),
        "Content-SHA256": hashlib.sha256(bad).hexdigest()}))[0] == 422


async def s_list_actions(c: Checker, dev: Device, other: Device) -> None:
    c.server.enqueue_action(dev.device_id, "send-meters", {"now": True})
    p = {"id": dev.device_id}
    status, body = await c.call("listActions", params=p, device=dev)
    assert status == 200 and body["actions"]
    assert (await c.call("listActions", params=p))[0] == 401
    assert (await c.call("listActions", params=p, device=other))[0] == 403


async def s_action_result(c: Checker, dev: Device, other: Device) -> None:
    aid = c.server.enqueue_action(dev.device_id, "reboot")
    p = {"id": dev.device_id, "aid": aid}
    for _ in range(2):
        assert (await c.call("postActionResult", params=p, device=dev,
                             json={"status": "succeeded", "detail": {}}))[0] == 200
    assert (await c.call("postActionResult", params=p, device=dev,
                         json={"status": "meh"}))[0] == 400
    assert (await c.call("postActionResult", params={**p, "aid": "act-0"}, device=dev,
                         json={"status": "failed"}))[0] == 404


async def s_firmware_offer(c: Checker, dev: Device, other: Device) -> None:
    c.server.publish_firmware("M", "2.0", b"image" * 10)
    p = {"id": dev.device_id}
    for version, status in (("1.0", 200), ("2.0", 204), ("x", 400)):
        assert (await c.call("firmwareOffer", params=p, device=dev,
                             query={"model": "M", "version": version}))[0] == status


async def s_firmware_image(c: Checker, dev: Device, other: Device) -> None:
    sha = c.server.publish_firmware("M", "3.0", b"0123456789" * 10)["sha256"]
    p = {"sha256": sha}
    assert (await c.call("firmwareImage", params=p, device=dev))[0] == 200
    assert (await c.call("firmwareImage", params=p, device=dev,
                         headers={"Range": "bytes=0-9"}))[0] == 206
    assert (await c.call("firmwareImage", params=p, device=dev,
                         headers={"Range": "bytes=500-"}))[0] == 416
    assert (await c.call("firmwareImage", params={"sha256": "f" * 64}, device=dev))[0] == 404
    assert (await c.call("firmwareImage", params=p))[0] == 401


async def s_upload_log(c: Checker, dev: Device, other: Device) -> None:
    p = {"id": dev.device_id}
    assert (await c.call("uploadLog", params=p, device=dev, data=b"log",
                         headers={"Content-Type": "text/plain"}))[0] == 201
    assert (await c.call("uploadLog", params=p, device=dev, data=b"{}",
                         headers={"Content-Type": "application/json"}))[0] == 415
    assert (await c.call("uploadLog", params=p, device=dev, data=b"not gzip",
                         headers={"Content-Type": "application/gzip"}))[0] == 422


async def s_admin_get_upload(c: Checker, dev: Device, other: Device) -> None:
    upload_id, zip_ = payload_zip(serial=dev.serial, sequence=7)
    assert (await dev.upload(zip_, upload_id))[0] == 201
    status, raw = await c.call("adminGetUpload", params={"upload_id": upload_id}, admin=True)
    assert (status, raw) == (200, zip_)  # byte for byte as sent
    assert (await c.call("adminGetUpload", params={"upload_id": upload_id}))[0] == 401
    assert (await c.call("adminGetUpload", params={"upload_id": str(uuid.uuid4())},
                         admin=True))[0] == 404


def _admin_simple(op_id: str, *, params: Callable[[Device], dict[str, str]] | None = None,
                  **kw: Any) -> Scenario:
    async def scenario(c: Checker, dev: Device, other: Device) -> None:
        p = params(dev) if params else None
        assert (await c.call(op_id, params=p, admin=True, **kw))[0] in (200, 201)
        assert (await c.call(op_id, params=p, **kw))[0] == 401
        if p and "id" in p:
            assert (await c.call(op_id, params={"id": "nobody"}, admin=True, **kw))[0] == 404
    return scenario


async def s_renew(c: Checker, dev: Device, other: Device) -> None:
    p = {"id": other.device_id}
    csr = make_csr(other.serial)[1].decode()
    assert (await c.call("renew", params=p, json={"csr": csr}))[0] == 401
    assert (await c.call("renew", params=p, device=dev, json={"csr": csr}))[0] == 403
    assert (await c.call("renew", params=p, device=other, json={"csr": "junk"}))[0] == 400
    status, body = await c.call("renew", params=p, device=other, json={"csr": csr})
    assert status == 200 and body["certificate"].startswith("-----BEGIN CERTIFICATE")
    # the certificate it replaced is revoked
    assert (await c.call("listActions", params=p, device=other))[0] == 403


def _dev_id(d: Device) -> dict[str, str]:
    return {"id": d.device_id}


# -- the manager path (a manager registered by s_manager_register, kept on the checker) --


async def s_manager_register(c: Checker, dev: Device, other: Device) -> None:
    key_pem, csr = make_csr("mgr-host")
    body = {"registration_key": c.server.create_registration_key(), "csr": csr.decode(),
            "hostname": "mgr-host", "ip": "127.0.0.1", "os": "Linux", "app_version": "1.0",
            "location": "Floor 2", "contact_email": "it@example.com"}
    status, reply = await c.call("managerRegister", json=body)
    assert status == 201
    assert (await c.call("managerRegister", json={**body, "ip": "x"}))[0] == 400
    assert (await c.call("managerRegister", json={
        **body, "registration_key": "nope"}))[0] == 403
    c.manager = await manager_device(c.server, reply, key_pem, dev.ctx)


async def manager_device(server: ReferenceServer, reply: dict[str, Any], key_pem: bytes,
                         like: Any) -> Device:
    import ssl
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / "c.pem").write_text(reply["certificate"])
    (d / "k.pem").write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    return Device(server, "mgr-host", reply["manager_id"], ctx, reply["certificate"])


def manager_zip(serial: str) -> tuple[str, bytes]:
    from datetime import UTC, datetime

    from device_direct.core.payload import PayloadMeta
    from device_direct.manager.payload import ManagerIdentity, build_manager_payload
    from device_direct.manager.reading import PrinterReading

    upload_id = str(uuid.uuid4())
    now = datetime(2026, 12, 6, tzinfo=UTC)
    reading = PrinterReading(
        address="127.0.1.9", vendor=None, model="M", serial=serial, sys_object_id=None,
        mac=None, firmware=None, sys_descr=None, sys_name=None, sys_location=None,
        sys_contact=None, uptime_s=None, status={}, counters={"total_impressions": 5},
        supplies=(), trays=(), properties={}, console=(), missing=())
    return upload_id, build_manager_payload(
        reading, PayloadMeta(upload_id=upload_id, sequence=0, generated_at=now),
        ManagerIdentity(hostname="mgr-host", os="Linux", app_version="1.0"),
        read_at=now, method="snmpv2c")


async def s_manager_upload(c: Checker, dev: Device, other: Device) -> None:
    m = c.manager
    p = {"mid": m.device_id}
    upload_id, zip_ = manager_zip(dev.serial)
    headers = {"Content-Type": "application/zip", "Upload-Id": upload_id,
               "Content-SHA256": hashlib.sha256(zip_).hexdigest()}
    assert (await c.call("managerUpload", params=p, device=m, data=zip_,
                         headers=dict(headers)))[0] == 201
    assert (await c.call("managerUpload", params=p, device=m, data=zip_,
                         headers=dict(headers)))[0] == 200
    assert (await c.call("managerUpload", params=p, data=zip_, headers=dict(headers)))[0] == 401
    assert (await c.call("managerUpload", params=p, device=dev, data=zip_,
                         headers=dict(headers)))[0] == 403  # a device's certificate
    assert (await c.call("managerUpload", params=p, device=m, data=b"x", headers={
        **headers, "Content-SHA256": "0" * 64}))[0] == 400
    device_zip = payload_zip(serial=dev.serial)
    assert (await c.call("managerUpload", params=p, device=m, data=device_zip[1], headers={
        **headers, "Upload-Id": device_zip[0],
        "Content-SHA256": hashlib.sha256(device_zip[1]).hexdigest()}))[0] == 422
    c.server_scope_serial = dev.serial


async def s_manager_list_actions(c: Checker, dev: Device, other: Device) -> None:
    m = c.manager
    await c.call("adminEnqueueManagerAction", params={"mid": m.device_id}, admin=True,
                 json={"serial": dev.serial, "type": "get-status"})
    status, body = await c.call("managerListActions", params={"mid": m.device_id}, device=m)
    assert status == 200 and body["actions"]
    assert (await c.call("managerListActions", params={"mid": m.device_id}))[0] == 401
    assert (await c.call("managerListActions", params={"mid": m.device_id},
                         device=dev))[0] == 403


async def s_manager_action_result(c: Checker, dev: Device, other: Device) -> None:
    m = c.manager
    p = {"mid": m.device_id}
    _, q = await c.call("adminEnqueueManagerAction", params=p, admin=True,
                        json={"serial": dev.serial, "type": "send-meters-now"})
    pa = {**p, "aid": q["id"]}
    for _ in range(2):
        assert (await c.call("managerActionResult", params=pa, device=m,
                             json={"status": "succeeded"}))[0] == 200
    assert (await c.call("managerActionResult", params=pa, device=m,
                         json={"status": "meh"}))[0] == 400
    assert (await c.call("managerActionResult", params={**p, "aid": "x"}, device=m,
                         json={"status": "failed"}))[0] == 404


async def s_manager_renew(c: Checker, dev: Device, other: Device) -> None:
    m = c.manager
    p = {"mid": m.device_id}
    key_pem, csr = make_csr("mgr-host")
    assert (await c.call("managerRenew", params=p, json={"csr": csr.decode()}))[0] == 401
    assert (await c.call("managerRenew", params=p, device=dev,
                         json={"csr": csr.decode()}))[0] == 403
    assert (await c.call("managerRenew", params=p, device=m, json={"csr": "junk"}))[0] == 400
    status, body = await c.call("managerRenew", params=p, device=m, json={"csr": csr.decode()})
    assert status == 200
    # the certificate it replaced no longer works; the new one does
    assert (await c.call("managerListActions", params=p, device=m))[0] == 403
    c.manager = await manager_device(c.server, {**body, "manager_id": m.device_id}, key_pem,
                                     None)
    assert (await c.call("managerListActions", params=p, device=c.manager))[0] == 200


def _mid(c: Checker) -> dict[str, str]:
    return {"mid": c.manager.device_id}


async def s_admin_scope(c: Checker, dev: Device, other: Device) -> None:
    p = _mid(c)
    assert (await c.call("adminSetManagerScope", params=p, admin=True,
                         json={"serials": [dev.serial]}))[0] == 200
    assert (await c.call("adminSetManagerScope", params=p, admin=True,
                         json={"serials": "x"}))[0] == 400
    assert (await c.call("adminSetManagerScope", params={"mid": "nobody"}, admin=True,
                         json={"serials": []}))[0] == 404
    assert (await c.call("adminSetManagerScope", params=p, json={"serials": []}))[0] == 401
    # out of the fixed scope now: 403 out_of_scope
    upload_id, zip_ = manager_zip("OTHER-PRINTER")
    assert (await c.call("managerUpload", params=p, device=c.manager, data=zip_, headers={
        "Content-Type": "application/zip", "Upload-Id": upload_id,
        "Content-SHA256": hashlib.sha256(zip_).hexdigest()}))[0] == 403


def _admin_mgr(op_id: str, **kw: Any) -> Scenario:
    async def scenario(c: Checker, dev: Device, other: Device) -> None:
        assert (await c.call(op_id, params=_mid(c), admin=True, **kw))[0] in (200, 201)
        assert (await c.call(op_id, params=_mid(c), **kw))[0] == 401
        assert (await c.call(op_id, params={"mid": "nobody"}, admin=True, **kw))[0] in (
            400, 404)
    return scenario


async def s_admin_billing(c: Checker, dev: Device, other: Device) -> None:
    p = {"serial": dev.serial}
    # the device and the manager's made-up payload name different models: two printers
    assert (await c.call("adminPrinterBilling", params=p, admin=True))[0] == 400
    status, body = await c.call("adminPrinterBilling", params=p, admin=True,
                                query={"model": "M"})
    assert status == 200 and body["days"][0]["source"] == "manager"
    assert (await c.call("adminPrinterBilling", params={"serial": "NONE"},
                         admin=True))[0] == 404
    assert (await c.call("adminPrinterBilling", params={"serial": dev.serial}))[0] == 401


SCENARIOS: dict[str, Scenario] = {
    "register": s_register,
    "upload": s_upload,
    "listActions": s_list_actions,
    "postActionResult": s_action_result,
    "firmwareOffer": s_firmware_offer,
    "firmwareImage": s_firmware_image,
    "uploadLog": s_upload_log,
    "adminCreateKeys": _admin_simple("adminCreateKeys", json={"count": 2}),
    "adminListDevices": _admin_simple("adminListDevices"),
    "adminListUploads": _admin_simple("adminListUploads", params=_dev_id),
    "adminGetUpload": s_admin_get_upload,
    "adminMeterHistory": _admin_simple("adminMeterHistory", params=_dev_id),
    "adminEnqueueAction": _admin_simple("adminEnqueueAction", params=_dev_id,
                                        json={"type": "get-status"}),
    "adminListActions": _admin_simple("adminListActions", params=_dev_id),
    "adminListLogs": _admin_simple("adminListLogs", params=_dev_id),
    "adminPublishFirmware": _admin_simple(
        "adminPublishFirmware", data=b"img",
        query={"model": "M", "version": "9.9"}),
    "adminListFirmware": _admin_simple("adminListFirmware"),
    "adminFirmwareKey": _admin_simple("adminFirmwareKey"),
    "adminCaCertificate": _admin_simple("adminCaCertificate"),
    "adminGetFaults": _admin_simple("adminGetFaults"),
    "adminSetFaults": _admin_simple("adminSetFaults", json={"latency_ms": 0}),
    "adminClearFaults": _admin_simple("adminClearFaults"),
    "managerRegister": s_manager_register,  # the manager path, in this order
    "managerUpload": s_manager_upload,
    "managerListActions": s_manager_list_actions,
    "managerActionResult": s_manager_action_result,
    "adminListManagers": _admin_simple("adminListManagers"),
    "adminEnqueueManagerAction": _admin_mgr("adminEnqueueManagerAction",
                                            json={"serial": "S", "type": "get-status"}),
    "adminListManagerActions": _admin_mgr("adminListManagerActions"),
    "adminManagerUploads": _admin_mgr("adminManagerUploads"),
    "adminSetManagerScope": s_admin_scope,
    "adminListPrinters": _admin_simple("adminListPrinters"),
    "adminPrinterBilling": s_admin_billing,
    "adminDisagreements": _admin_simple("adminDisagreements"),
    "managerRenew": s_manager_renew,  # after every other manager call: it replaces c.manager
    "renew": s_renew,  # last: it revokes ``other``'s certificate
}


def test_every_documented_operation_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(OPERATIONS)


def test_app_routes_are_exactly_the_documented_paths(tmp_path: Path) -> None:
    srv = ReferenceServer(tmp_path / "s")
    app = srv.make_app()
    # The dashboard's pages (/dashboard/...) are for people, documented in docs/web.md.
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and not r.resource.canonical.startswith("/dashboard")}
    documented = {(m, re.sub(r"\{(\w+)\}", r"{\1}", p)) for m, p in OPERATIONS.values()}
    assert routes == documented
    srv.storage.close()


async def test_server_conforms_to_openapi(server: ReferenceServer, tmp_path: Path) -> None:
    checker = Checker(server)
    dev = await register(server, tmp_path / "dev")
    other = await register(server, tmp_path / "other", "EMU-OTHER")
    for scenario in SCENARIOS.values():
        await scenario(checker, dev, other)
    assert set(checker.seen) == set(OPERATIONS)
