"""`manager run` against the reference server: the combination model end to end.

A simulated office (emulator/lan) where half the printers also run their Device Direct
agent; the agents upload by themselves, then one manager cycle registers, scans the
subnet and uploads one payload per printer. The server must hold ONE printer with two
sources for each agent printer, bill its meters from one source (Device Direct), not
flag pages printed between the two sources' readings, and flag a forced disagreement
(a manager reading later than the device's and lower). Actions: a disabled
one is rejected, send-meters-now uploads a fresh reading, print-test-page reaches the
printer's port 9100. Then `manager status` and `manager report --config` read the run.
"""

from __future__ import annotations

import io
import json
import random
import ssl
import subprocess
import sys
from csv import DictReader
from pathlib import Path
from typing import Any

import aiohttp

from device_direct.manager.config import load_config
from device_direct.manager.runner import ManagerRunner
from device_direct.model import PrintJob
from emulator.clock import VirtualClock
from emulator.lan import EmulatedLan, LanAgentOptions, LanOptions, LanSpec
from emulator.pytest_plugin import DeviceDirectWaiter
from emulator.server.app import ReferenceServer
from emulator.server.export import export_uploads


async def admin(server: ReferenceServer, method: str, path: str, **kw: Any) -> Any:
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    async with aiohttp.ClientSession() as s, s.request(
            method, server.base_url + path, ssl=ctx,
            headers={"Authorization": f"Bearer {server.admin_token}"}, **kw) as r:
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


def write_config(path: Path, server: ReferenceServer, key: str, data_dir: Path,
                 subnet: str, snmp_port: int, jetdirect_port: int) -> Path:
    path.write_text(f"""
[server]
url = "https://127.0.0.1:{server.port}/"
ca_bundle = "{server.ca_cert_path}"
server_name = "localhost"
registration_key = "{key}"

[manager]
data_dir = "{data_dir}"
location = "Floor 2, copy room"
contact_email = "it@example.com"
hostname = "mgr-pc"
ip = "127.0.0.1"

[scan]
targets = ["{subnet}"]
snmp_port = {snmp_port}
timeout = 2.0
retries = 1

[actions]
get_status = false
test_page_port = {jetdirect_port}
""")
    return path


