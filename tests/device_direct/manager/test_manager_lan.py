"""The manager against a simulated office: 50 printers, 5 other SNMP hosts, 20 silent.

Five of the printers are old ones whose agent speaks SNMPv1 only (net-snmp's snmpget
shows it: no answer in v2c, an answer in v1); the scan must find and read them too.

The scan runs as the user runs it (``device-direct manager scan ... --json`` in its own
process) against an :class:`EmulatedLan` in this process; it must find exactly the
printers, and each reading must equal what the emulated model holds. Then some
printers print and one jams, and a second scan (in this process) must see the new
values at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from device_direct.manager import names
from device_direct.manager.scan import Scanner, ScanOptions
from device_direct.manager.targets import Target
from device_direct.model import PrintJob
from emulator.lan import EmulatedLan, HostKind, LanOptions, LanSpec
from emulator.snmp.printer_mib import disk_bytes
from emulator.snmp.printer_status import printer_status

ROOT = Path(__file__).resolve().parents[3]
# What the model calls a supply's state, in the manager's words (receptacles: full = empty)
_STATE = {"ok": "ok", "low": "low", "empty": "empty", "near-full": "low", "full": "empty"}


def _check_reading(lan: EmulatedLan, p: dict[str, Any]) -> None:
    printer = lan.printer_at(p["address"].rsplit(":", 1)[0])
    snap = printer.device.snapshot()
    where = f"{p['address']} ({printer.plan.profile})"
    # The office profiles mirror real Xerox models (their sysObjectID is under 253);
    # production keeps the fictional vendor under the documentation number 32473.
    xerox = printer.device.profile.identity.sys_object_id.startswith("1.3.6.1.4.1.253.")
    assert p["vendor"] == ("Xerox" if xerox else "Acme Document Systems (emulated)"), where
    assert p["serial"] == snap.identity.serial == printer.plan.serial, where
    assert p["model"] == snap.identity.model, where
    assert p["sys_object_id"] == printer.device.profile.identity.sys_object_id, where
    assert snap.identity.firmware["system"] in p["firmware"], where
    assert p["sys_name"] == snap.network.hostname, where
    if p["mac"] is not None:  # IF-MIB is served only by newer emulator agents
        assert p["mac"] == snap.network.mac, where
    net = snap.network
    assert p["network"]["ip"] == net.ipv4 == printer.address, where
    assert (p["network"]["subnet_mask"], p["network"]["gateway"]) == (
        net.subnet_mask, net.gateway) == ("255.255.255.0", "127.0.1.254"), where
    assert p["network"]["hostname"] == net.hostname, where
    size = disk_bytes(snap.identity.installed_options)  # the profile's HDD option
    disks = p["properties"]["disks"]
    assert [d["size_bytes"] for d in disks] == ([size] if size else []), where
    assert p["properties"]["snmp"] == ("v1" if printer.plan.v1_only else "v2c"), where
    c = snap.counters
    assert p["counters"]["total_impressions"] == c.total_impressions, where
    assert p["counters"]["black"] == c.black_impressions, where
    assert p["counters"]["color"] == c.color_impressions, where
    assert len(p["supplies"]) == len(snap.supplies), where
    for got, want in zip(p["supplies"], sorted(snap.supplies, key=lambda s: s.index),
                         strict=True):
        assert got["index"] == want.index and got["description"].startswith(want.name), where
        assert (got["level"], got["max_capacity"]) == (want.level, want.capacity), where
        assert got["state"] == _STATE[want.status], (where, got, want)
        if want.capacity > 0 and want.level >= 0:
            assert got["percent"] == round(100.0 * want.level / want.capacity, 1), where
    expected = printer_status(snap.power, snap.alerts)
    s = p["status"]
    assert s["device_status"] == names.DEVICE_STATUS[int(expected.device)], where
    assert s["printer_status"] == names.PRINTER_STATUS[int(expected.printer)], where
    assert s["detected_errors"] == [names.ERROR_BITS[int(b)] for b in sorted(
        expected.conditions)], where
    assert [(a["index"], a["code"], a["description"]) for a in s["alerts"]] == [
        (a.index, a.code, a.description) for a in sorted(snap.alerts, key=lambda a: a.index)
    ], where


async def _snmpget(version: str, host: str, port: int) -> bool:
    """net-snmp's snmpget of sysObjectID.0; True if the agent answered."""
    proc = await asyncio.create_subprocess_exec(
        "snmpget", f"-v{version}", "-c", "public", "-t", "2", "-r", "1", "-On",
        f"{host}:{port}", "1.3.6.1.2.1.1.2.0", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode == 0 and b".1.3.6.1.2.1.1.2.0" in out


async def test_scan_of_a_simulated_office_finds_exactly_the_printers() -> None:
    spec = LanSpec(printers=50, non_printers=5, silent=20, seed=7, subnet="127.0.1.0/24",
                   v1_only=0.1)
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0,
                                      days_of_use=20)) as lan:
        old = [h.address for h in lan.plan.of(HostKind.PRINTER) if h.v1_only]
        assert len(old) == 5
        for version, answers in (("2c", False), ("1", True)):
            got = await _snmpget(version, old[0], lan.snmp_port)
            assert got == answers, f"v{version} to a v1-only printer"
        last = max(int(h.address.rsplit(".", 1)[1]) for h in lan.plan.hosts)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_direct", "manager", "scan", f"127.0.1.1-{last}",
            "--snmp-port", str(lan.snmp_port), "--timeout", "4", "--retries", "1",
            "--concurrency", "8",
            "--json", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
        doc = json.loads(out)
        printers = {h.address for h in lan.plan.of(HostKind.PRINTER)}
        found = {p["address"].rsplit(":", 1)[0] for p in doc["printers"]}
        assert found == printers
        assert doc["not_printers"] == 5
        assert doc["no_answer"] == 20
        assert doc["errors"] == []
        for p in doc["printers"]:
            _check_reading(lan, p)

        # The model moves; the next read must follow it.
        busy = sorted(lan.printers, key=lambda p: p.address)[:3]
        for p in busy:
            await p.device.print_job(PrintJob(pages=3, copies=2, duplex=True, color=True))
        busy[0].device.jam()
        scanner = Scanner(ScanOptions(timeout=3.0, retries=2))
        try:
            report = await scanner.scan([Target(p.address, lan.snmp_port) for p in busy])
        finally:
            scanner.close()
        again = report.to_json()
        assert len(again["printers"]) == 3 and again["errors"] == []
        for p in again["printers"]:
            _check_reading(lan, p)
        jammed = next(p for p in again["printers"]
                      if p["address"].startswith(busy[0].address + ":"))
        assert "jammed" in jammed["status"]["detected_errors"]
        before = {p["address"]: p["counters"]["total_impressions"] for p in doc["printers"]}
        for p in again["printers"]:
            assert p["counters"]["total_impressions"] > before[p["address"]]

        # Without the v1 fallback the old printers are silent addresses.
        scanner = Scanner(ScanOptions(timeout=1.0, retries=0, v1="off"))
        try:
            report = await scanner.scan([Target(a, lan.snmp_port) for a in old])
        finally:
            scanner.close()
        assert (len(report.printers), len(report.no_answer)) == (0, 5)
