"""Uploads: stored once, every kind of bad body refused with a clear 4xx, nothing kept."""

from __future__ import annotations

import hashlib
import re
import uuid
import zipfile
from pathlib import Path

import pytest
from refserver_helpers import (
    Device,
    make_zip,
    payload_xml,
    payload_zip,
    register,
)

from emulator.server import ReferenceServer
from emulator.server.dashboard import queries


@pytest.fixture
async def dev(server: ReferenceServer, tmp_path: Path) -> Device:
    return await register(server, tmp_path / "dev")


async def test_upload_is_stored_with_its_facts_and_duplicates_stored_once(
    server: ReferenceServer, dev: Device
) -> None:
    upload_id, body = payload_zip(sequence=7)
    assert await dev.upload(body, upload_id) == (
        201, {"status": "stored", "upload_id": upload_id, "sequence": 7})
    status, resp = await dev.upload(body, upload_id)
    assert status == 200 and resp["status"] == "duplicate"
    assert server.storage.uploads_count() == 1
    assert server.storage.uploads_count(dev.device_id) == 1
    [row] = server.storage.uploads(dev.device_id)
    assert row["upload_id"] == upload_id and row["sequence"] == 7
    assert row["meters"]["total-impressions"] == 184378
    assert row["trigger"] == "scheduled" and row["generated_at"] == "2026-01-12T02:00:07Z"
    assert {s["name"]: s["level"] for s in row["supplies"]}["Yellow Toner Cartridge"] == 1350
    assert [f["code"] for f in row["faults"]][:2] == ["071-105", "077-101"]
    assert server.storage.upload_zip(upload_id) == body
    [device] = server.storage.devices()
    assert device["last_contact"] is not None and device["uploads"] == 1


async def test_sequence_gaps_are_recorded(server: ReferenceServer, dev: Device) -> None:
    for seq in (1, 2, 5, 6, 9):
        upload_id, body = payload_zip(sequence=seq)
        assert (await dev.upload(body, upload_id))[0] == 201
    gaps = server.storage.sequence_gaps(dev.device_id)
    assert [(g["first_missing"], g["last_missing"]) for g in gaps] == [(3, 4), (7, 8)]
    assert not any(g["filled"] for g in gaps)
    for seq in (3, 4):  # late arrivals (a device's outbox draining out of order)
        upload_id, body = payload_zip(sequence=seq)
        assert (await dev.upload(body, upload_id))[0] == 201
    assert [g["filled"] for g in server.storage.sequence_gaps(dev.device_id)] == [True, False]


async def test_the_dashboard_problems_follow_the_newest_payload_not_the_last_arrival(
    server: ReferenceServer, dev: Device
) -> None:
    # 1 and 3 arrive, then 2 late: the gap it fills is no longer a problem, and the
    # supply alerts and fault history shown are those of 3, the newest, not of 2 (the
    # last one stored), which brought back what 3 had cleared.
    _, xml = payload_xml()
    cleared = (xml.replace(b'status="low"', b'status="ok"')
               .replace(b'status="near-full"', b'status="ok"')
               .replace(b'code="071-105"', b'code="099-999"'))
    for seq, body in ((1, xml), (3, cleared), (2, xml)):
        upload_id = str(uuid.uuid4())
        entry = re.sub(rb'uploadId="[^"]+"', f'uploadId="{upload_id}"'.encode(), body, count=1)
        entry = re.sub(rb'sequence="\d+"', f'sequence="{seq}"'.encode(), entry, count=1)
        assert (await dev.upload(make_zip({"device-data.xml": entry}), upload_id))[0] == 201
    [row] = queries.devices(server.storage)
    assert row["problems"] == [], row["problems"]
    assert queries.recent_faults(server.storage, dev.device_id)[0]["code"] == "099-999"


def _bomb() -> bytes:
    return make_zip({"device-data.xml": b"<a>" + b" " * (20 << 20) + b"</a>"})


def _xxe() -> bytes:
    _upload_id, xml = payload_xml(upload_id=XXE_ID)
    evil = xml.replace(
        b"<DeviceData",
        b'<!DOCTYPE DeviceData [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<DeviceData', 1,
    ).replace(b"<Manufacturer>Emulated Office Systems", b"<Manufacturer>&x;", 1)
    return make_zip({"device-data.xml": evil})


XXE_ID = str(uuid.uuid4())


def _schema_invalid() -> bytes:
    _, xml = payload_xml(upload_id=FIXED_ID)
    return make_zip({"device-data.xml": xml.replace(b'name="sheets"', b'name="bogus"', 1)})


FIXED_ID = str(uuid.uuid4())

