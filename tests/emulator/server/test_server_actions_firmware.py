"""Actions until a result arrives, signed firmware manifests, ranged image downloads, logs."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from refserver_helpers import Device, admin, register

from emulator.clock import VirtualClock
from emulator.server import ReferenceServer
from emulator.server.firmware import canonical_json

MODEL = "ColorMFP C8055"
IMAGE = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


@pytest.fixture
async def dev(server: ReferenceServer, tmp_path: Path) -> Device:
    return await register(server, tmp_path / "dev")


async def test_actions_are_delivered_until_a_result_arrives(
    server: ReferenceServer, dev: Device, vclock: VirtualClock
) -> None:
    a1 = server.enqueue_action(dev.device_id, "send-meters")
    a2 = server.enqueue_action(dev.device_id, "reboot", {"delay_s": 5}, expires_in_s=600)
    for _ in range(2):  # delivered again while no result
        status, body, _ = await dev.request("GET", "/actions")
        assert status == 200
        assert [(a["id"], a["type"], a["params"]) for a in body["actions"]] == [
            (a1, "send-meters", {}), (a2, "reboot", {"delay_s": 5})]
    assert set(body["actions"][0]) == {"id", "type", "params", "issued_at", "expires_at"}

    status, resp, _ = await dev.request("POST", f"/actions/{a1}/result",
                                        json={"status": "succeeded", "detail": {"n": 1}})
    assert status == 200 and resp["status"] == "recorded"
    status, resp, _ = await dev.request("POST", f"/actions/{a1}/result",
                                        json={"status": "failed", "detail": {}})
    assert status == 200 and resp["status"] == "duplicate"
    [result] = server.storage.action_results(dev.device_id)
    assert (result["id"], result["result_status"], result["result_detail"]) == (
        a1, "succeeded", {"n": 1})  # the first result is kept

    vclock.advance_to(vclock.now() + timedelta(seconds=601))  # a2 expires
    status, body, _ = await dev.request("GET", "/actions")
    assert body == {"actions": []}


async def test_action_results_are_validated(server: ReferenceServer, dev: Device,
                                            tmp_path: Path) -> None:
    a1 = server.enqueue_action(dev.device_id, "get-status")
    status, resp, _ = await dev.request("POST", f"/actions/{a1}/result",
                                        json={"status": "done"})
    assert status == 400 and "succeeded" in resp["detail"]
    status, resp, _ = await dev.request("POST", "/actions/act-999999/result",
                                        json={"status": "failed"})
    assert status == 404
    other = await register(server, tmp_path / "other", "EMU2")
    status, resp, _ = await other.request("POST", f"/actions/{a1}/result",
                                          json={"status": "failed"})
    assert status == 404  # another device's action does not exist for it
    assert server.storage.action_results(dev.device_id) == []


async def test_firmware_manifest_verifies_and_image_supports_ranges(
    server: ReferenceServer, dev: Device
) -> None:
    params = {"model": MODEL, "version": "100.2.57"}
    status, _, _ = await dev.request("GET", "/firmware", params=params)
    assert status == 204
    server.publish_firmware(MODEL, "100.2.9", b"older")
    published = server.publish_firmware(MODEL, "100.2.10", IMAGE)
    server.publish_firmware("Other Model", "999", b"x")
    status, _, _ = await dev.request("GET", "/firmware", params={**params, "version": "100.2.10"})
    assert status == 204

    status, offer, _ = await dev.request("GET", "/firmware",
                                         params={**params, "version": "100.2.9.0"})
    assert status == 200 and offer["manifest"] == published
    # Verify with the key exported over the admin API, as a device would pin it.
    _, pem = await admin(server, "GET", "/admin/v1/firmware/public-key")
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(base64.b64decode(offer["signature"]), canonical_json(offer["manifest"]))
    tampered = {**offer["manifest"], "size": 1}
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(offer["signature"]), canonical_json(tampered))

    url = server.base_url + offer["manifest"]["url"]
    status, body, headers = await dev.request("GET", url)
    assert status == 200 and hashlib.sha256(body).hexdigest() == published["sha256"]
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await dev.request("GET", url, headers={"Range": "bytes=100-199"})
    assert (status, body, headers["Content-Range"]) == (206, IMAGE[100:200],
                                                        f"bytes 100-199/{len(IMAGE)}")
    status, body, _ = await dev.request("GET", url, headers={"Range": "bytes=10000-"})
    assert (status, body) == (206, IMAGE[10000:])
    status, body, _ = await dev.request("GET", url, headers={"Range": "bytes=-40"})
    assert (status, body) == (206, IMAGE[-40:])
    status, body, headers = await dev.request("GET", url,
                                              headers={"Range": f"bytes={len(IMAGE)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(IMAGE)}"
    status, _, _ = await dev.request("GET", url, headers={"Range": "bytes=9-3"})
    assert status == 416


async def test_firmware_image_needs_a_client_cert(server: ReferenceServer, dev: Device) -> None:
    import aiohttp
    from refserver_helpers import server_ctx

    manifest = server.publish_firmware(MODEL, "101", IMAGE)
    async with aiohttp.ClientSession() as s, s.get(
        server.base_url + manifest["url"], ssl=server_ctx(server)
    ) as r:
        assert r.status == 401
    status, _, _ = await dev.request("GET", server.base_url + "/dd/v1/firmware/images/"
                                     + "0" * 64)
    assert status == 404


async def test_expired_manifests_are_not_offered(
    server: ReferenceServer, dev: Device, vclock: VirtualClock
) -> None:
    server.publish_firmware(MODEL, "200", IMAGE, expires_in_s=60)
    params = {"model": MODEL, "version": "100"}
    assert (await dev.request("GET", "/firmware", params=params))[0] == 200
    vclock.advance_to(vclock.now() + timedelta(seconds=60))
    assert (await dev.request("GET", "/firmware", params=params))[0] == 204


async def test_firmware_query_is_validated(server: ReferenceServer, dev: Device) -> None:
    status, body, _ = await dev.request("GET", "/firmware", params={"model": MODEL,
                                                                    "version": "v1.x"})
    assert status == 400 and "version" in body["detail"]


async def test_engineering_logs_are_stored_apart(server: ReferenceServer, dev: Device) -> None:
    status, body, _ = await dev.request("POST", "/logs", data=b"boot ok\njam 071-105\n",
                                        headers={"Content-Type": "text/plain"})
    assert status == 201 and body["status"] == "stored"
    packed = gzip.compress(b"x" * 1000)
    status, body, _ = await dev.request("POST", "/logs", data=packed,
                                        headers={"Content-Type": "application/gzip"})
    assert status == 201
    logs = server.storage.logs(dev.device_id)
    assert [entry["body"] for entry in logs] == [b"boot ok\njam 071-105\n", packed]
    assert server.storage.uploads_count() == 0
    status, body, _ = await dev.request("POST", "/logs", data=b"x" * (server.max_log_bytes + 1),
                                        headers={"Content-Type": "text/plain"})
    assert status == 413
    status, body, _ = await dev.request("POST", "/logs", data=b"{}",
                                        headers={"Content-Type": "application/json"})
    assert status == 415