async def test_combination_model_end_to_end(
        tmp_path: Path, dd_server: ReferenceServer, dd_clock: VirtualClock,
        dd_wait: DeviceDirectWaiter) -> None:
    keys = tuple(dd_server.create_registration_key(ttl_s=86400 * 30) for _ in range(2))
    agents = LanAgentOptions(server_url=f"https://127.0.0.1:{dd_server.port}/",
                             ca_bundle=dd_server.ca_cert_path, server_name="localhost",
                             registration_keys=keys, state_dir=tmp_path / "agents")
    spec = LanSpec(printers=4, non_printers=1, silent=0, agents=0.5, seed=5,
                   subnet="127.0.5.0/29")
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, days_of_use=2,
                                      agents=agents), clock=dd_clock) as lan:
        with_agent = {p.plan.serial for p in lan.printers if p.plan.agent}
        all_serials = {p.plan.serial for p in lan.printers}

        def uploaded() -> bool:
            devices = {d["serial"]: d for d in dd_server.storage.devices()}
            return set(devices) == with_agent and all(
                dd_server.storage.uploads_count(devices[s]["device_id"]) >= 1
                for s in with_agent)

        await dd_wait.until(uploaded, what="the agents to register and upload")
        config = write_config(tmp_path / "manager.toml", dd_server,
                              dd_server.create_registration_key(), tmp_path / "mgr",
                              spec.subnet, lan.snmp_port, lan.jetdirect_port)
        runner = ManagerRunner(load_config(config), dd_clock, random.Random(3))
        await runner.run(once=True)
        assert runner.status.queued == 0 and runner.status.last_error is None

        managers = (await admin(dd_server, "GET", "/admin/v1/managers"))["managers"]
        assert len(managers) == 1
        m = managers[0]
        assert (m["hostname"], m["location"], m["contact_email"]) == (
            "mgr-pc", "Floor 2, copy room", "it@example.com")
        assert m["scope"] == {"mode": "learn", "serials": sorted(all_serials)}

        printers = (await admin(dd_server, "GET", "/admin/v1/printers"))["printers"]
        kinds = {p["serial"]: sorted(s["kind"] for s in p["sources"]) for p in printers}
        assert kinds == {s: (["device", "manager"] if s in with_agent else ["manager"])
                         for s in all_serials}  # one printer, two sources; no duplicates

        for p in lan.printers:
            bill = await admin(dd_server, "GET", f"/admin/v1/printers/{p.plan.serial}/meters")
            day = bill["days"][-1]
            total = p.device.snapshot().counters.total_impressions
            assert day["meters"]["total-impressions"] == total  # counted once, not summed
            assert day["source"] == ("device" if p.plan.agent else "manager")
            assert bill["disagreements"] == []

        # Force a disagreement: an agent printer prints, the manager reads it again now
        # (send-meters-now), its agent has not uploaded since.
        busy = next(p for p in lan.printers if p.plan.agent)
        before = busy.device.snapshot().counters.total_impressions
        await busy.device.print_job(PrintJob(pages=2, copies=1, duplex=False, color=False))
        after = busy.device.snapshot().counters.total_impressions
        assert after > before
        mid = m["manager_id"]
        for kind in ("send-meters-now", "get-status", "print-test-page"):
            await admin(dd_server, "POST", f"/admin/v1/managers/{mid}/actions",
                        json={"serial": busy.plan.serial, "type": kind})
        async with runner.transport() as transport:
            assert await runner.handle_actions(transport) == 3
            old = runner.identity.registration
            await transport.renew()  # the device's renewal, at /dd/v1/managers/{id}/renew
            assert runner.identity.registration != old
            assert await runner.handle_actions(transport) == 0  # the new certificate works
        results = {a["type"]: a["result_status"] for a in (await admin(
            dd_server, "GET", f"/admin/v1/managers/{mid}/actions"))["actions"]}
        assert results == {"send-meters-now": "succeeded", "get-status": "rejected",
                           "print-test-page": "succeeded"}

        # Printed between the agent's reading and the manager's: not a disagreement.
        flagged = (await admin(dd_server, "GET", "/admin/v1/disagreements"))["disagreements"]
        assert [d for d in flagged if d["meter"] == "total-impressions"] == []
        bill = await admin(dd_server, "GET", f"/admin/v1/printers/{busy.plan.serial}/meters")
        assert bill["days"][-1]["source"] == "device"
        assert bill["days"][-1]["meters"]["total-impressions"] == before  # still one source

        # Force a disagreement: the printer prints again and its agent reports at once,
        # then the manager uploads its cached reading (from before that job) as a new one:
        # a later reading lower than the device's.
        await busy.device.print_job(PrintJob(pages=3, copies=1, duplex=False, color=False))
        latest = busy.device.snapshot().counters.total_impressions
        device_id = next(d["device_id"] for d in dd_server.storage.devices()
                         if d["serial"] == busy.plan.serial)
        count = dd_server.storage.uploads_count(device_id)
        assert busy.agent is not None
        busy.agent.send_now()
        await dd_wait.until(lambda: dd_server.storage.uploads_count(device_id) > count,
                            what="the agent's upload after the second job")
        runner.enqueue([runner.readings[busy.plan.serial]], trigger="action")
        async with runner.transport() as transport:
            assert await runner.flush(transport) == 0
        flagged = (await admin(dd_server, "GET", "/admin/v1/disagreements"))["disagreements"]
        assert [(d["serial"], d["meter"], d["device_value"], d["manager_value"], d["reason"])
                for d in flagged if d["meter"] == "total-impressions"] == [
            (busy.plan.serial, "total-impressions", latest, after, "went-back")]

        # the export holds both paths: the managers' zips and the combination view
        export_uploads(dd_server.storage, tmp_path / "export")
        index = json.loads((tmp_path / "export" / "uploads.json").read_text())
        assert {r["source"] for r in index} == {"device", "manager"}
        assert all((tmp_path / "export" / r["file"]).is_file() for r in index)
        combined = json.loads((tmp_path / "export" / "printers.json").read_text())
        assert {p["serial"]: len(p["sources"]) for p in combined} == {
            s: 2 if s in with_agent else 1 for s in all_serials}
        assert [d["serial"] for p in combined for d in p["billing"]["disagreements"]
                if d["meter"] == "total-impressions"] == [busy.plan.serial]

    # status and report from the run's stored state (no network)
    out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "status",
                          "--config", str(config), "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["manager_id"] == mid and sorted(st["in_scope"]) == sorted(all_serials)
    assert st["last_success"] and st["next_scheduled"] and st["queued"] == 0
    table = subprocess.run([sys.executable, "-m", "device_direct", "manager", "status",
                            "--config", str(config)], capture_output=True, text=True,
                           timeout=60)
    assert "last successful sync" in table.stdout and "printers in scope" in table.stdout
    csv = subprocess.run([sys.executable, "-m", "device_direct", "manager", "report",
                          "--config", str(config), "--format", "csv"], capture_output=True,
                         text=True, timeout=60)
    assert csv.returncode == 0, csv.stderr
    assert all(s in csv.stdout for s in all_serials)
    # each printer with the time it was read (the column used to be empty)
    rows = list(DictReader(io.StringIO(csv.stdout)))
    assert {r["serial"] for r in rows} >= set(all_serials)
    assert all(r["read_at"].startswith("20") for r in rows), rows


