"""Every statement a device's calls make on the server's database finds its rows by index.

A statement that scans a table whose rows grow with the fleet costs every call time in
proportion to the fleet: re-registration's "revoke the device's current certificates"
scanned the whole certificates table, so registering 100,000 devices read it 100,000
times. Here one device makes every call of the device API (registers, registers again,
renews, uploads, polls, reports an action's result, checks and downloads firmware, sends
a log) while the connection's trace callback catches each statement SQLite runs, and each
statement's query plan is asked for: none may scan a table that grows with the fleet.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from refserver_helpers import payload_zip, register, register_raw, registration

from emulator.server import ReferenceServer
from emulator.server.pki import make_csr

MODEL = "ColorMFP C8055"
# Rows an operator adds by hand, a handful per model: a scan of them is fine.
SMALL_TABLES = {"firmware"}


def _plans(db: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    """Each statement's query plan lines (the trace gives them with their values)."""
    plans: dict[str, list[str]] = {}
    for sql in statements:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in {"SELECT", "UPDATE", "DELETE", "INSERT"}:
            continue  # BEGIN, COMMIT, PRAGMA
        plans[sql] = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    return plans


def _scans(plan: list[str]) -> list[str]:
    """The plan's full scans of tables that grow with the fleet."""
    return [line for line in plan
            if line.startswith("SCAN ") and line.split()[1] not in SMALL_TABLES]


async def test_a_device_s_calls_never_scan_a_table_that_grows_with_the_fleet(
    server: ReferenceServer, tmp_path: Path
) -> None:
    db = server.storage._db
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    try:
        dev = await register(server, tmp_path / "dev")
        # Registering again (a device reset to factory settings) revokes the old one.
        _, csr = make_csr(dev.serial)
        status, _ = await register_raw(server, registration(
            dev.serial, server.create_registration_key(), csr))
        assert status == 201
        dev = await register(server, tmp_path / "dev2", dev.serial)
        _, csr = make_csr(dev.serial)
        status, _, _ = await dev.request("POST", "/renew", json={"csr": csr.decode()})
        assert status == 200
        dev = await register(server, tmp_path / "dev3", dev.serial)
        for sequence in (1, 3):  # the second leaves a gap
            upload_id, body = payload_zip(serial=dev.serial, sequence=sequence)
            assert (await dev.upload(body, upload_id))[0] == 201
        assert (await dev.upload(body, upload_id))[0] == 200  # a duplicate
        action = server.enqueue_action(dev.device_id, "send-meters")
        status, body, _ = await dev.request("GET", "/actions")
        assert status == 200 and [a["id"] for a in body["actions"]] == [action]
        status, _, _ = await dev.request("POST", f"/actions/{action}/result",
                                         json={"status": "succeeded", "detail": {}})
        assert status == 200
        published = server.publish_firmware(MODEL, "100.2.58", b"image" * 100)
        status, offer, _ = await dev.request("GET", "/firmware",
                                             params={"model": MODEL, "version": "100.2.57"})
        assert status == 200
        status, _, _ = await dev.request("GET", server.base_url + offer["manifest"]["url"])
        assert status == 200 and offer["manifest"] == published
        status, _, _ = await dev.request("POST", "/logs", data=b"boot ok\n",
                                         headers={"Content-Type": "text/plain"})
        assert status == 201
    finally:
        db.set_trace_callback(None)

    plans = _plans(db, seen)
    tables = " ".join(plans)
    for table in ("registration_keys", "devices", "certificates", "uploads", "meters",
                  "sequence_gaps", "actions", "engineering_logs"):
        assert table in tables, f"no statement touched {table}: the calls above missed it"
    scans = {sql: _scans(plan) for sql, plan in plans.items() if _scans(plan)}
    assert scans == {}, "statements that scan a table growing with the fleet:\n" + "\n".join(
        f"  {sql}\n    -> {', '.join(lines)}" for sql, lines in scans.items())
