"""Test helpers for the reference server: a device-like mTLS client and payload zips."""

from __future__ import annotations

import hashlib
import io
import json
import re
import ssl
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from device_direct.core.payload import PayloadMeta
from device_direct.manager.payload import ManagerIdentity, build_manager_xml
from device_direct.manager.reading import PrinterReading
from emulator.server import ReferenceServer
from emulator.server.pki import make_csr

SAMPLE_XML = (Path(__file__).resolve().parents[3] / "fixtures" / "payloads"
              / "sample-device-data.xml").read_bytes()
SAMPLE_SERIAL = "EMU8055001"


def payload_xml(*, serial: str = SAMPLE_SERIAL, upload_id: str | None = None,
                sequence: int = 1) -> tuple[str, bytes]:
    """The sample payload with its uploadId, sequence and serial replaced."""
    upload_id = upload_id or str(uuid.uuid4())
    xml = SAMPLE_XML.decode()
    xml = re.sub(r'uploadId="[^"]+"', f'uploadId="{upload_id}"', xml, count=1)
    xml = re.sub(r'sequence="\d+"', f'sequence="{sequence}"', xml, count=1)
    xml = xml.replace(f"<Serial>{SAMPLE_SERIAL}</Serial>", f"<Serial>{serial}</Serial>")
    return upload_id, xml.encode()


def make_zip(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def payload_zip(*, serial: str = SAMPLE_SERIAL, upload_id: str | None = None,
                sequence: int = 1) -> tuple[str, bytes]:
    upload_id, xml = payload_xml(serial=serial, upload_id=upload_id, sequence=sequence)
    return upload_id, make_zip({"device-data.xml": xml})


def server_ctx(server: ReferenceServer) -> ssl.SSLContext:
    """A client context that trusts the server's CA (no client certificate)."""
    return ssl.create_default_context(cafile=str(server.ca_cert_path))


@dataclass
class Device:
    """A registered device: its id, serial, and an mTLS client context."""

    server: ReferenceServer
    serial: str
    device_id: str
    ctx: ssl.SSLContext
    cert_pem: str

    @property
    def base(self) -> str:
        return f"{self.server.base_url}/dd/v1/devices/{self.device_id}"

    async def request(self, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
        """One call on a NEW connection (as devices do); (status, body, headers)."""
        async with aiohttp.ClientSession() as s, s.request(
            method, url if url.startswith("https") else self.base + url, ssl=self.ctx, **kw
        ) as r:
            raw = await r.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return r.status, body, r.headers

    async def upload(self, body: bytes, upload_id: str, *, sha: str | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": "application/zip", "Upload-Id": upload_id,
             "Content-SHA256": sha or hashlib.sha256(body).hexdigest()}
        h.update(headers or {})
        status, resp, _ = await self.request("POST", "/uploads", data=body, headers=h)
        return status, resp


async def register_raw(server: ReferenceServer, body: dict[str, Any],
                       ctx: ssl.SSLContext | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(
        server.base_url + "/dd/v1/register", json=body, ssl=ctx or server_ctx(server)
    ) as r:
        return r.status, await r.json()


def registration(serial: str, key: str, csr: bytes) -> dict[str, Any]:
    return {"serial": serial, "model": "ColorMFP C8055", "mac": "00:00:aa:8c:55:01",
            "firmware": {"system": "100.002.057"}, "registration_key": key,
            "csr": csr.decode()}


async def register(server: ReferenceServer, tmp: Path, serial: str = SAMPLE_SERIAL
                   ) -> Device:
    """Register ``serial`` with a fresh key and CSR; the device's mTLS context."""
    key_pem, csr = make_csr(serial)
    status, body = await register_raw(server, registration(
        serial, server.create_registration_key(), csr))
    assert status == 201, body
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("*.crt")))
    cert_path, key_path = tmp / f"{serial}-{n}.crt", tmp / f"{serial}-{n}.key"
    cert_path.write_text(body["certificate"])
    key_path.write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    ctx.load_cert_chain(cert_path, key_path)
    return Device(server, serial, body["device_id"], ctx, body["certificate"])


async def admin(server: ReferenceServer, method: str, path: str, *, token: str | None = None,
                **kw: Any) -> tuple[int, Any]:
    """An admin API call (with the server's token unless ``token`` is given)."""
    headers = {"Authorization": f"Bearer {server.admin_token if token is None else token}"}
    if token == "":
        headers = {}
    async with aiohttp.ClientSession() as s, s.request(
        method, server.base_url + path, ssl=server_ctx(server), headers=headers, **kw
    ) as r:
        raw = await r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw


async def register_manager(server: ReferenceServer, tmp: Path) -> Device:
    """A device manager registered over the API, as a client with its mTLS context
    (``device_id`` is its manager id)."""
    key_pem, csr = make_csr("mgr-host")
    async with aiohttp.ClientSession() as s, s.post(
            server.base_url + "/dd/v1/managers/register", ssl=server_ctx(server), json={
                "registration_key": server.create_registration_key(), "csr": csr.decode(),
                "hostname": "mgr-host", "ip": "127.0.0.1", "os": "Linux",
                "app_version": "1.0", "location": "hall", "contact_email": "it@example.com"
            }) as r:
        reply = await r.json()
        assert r.status == 201, reply
    tmp.mkdir(parents=True)
    (tmp / "m.crt").write_text(reply["certificate"])
    (tmp / "m.key").write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    ctx.load_cert_chain(tmp / "m.crt", tmp / "m.key")
    return Device(server, "mgr-host", reply["manager_id"], ctx, reply["certificate"])


def manager_zip(serial: str, total: int, *, generated_at: str = "2026-01-12T00:00:00Z",
                model: str = "ColorMFP C8055") -> tuple[str, bytes]:
    """A manager's payload for ``serial`` reading ``total`` impressions (upload id, zip)."""
    upload_id = str(uuid.uuid4())
    now = datetime(2026, 1, 12, tzinfo=UTC)
    reading = PrinterReading(
        address="127.0.1.9", vendor=None, model=model, serial=serial,
        sys_object_id=None, mac=None, firmware=None, sys_descr=None, sys_name=None,
        sys_location=None, sys_contact=None, uptime_s=None, status={},
        counters={"total_impressions": total}, supplies=(), trays=(), properties={},
        console=(), missing=())
    xml = build_manager_xml(reading, PayloadMeta(upload_id=upload_id, sequence=0,
                                                 generated_at=now),
                            ManagerIdentity(hostname="mgr-host", os="Linux", app_version="1"),
                            read_at=now, method="snmpv2c")
    xml = re.sub(rb'generatedAt="[^"]+"', f'generatedAt="{generated_at}"'.encode(), xml,
                 count=1)
    return upload_id, make_zip({"device-data.xml": xml})


async def manager_upload(manager: Device, upload_id: str, body: bytes) -> tuple[int, Any]:
    """One upload by a manager (:func:`register_manager`): (status, reply)."""
    status, reply, _ = await manager.request(
        "POST", f"{manager.server.base_url}/dd/v1/managers/{manager.device_id}/uploads",
        data=body, headers={"Content-Type": "application/zip", "Upload-Id": upload_id,
                            "Content-SHA256": hashlib.sha256(body).hexdigest()})
    return status, reply