# (what, body, upload id, expected status, expected error, word the detail must name)
BAD_BODIES = [
    ("zip bomb", _bomb, FIXED_ID, 422, "zip_bomb", "ratio"),
    ("xxe", _xxe, XXE_ID, 422, "bad_xml", "DOCTYPE"),
    ("malformed xml", lambda: make_zip({"device-data.xml": b"<DeviceData><oops></DeviceData>"}),
     FIXED_ID, 422, "bad_xml", "well-formed"),
    ("schema invalid", _schema_invalid, FIXED_ID, 422, "schema_invalid", "bogus"),
    ("path trick", lambda: make_zip({"../device-data.xml": payload_xml(upload_id=FIXED_ID)[1]}),
     FIXED_ID, 422, "bad_zip", "path trick"),
    ("two entries", lambda: make_zip({"device-data.xml": payload_xml(upload_id=FIXED_ID)[1],
                                      "extra.txt": b"x"}),
     FIXED_ID, 422, "bad_zip", "exactly one entry"),
    ("not a zip", lambda: b"PK\x03\x04 this is not really a zip", FIXED_ID, 422, "bad_zip",
     "not a zip"),
    ("upload id differs", lambda: payload_zip(upload_id=str(uuid.uuid4()))[1], FIXED_ID, 422,
     "upload_id_mismatch", "Upload-Id"),
    ("serial of another device", lambda: payload_zip(serial="SOMEONE", upload_id=FIXED_ID)[1],
     FIXED_ID, 403, "serial_mismatch", "SOMEONE"),
]


@pytest.mark.parametrize(("what", "make", "upload_id", "status", "error", "word"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
async def test_bad_bodies_are_refused_and_not_stored(
    server: ReferenceServer, dev: Device, what: str, make: object, upload_id: str,
    status: int, error: str, word: str,
) -> None:
    body = make()  # type: ignore[operator]
    got_status, resp = await dev.upload(body, upload_id)
    assert (got_status, resp["error"]) == (status, error), resp
    assert word.lower() in resp["detail"].lower(), resp["detail"]
    assert server.storage.uploads_count() == 0


async def test_bad_hash_is_400(server: ReferenceServer, dev: Device) -> None:
    upload_id, body = payload_zip()
    status, resp = await dev.upload(body, upload_id, sha=hashlib.sha256(b"x").hexdigest())
    assert status == 400 and resp["error"] == "hash_mismatch"
    status, resp = await dev.upload(body, upload_id, sha="not-hex")
    assert status == 400 and resp["error"] == "bad_content_sha256"
    assert server.storage.uploads_count() == 0


async def test_bad_upload_id_and_media_type(server: ReferenceServer, dev: Device) -> None:
    _, body = payload_zip()
    status, resp = await dev.upload(body, "not-a-uuid")
    assert status == 400 and resp["error"] == "bad_upload_id"
    upload_id, body = payload_zip()
    status, resp = await dev.upload(body, upload_id, headers={"Content-Type": "text/xml"})
    assert status == 415
    assert server.storage.uploads_count() == 0


async def test_oversize_body_is_413(server: ReferenceServer, dev: Device) -> None:
    upload_id, xml = payload_xml()
    # Incompressible padding in a second entry: the size check must come first.
    big = make_zip({"device-data.xml": xml, "pad": uuid.uuid4().bytes * 20000},
                   method=zipfile.ZIP_STORED)
    assert len(big) > server.max_upload_bytes
    status, resp = await dev.upload(big, upload_id)
    assert status == 413 and resp["error"] == "too_large"
    assert str(server.max_upload_bytes) in resp["detail"]
    assert server.storage.uploads_count() == 0


async def test_restart_on_the_same_state_dir_loses_nothing(
    server: ReferenceServer, dev: Device, tmp_path: Path
) -> None:
    upload_id, body = payload_zip(sequence=1)
    assert (await dev.upload(body, upload_id))[0] == 201
    action_id = server.enqueue_action(dev.device_id, "send-meters")
    manifest = server.publish_firmware("ColorMFP C8055", "100.3.0", b"image" * 100)
    token, key_pem = server.admin_token, server.firmware_public_key_pem
    await server.stop()

    again = ReferenceServer(server.state_dir, clock=server.clock)
    async with again:
        assert again.admin_token == token and again.firmware_public_key_pem == key_pem
        assert again.storage.uploads_count(dev.device_id) == 1
        dev.server = again
        # The old client certificate still works: same CA, same device.
        status, resp = await dev.upload(body, upload_id)
        assert status == 200 and resp["status"] == "duplicate"
        status, actions, _ = await dev.request("GET", "/actions")
        assert [a["id"] for a in actions["actions"]] == [action_id]
        status, offer, _ = await dev.request(
            "GET", "/firmware", params={"model": "ColorMFP C8055", "version": "100.2"})
        assert status == 200 and offer["manifest"] == manifest


_COMPILE_RACE = """
import sys, threading
from emulator.server import payload_check
barrier, errors = threading.Barrier(16), []
def compile_schema():
    barrier.wait()
    try:
        payload_check._schema()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=compile_schema) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


def test_schema_compiles_safely_when_the_first_uploads_arrive_together() -> None:
    # Regression: 16 worker threads compiling their first schema at once corrupted
    # libxml2's shared tables in about one fresh process in four, and every later upload
    # got a 500. It needs a fresh process each time (the tables are initialised once).
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    for _ in range(6):
        out = subprocess.run([sys.executable, "-c", _COMPILE_RACE], cwd=root, check=True,
                             capture_output=True, text=True, timeout=60).stdout
        assert out.strip() == "[]"


async def test_an_unexpected_failure_is_a_json_500_naming_it_and_logged(
    server: ReferenceServer, dev: Device, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.storage, "store_upload", broken)
    upload_id, body = payload_zip(sequence=1)
    status, resp = await dev.upload(body, upload_id)
    assert status == 500
    assert resp["error"] == "internal_error" and "RuntimeError" in resp["detail"]
    assert any("internal error on POST" in r.getMessage() and "disk on fire" in
               r.getMessage() for r in caplog.records)
