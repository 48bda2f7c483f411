"""The admin API (token, keys, devices, actions, firmware) and server-side QA faults."""

from __future__ import annotations

import json
import logging
import ssl
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from refserver_helpers import (
    Device,
    admin,
    payload_zip,
    register,
    register_raw,
    registration,
    server_ctx,
)

from emulator.clock import VirtualClock
from emulator.server import ReferenceServer
from emulator.server.pki import make_csr
from emulator.server.sources import Sources

ADMIN_GETS = ["/admin/v1/devices", "/admin/v1/firmware", "/admin/v1/faults",
              "/admin/v1/firmware/public-key", "/admin/v1/ca-certificate",
              "/admin/v1/devices/x/uploads", "/admin/v1/no-such-thing"]


@pytest.fixture
async def dev(server: ReferenceServer, tmp_path: Path) -> Device:
    return await register(server, tmp_path / "dev")


@pytest.mark.parametrize("path", ADMIN_GETS)
@pytest.mark.parametrize("token", ["", "wrong-token"])
async def test_admin_api_is_401_without_the_token(server: ReferenceServer, path: str,
                                                  token: str) -> None:
    status, body = await admin(server, "GET", path, token=token)
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await admin(server, "POST", "/admin/v1/registration-keys", token=token,
                               json={"count": 1})
    assert status == 401


async def test_admin_token_file_is_private(server: ReferenceServer) -> None:
    path = server.state_dir / "admin-token"
    assert path.read_text().strip() == server.admin_token
    assert path.stat().st_mode & 0o777 == 0o600
    assert (server.state_dir / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (server.state_dir / "pki" / "firmware-signing.key").stat().st_mode & 0o777 == 0o600


async def test_admin_workflow(server: ReferenceServer, tmp_path: Path) -> None:
    status, body = await admin(server, "POST", "/admin/v1/registration-keys",
                               json={"count": 2, "ttl_s": 600})
    assert status == 201 and len(body["keys"]) == 2
    _key_pem, csr = make_csr("EMU77")
    status, reg = await register_raw(server, registration("EMU77", body["keys"][0], csr))
    assert status == 201
    device_id = reg["device_id"]

    status, body = await admin(server, "GET", "/admin/v1/devices")
    assert [d["serial"] for d in body["devices"]] == ["EMU77"]

    status, body = await admin(server, "POST", f"/admin/v1/devices/{device_id}/actions",
                               json={"type": "print-test-page", "params": {"copies": 1},
                                     "expires_in_s": 3600})
    assert status == 201
    action_id = body["id"]
    status, body = await admin(server, "GET", f"/admin/v1/devices/{device_id}/actions")
    assert [(a["id"], a["result_status"]) for a in body["actions"]] == [(action_id, None)]
    status, body = await admin(server, "POST", "/admin/v1/devices/nobody/actions",
                               json={"type": "reboot"})
    assert status == 404

    status, body = await admin(server, "POST", "/admin/v1/firmware",
                               params={"model": "ColorMFP C8055", "version": "101.0.1"},
                               data=b"firmware-image")
    assert status == 201 and body["manifest"]["size"] == len(b"firmware-image")
    status, body = await admin(server, "POST", "/admin/v1/firmware",
                               params={"model": "ColorMFP C8055", "version": "latest"},
                               data=b"x")
    assert status == 400 and "version" in body["detail"]
    status, body = await admin(server, "GET", "/admin/v1/firmware")
    assert [f["manifest"]["version"] for f in body["firmware"]] == ["101.0.1"]
    status, body = await admin(server, "GET", f"/admin/v1/devices/{device_id}/meters")
    assert (status, body) == (200, {"meters": []})


async def test_a_validity_past_a_century_is_a_400_naming_it(server: ReferenceServer,
                                                           dev: Device) -> None:
    # A date past the year 9999 was an OverflowError: a 500 "internal_error".
    sources = Sources(server.storage.path)  # a manager to queue for
    try:
        sources.register_manager(manager_id="mgr-any", cert_serial="01",
                                 now=server.clock.now(), info=dict.fromkeys((
                                     "hostname", "ip", "os", "app_version", "location",
                                     "contact_email"), "x"))
    finally:
        sources.close()
    for path, body, field in (
        ("/admin/v1/registration-keys", {"ttl_s": 10 ** 14}, "ttl_s"),
        (f"/admin/v1/devices/{dev.device_id}/actions",
         {"type": "reboot", "expires_in_s": 10 ** 14}, "expires_in_s"),
        ("/admin/v1/managers/mgr-any/actions",
         {"serial": "S1", "type": "get-status", "ttl_s": 10 ** 14}, "ttl_s"),
    ):
        status, answer = await admin(server, "POST", path, json=body)
        assert status == 400, answer
        assert f"field '{field}'" in answer["detail"] and "3153600000" in answer["detail"]
    status, answer = await admin(server, "POST", "/admin/v1/registration-keys",
                                 json={"ttl_s": 3153600000})
    assert status == 201


async def test_meter_history_and_uploads_via_admin(server: ReferenceServer,
                                                   dev: Device) -> None:
    for seq in (1, 3):
        upload_id, body = payload_zip(sequence=seq)
        assert (await dev.upload(body, upload_id))[0] == 201
    _, body = await admin(server, "GET", f"/admin/v1/devices/{dev.device_id}/meters",
                               params={"name": "total-impressions"})
    assert [(m["sequence"], m["value"]) for m in body["meters"]] == [(1, 184378), (3, 184378)]
    _status, body = await admin(server, "GET", f"/admin/v1/devices/{dev.device_id}/uploads")
    assert [u["sequence"] for u in body["uploads"]] == [1, 3]
    assert [(g["first_missing"], g["last_missing"]) for g in body["sequence_gaps"]] == [(2, 2)]


async def test_fault_503_for_the_next_n_device_requests(server: ReferenceServer,
                                                        dev: Device) -> None:
    status, plan = await admin(server, "PUT", "/admin/v1/faults", json={"fail_next": 2})
    assert status == 200 and plan["fail_next"] == 2
    upload_id, body = payload_zip()
    for _ in range(2):
        status, resp = await dev.upload(body, upload_id)
        assert status == 503 and resp["error"] == "unavailable"
        # the admin API is not affected and does not use up the count
        assert (await admin(server, "GET", "/admin/v1/devices"))[0] == 200
    assert server.storage.uploads_count() == 0
    assert (await dev.upload(body, upload_id))[0] == 201


async def test_fault_fraction_and_clear(server: ReferenceServer, dev: Device) -> None:
    await admin(server, "PUT", "/admin/v1/faults", json={"fail_fraction": 1.0,
                                                          "latency_ms": 1})
    for _ in range(3):
        assert (await dev.request("GET", "/actions"))[0] == 503
    status, plan = await admin(server, "DELETE", "/admin/v1/faults")
    assert plan["fail_fraction"] == 0.0
    assert (await dev.request("GET", "/actions"))[0] == 200
    status, body = await admin(server, "PUT", "/admin/v1/faults", json={"fail_fraction": 2})
    assert status == 400 and "fail_fraction" in body["detail"]
    status, body = await admin(server, "PUT", "/admin/v1/faults", json={"explode": True})
    assert status == 400 and "explode" in body["detail"]


async def test_fault_drop_cuts_the_response(server: ReferenceServer, dev: Device) -> None:
    server.set_fault(drop_next=1)
    upload_id, body = payload_zip()
    with pytest.raises(aiohttp.ClientError):
        await dev.upload(body, upload_id)
    # The server did store it before the cut: the device's retry is a duplicate.
    status, resp = await dev.upload(body, upload_id)
    assert status == 200 and resp["status"] == "duplicate"


@pytest.mark.parametrize(("mode", "reason"), [("expired", "expired"),
                                              ("wrong-host", "match")])
async def test_tls_faults_serve_a_bad_certificate(server: ReferenceServer, dev: Device,
                                                  mode: str, reason: str) -> None:
    server.set_fault(tls=mode)
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
        await dev.request("GET", "/actions")
    assert reason in str(info.value).lower()
    server.clear_faults()
    assert (await dev.request("GET", "/actions"))[0] == 200


async def test_every_request_is_logged_as_one_json_line(
    server: ReferenceServer, dev: Device, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="emulator.server.access")
    await dev.request("GET", "/actions")
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "emulator.server.access"]
    assert lines[-1]["device"] == dev.device_id
    assert lines[-1]["endpoint"] == "/dd/v1/devices/{id}/actions"
    assert lines[-1]["status"] == 200 and lines[-1]["bytes"] > 0
    assert isinstance(lines[-1]["duration_ms"], float)


