"""Other vendors' printers, with their quirks, served by snmpsim from snmprec/ recordings."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from snmpsim_peer import Snmpsim, sys_descr

from device_direct.manager.errors import VendorFileError
from device_direct.manager.scan import Scanner, ScanOptions
from device_direct.manager.snmp import Credential
from device_direct.manager.targets import Target
from device_direct.manager.vendors import VendorCatalog, load_vendor


async def _scan_one(port: int, community: str, *more: str, v1: str = "fallback"
                    ) -> dict[str, Any]:
    creds = tuple(Credential(community=c) for c in (*more, community))
    scanner = Scanner(ScanOptions(credentials=creds, timeout=1.0, retries=1, v1=v1))
    try:
        report = await scanner.scan([Target("127.0.0.1", port)])
    finally:
        scanner.close()
    doc = report.to_json()
    assert doc["errors"] == [], doc["errors"]
    assert len(doc["printers"]) == 1, doc
    printer: dict[str, Any] = doc["printers"][0]
    return printer


def test_snmpsim_serves_on_a_port_nobody_else_can_take(snmpsim: Snmpsim) -> None:
    """The fixture bound the port before snmpsim started and snmpsim serves on that very
    socket: no bind of the port can succeed while it runs (with SO_REUSEADDR or
    SO_REUSEPORT neither), and the agent answering there is this run's (its own
    community and value, which no other agent serves)."""
    for option in (None, socket.SO_REUSEADDR, socket.SO_REUSEPORT):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            if option is not None:
                other.setsockopt(socket.SOL_SOCKET, option, 1)
            with pytest.raises(OSError) as taken:
                other.bind(("127.0.0.1", snmpsim.port))
            assert taken.value.errno == errno.EADDRINUSE
    assert sys_descr(snmpsim.port, snmpsim.probe_community) == snmpsim.probe_value
    assert sys_descr(snmpsim.port, "hp") == ("HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,"
                                             "JD153,EEPROM JSI24090012,CIDATE 09/09/2024")


async def test_hp_model_from_hr_device_serial_and_meters_from_private_mib(
        snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "hp")
    assert p["vendor"] == "HP" and p["vendor_file"] == "hp.toml"
    assert p["sys_descr"].startswith("HP ETHERNET MULTI-ENVIRONMENT")  # the network card
    assert p["model"] == "HP LaserJet Pro M402dne"
    assert p["serial"] == "PHBLK12345"
    assert p["counters"] == {"total_impressions": 12350, "source": "vendor", "black": 12350}
    assert p["properties"]["markers"][0]["life_count"] == 12345  # kept, not hidden
    assert p["mac"] == "a0:b3:cc:11:22:33"
    assert p["firmware"] is None and "firmware" in p["missing"]


async def test_brother_some_remaining_unknown_capacity_and_untyped_supplies(
        snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "brother")
    assert p["vendor"] == "Brother" and p["serial"] == "E78123A0N123456"
    toner, drum = p["supplies"]
    assert toner == {"index": 1, "description": "Black Toner Cartridge", "type": None,
                     "level": -3, "max_capacity": -2, "percent": None,
                     "state": "some-remaining", "unit": None, "colorant": None}
    assert drum["percent"] == 66.7 and drum["state"] == "ok" and drum["type"] is None
    assert p["counters"]["total_impressions"] == 4321
    assert p["counters"]["source"] == "prtMarkerLifeCount"
    assert "black" not in p["counters"] and "color" not in p["counters"]


async def test_kyocera_without_marker_table_reads_the_private_total(snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "kyocera")
    assert p["vendor"] == "Kyocera"
    assert p["model"] == "ECOSYS M2540dn" and p["firmware"] == "2S0_2000.004.103"
    assert p["serial"] == "VCF8Z12345"
    assert p["counters"]["total_impressions"] == 55321
    assert p["counters"]["source"] == "vendor"
    assert p["properties"]["markers"] == []


async def test_ricoh_several_markers_total_from_vendor_and_low_toner_from_alert(
        snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "ricoh")
    assert [m["life_count"] for m in p["properties"]["markers"]] == [60000, 25000]
    assert p["counters"]["total_impressions"] == 85000
    states = {s["colorant"]: (s["state"], s["percent"]) for s in p["supplies"]}
    assert states == {"black": ("ok", 80.0), "cyan": ("low", 10.0),
                      "magenta": ("ok", 55.0), "yellow": ("ok", 60.0)}
    assert p["status"]["alerts"][0]["code_name"] == "markerTonerAlmostEmpty"


async def test_canon_jammed_and_down(snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "canon")
    assert p["vendor"] == "Canon" and p["model"] == "Canon iR-ADV C5535"
    s = p["status"]
    assert s["device_status"] == "down" and s["printer_status"] == "other"
    assert s["detected_errors"] == ["jammed"]
    assert s["alerts"][0]["severity"] == "critical" and s["alerts"][0]["code"] == 8
    assert p["counters"]["total_impressions"] == 99100


async def test_epson_inks_private_meters_and_markup_kept_as_text(snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "epson")
    assert p["vendor"] == "Epson" and p["model"] == "EPSON WF-C5790 Series"
    assert p["counters"]["black"] == 5000 and p["counters"]["color"] == 2777
    assert p["counters"]["total_impressions"] == 7777
    assert [s["type"] for s in p["supplies"]] == ["inkCartridge", "inkCartridge", "wasteInk"]
    assert [s["state"] for s in p["supplies"]] == ["ok", "empty", "some-remaining"]
    assert p["properties"]["markers"][0]["technology"] == "inkjetAqueous"
    assert p["sys_location"] == "<script>alert(1)</script> Lab"


async def test_communities_are_tried_in_order(snmpsim_port: int) -> None:
    p = await _scan_one(snmpsim_port, "canon", "wrong-community")
    assert p["vendor"] == "Canon"


async def test_network_settings_and_disks_from_each_agents_own_tables(
        snmpsim_port: int) -> None:
    hp = await _scan_one(snmpsim_port, "hp")
    # ipAddrTable row of its own address (not the one scanned: snmpsim is on 127.0.0.1),
    # the default route of inetCidrRouteTable (next hop in the index), sysName, and the
    # reverse lookup of 127.0.0.1 (every /etc/hosts names it localhost).
    assert hp["network"] == {"ip": "127.0.0.1", "subnet_mask": "255.255.255.0",
                             "gateway": "192.168.5.1", "hostname": "prn-laserjet",
                             "dns_name": "localhost"}
    assert hp["properties"]["disks"] == [] and hp["properties"]["disk_bytes"] == 0
    assert hp["properties"]["memory_kb"] == 262144  # hrStorageRam: no hrMemorySize here
    kyocera = await _scan_one(snmpsim_port, "kyocera")
    # RFC 1213 ipRouteNextHop.0.0.0.0; the loopback row of ipAddrTable is not the mask
    assert (kyocera["network"]["subnet_mask"], kyocera["network"]["gateway"]) == (
        "255.255.0.0", "172.16.0.1")
    assert "properties.storage" in kyocera["missing"] and \
        kyocera["properties"]["disks"] is None
    ricoh = await _scan_one(snmpsim_port, "ricoh")
    # ipAddressPrefix (a /22) and ipCidrRouteNextHop; a 320 GB disk in MiB units
    assert (ricoh["network"]["subnet_mask"], ricoh["network"]["gateway"]) == (
        "255.255.252.0", "10.20.28.1")
    assert ricoh["properties"]["disks"] == [{"index": 2, "description": "HDD",
                                             "size_bytes": 305245 * 1048576,
                                             "used_bytes": 24576 * 1048576}]
    canon = await _scan_one(snmpsim_port, "canon")
    assert canon["network"]["subnet_mask"] is None and canon["network"]["gateway"] is None
    assert {"network.subnet_mask", "network.gateway"} <= set(canon["missing"])


async def test_v1_reads_the_same_printer_as_v2c_with_getnext(snmpsim_port: int) -> None:
    """snmpsim answers v1 too: read by GETNEXT alone, every value is the v2c reading's."""
    for vendor in ("ricoh", "epson"):
        v2c = await _scan_one(snmpsim_port, vendor, v1="off")
        v1 = await _scan_one(snmpsim_port, vendor, v1="only")
        assert (v2c["properties"].pop("snmp"), v1["properties"].pop("snmp")) == ("v2c", "v1")
        v2c.pop("uptime_s"), v1.pop("uptime_s")  # snmpsim's clock moves between reads
        assert v1 == v2c, vendor