def test_config_errors_exit_2_naming_the_key(tmp_path: Path) -> None:
    cases = {
        "[server]\nurl = \"http://x\"\nca_bundle = \"c\"\n": "server.url",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"nobody\"\n"): "manager.contact_email",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\n[scan]\ntargets = []\n"): "scan.targets",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\nsecurity_mode = \"open\"\n"
         "[scan]\ntargets = [\"127.0.0.1\"]\n"): "manager.security_mode",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\n[scan]\ntargets = [\"127.0.0.1\"]\n"
         "[actions]\nreboot = true\n"): "actions.reboot",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\n[scan]\ntargets = [\"127.0.0.1\"]\n"
         "[[scan.v3_users]]\nuser = \"m\"\nauth_key = \"short\"\n"): "scan.v3_users[0].auth_key",
        # a bad target is refused with the file and key, before any registration
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\n[scan]\ntargets = [\"10.0.0.0/33\"]\n"
         ): "scan.targets",
        ("[server]\nurl = \"https://x\"\nca_bundle = \"c\"\n[manager]\ndata_dir = \"d\"\n"
         "location = \"l\"\ncontact_email = \"a@b\"\n[scan]\ntargets = [\"127.0.0.1\"]\n"
         "out_of_scope = [\"fe80::/120\"]\n"): "scan.out_of_scope",
    }
    for i, (text, key) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.toml"
        path.write_text(text)
        out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "run",
                              "--config", str(path), "--once"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, (key, out.stderr)
        assert f"key '{key}'" in out.stderr and str(path) in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_the_complete_file_of_the_config_docstring_loads(tmp_path: Path) -> None:
    # docs/manager.md sends the reader to this docstring for every key; its [scan]
    # timeout/retries/concurrency stood after [[scan.v3_users]], so TOML put them in
    # the v3 user and the file was refused ("scan.v3_users[0].timeout: unknown key").
    import textwrap

    import device_direct.manager.config as config_module

    text = textwrap.dedent((config_module.__doc__ or "").split("A complete file::", 1)[1])
    path = tmp_path / "manager.toml"
    path.write_text(text.replace('"........"', '"12345678"'))
    config = load_config(path)
    assert (config.timeout, config.retries, config.concurrency) == (1.0, 1, 32)
    assert config.v3_users == (("monitor", "12345678", "12345678"),)
    assert config.proxy_credentials == ("u", "p")


def test_proxy_credentials_survive_v3_users(tmp_path: Path) -> None:
    # The loop over [[scan.v3_users]] reused the name of the proxy user name, so a file
    # with both handed the transport (the last v3 user's table, password) as credentials.
    path = tmp_path / "m.toml"
    path.write_text('[server]\nurl = "https://127.0.0.1:1/"\nca_bundle = "ca.pem"\n'
                    'proxy = "http://proxy:3128"\nproxy_username = "u"\n'
                    'proxy_password = "p"\n'
                    f'[manager]\ndata_dir = "{tmp_path / "d"}"\nlocation = "l"\n'
                    'contact_email = "a@b.c"\n[scan]\ntargets = ["127.0.0.1"]\n'
                    '[[scan.v3_users]]\nuser = "monitor"\nauth_key = "12345678"\n')
    config = load_config(path)
    assert config.proxy_credentials == ("u", "p")
    assert config.v3_users == (("monitor", "12345678", None),)