async def test_a_redirect_is_logged_with_its_status_not_500(
    server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The dashboard sends a browser without a session to its login page (303); the
    # access log said 500 for it, as for a server failure.
    caplog.set_level(logging.INFO, logger="emulator.server.access")
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.base_url}/dashboard/", ssl=server_ctx(server),
            allow_redirects=False) as resp:
        assert resp.status == 303
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "emulator.server.access"]
    assert [(line["endpoint"], line["status"]) for line in lines] == [("/dashboard/", 303)]


async def test_date_header_is_server_clock_time(server: ReferenceServer, dev: Device,
                                                vclock: VirtualClock) -> None:
    import email.utils

    _, _, headers = await dev.request("GET", "/actions")
    assert email.utils.parsedate_to_datetime(headers["Date"]) == server.clock.now()
    # The text is made once per second shown: it follows the clock when that moves.
    for step in (timedelta(milliseconds=400), timedelta(seconds=1), timedelta(days=3)):
        vclock.advance_to(vclock.now() + step)
        _, _, headers = await dev.request("GET", "/actions")
        assert email.utils.parsedate_to_datetime(headers["Date"]) == server.clock.now(
            ).replace(microsecond=0)


def test_ssl_context_floor_is_tls12(tmp_path: Path) -> None:
    srv = ReferenceServer(tmp_path / "s")
    assert srv.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert srv.ssl_context.verify_mode == ssl.CERT_OPTIONAL
    srv.storage.close()