def test_every_builtin_vendor_file_loads() -> None:
    catalog = VendorCatalog.load()
    names = {v.name for v in catalog.vendors}
    assert {"HP", "Brother", "Kyocera", "Ricoh", "Canon", "Epson", "Xerox"} <= names
    hp = catalog.match((1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 1))
    assert hp is not None and hp.name == "HP"
    assert catalog.match((1, 3, 6, 1, 4, 1, 11, 2, 3, 7, 11)) is None  # an HP switch
    assert catalog.enterprise_name((1, 3, 6, 1, 4, 1, 99999, 1)) == "enterprise 99999"


@pytest.mark.parametrize(("text", "key"), [
    ('name = "X"\nenterprise = 5\n[meters]\ntotal = "1.3.x"\n', "meters.total"),
    ('name = "X"\nenterprise = 5\nsys_object_id = ["1.3.6.1.4.1.6.1"]\n', "sys_object_id[0]"),
    ('name = "X"\nenterprise = 0\n', "enterprise"),
    ('enterprise = 5\n', "name"),
    ('name = "X"\nenterprise = 5\n[meters]\npages = "1.3.6.1"\n', "meters"),
])
def test_bad_vendor_file_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VendorFileError) as err:
        load_vendor(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


async def test_audit_report_csv_and_html_keep_device_strings_as_data(
        snmpsim_port: int, tmp_path: Path) -> None:
    import csv
    import io
    import json
    import subprocess
    import sys

    from device_direct.manager.report import to_csv, to_html

    printers = [await _scan_one(snmpsim_port, v) for v in ("epson", "canon", "brother")]
    doc = {"printers": printers, "not_printers": 0, "no_answer": 0, "errors": [],
           "finished_at": "2026-12-06T02:00:00+00:00"}
    table = list(csv.DictReader(io.StringIO(to_csv(doc))))
    assert [r["vendor"] for r in table] == ["Epson", "Canon", "Brother"]
    assert table[1]["detected_errors"] == "jammed" and table[1]["total_impressions"] == "99100"
    assert "Black Toner Cartridge (some-remaining)" in table[2]["supplies"]
    page = to_html(doc)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; Lab" in page
    saved = tmp_path / "scan.json"
    saved.write_text(json.dumps(doc))
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "report", "--scan",
                          str(saved), "--format", "html"], cwd=root, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == page
    saved.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "report", "--scan",
                          str(saved)], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(saved) in out.stderr and "Traceback" not in out.stderr


async def test_a_bug_reading_one_printer_is_an_error_for_it_not_a_crash(
        snmpsim_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import device_direct.manager.scan as scan_module

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(scan_module, "interpret", broken)
    scanner = Scanner(ScanOptions(credentials=(Credential(community="hp"),)))
    try:
        doc = (await scanner.scan([Target("127.0.0.1", snmpsim_port)])).to_json()
    finally:
        scanner.close()
    assert doc["printers"] == []
    assert [(e["kind"], e["phase"]) for e in doc["errors"]] == [("internal", "read")]
    assert "surprise" in doc["errors"][0]["message"]