async def test_locked_down_syncs_data_only_and_still_reports_addresses(
        tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from device_direct.clock import SystemClock
    from device_direct.core.payload import PayloadMeta
    from device_direct.manager.payload import ManagerIdentity, build_manager_xml
    from device_direct.manager.reading import PrinterReading

    path = tmp_path / "m.toml"
    path.write_text('[server]\nurl = "https://127.0.0.1:1/"\nca_bundle = "ca.pem"\n'
                    f'[manager]\ndata_dir = "{tmp_path / "d"}"\nlocation = "l"\n'
                    'contact_email = "a@b.c"\nsecurity_mode = "locked-down"\n'
                    '[scan]\ntargets = ["127.0.0.1"]\n')
    config = load_config(path)
    assert config.locked_down and not any(
        config.action_enabled(a) for a in ("send-meters-now", "get-status", "print-test-page"))
    runner = ManagerRunner(config, SystemClock())
    # no poll at all: the transport is never touched
    assert await runner.handle_actions(None) == 0  # type: ignore[arg-type]

    reading = PrinterReading(
        address="127.0.1.7", vendor="HP", model="M", serial="S1", sys_object_id=None,
        mac="00:11:22:33:44:55", firmware="2.1", sys_descr=None, sys_name=None,
        sys_location=None, sys_contact="Call bob@example.com", uptime_s=None, status={},
        counters={"total_impressions": 7}, supplies=(), trays=(), properties={},
        console=(), missing=("supplies",))
    now = datetime(2026, 12, 6, tzinfo=UTC)
    xml = build_manager_xml(
        reading, PayloadMeta(upload_id="00000000-0000-4000-8000-000000000001", sequence=0,
                             generated_at=now),
        ManagerIdentity(hostname="h", os="Linux", app_version="1", ip="10.0.0.5",
                        security_mode="locked-down"), read_at=now, method="snmpv2c")
    text = xml.decode()
    assert 'securityMode="locked-down"' in text and 'ip="10.0.0.5"' in text
    assert "<IPv4>127.0.1.7</IPv4>" in text  # printers' IPs are still reported
    assert "bob@example.com" not in text  # the device privacy rules apply
    assert "<Missing>supplies</Missing>" in text and "ProductCode" not in text


async def test_a_scan_error_is_kept_with_the_readings_not_a_crash(tmp_path: Path) -> None:
    from device_direct.clock import SystemClock

    spec = LanSpec(printers=1, non_printers=0, silent=0, subnet="127.0.4.0/30")
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0,
                                      days_of_use=2)) as lan:
        serial = lan.printers[0].plan.serial
        path = tmp_path / "m.toml"
        path.write_text('[server]\nurl = "https://127.0.0.1:1/"\nca_bundle = "ca.pem"\n'
                        f'[manager]\ndata_dir = "{tmp_path / "d"}"\nlocation = "l"\n'
                        'contact_email = "a@b.c"\n[scan]\n'
                        f'targets = ["{lan.printers[0].address}", "printer.invalid"]\n'
                        f'snmp_port = {lan.snmp_port}\nresolve_names = false\n')
        runner = ManagerRunner(load_config(path), SystemClock())
        inside = await runner.scan()  # printer.invalid never resolves (RFC 6761)
        port = lan.snmp_port
    assert [p.serial for p in inside] == [serial]
    stored = json.loads((tmp_path / "d" / "readings.json").read_text())
    assert [p["serial"] for p in stored["printers"]] == [serial]
    assert [(e["address"], e["kind"]) for e in stored["errors"]] == [
        (f"printer.invalid:{port}", "local")]


def test_status_before_the_first_run_shows_the_configured_security_mode(
        tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[server]\nurl = "https://127.0.0.1:1/"\nca_bundle = "ca.pem"\n'
                    f'[manager]\ndata_dir = "{tmp_path / "d"}"\nlocation = "l"\n'
                    'contact_email = "a@b.c"\nsecurity_mode = "locked-down"\n'
                    '[scan]\ntargets = ["127.0.0.1"]\n')
    out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "status",
                          "--config", str(path), "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["security_mode"] == "locked-down" and doc["last_read"] is None
