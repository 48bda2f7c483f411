"""Bad input: hostile agents, bad targets; one clear error per address, the scan goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hostile_agent import HOSTILE_ROWS_READ, HostileAgent  # type: ignore[import-not-found]

from device_direct.manager.errors import TargetError
from device_direct.manager.scan import Scanner, ScanOptions
from device_direct.manager.targets import Target, parse_targets
from emulator.lan import EmulatedLan, LanOptions, LanSpec

ROOT = Path(__file__).resolve().parents[3]


async def test_hostile_agents_get_one_error_each_and_the_scan_goes_on() -> None:
    behaviours = ("garbage", "truncated", "loop", "huge", "wrong-address", "error")
    agents = [HostileAgent(b, f"127.0.3.{i}") for i, b in enumerate(behaviours, start=10)]
    for a in agents:
        await a.start()
    spec = LanSpec(printers=1, non_printers=0, silent=0, subnet="127.0.3.0/29")
    try:
        async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0,
                                          days_of_use=2)) as lan:
            good = lan.printers[0]
            targets = [Target(good.address, lan.snmp_port),
                       *(Target(a.host, a.port) for a in agents),
                       Target("printer.invalid", lan.snmp_port)]  # RFC 6761: never resolves
            scanner = Scanner(ScanOptions(timeout=0.5, retries=1, max_rows=HOSTILE_ROWS_READ))
            try:
                report = await scanner.scan(targets)
            finally:
                scanner.close()
            doc = report.to_json()
    finally:
        for a in agents:
            await a.stop()
    errors = {e["address"].rsplit(":", 1)[0]: e for e in doc["errors"]}
    by_behaviour = {a.behaviour: errors.get(a.host) for a in agents}
    assert by_behaviour["garbage"] is not None
    assert "not a valid SNMP reply" in by_behaviour["garbage"]["message"]
    assert by_behaviour["truncated"] is not None
    assert "not a valid SNMP reply" in by_behaviour["truncated"]["message"]
    assert by_behaviour["loop"] is not None
    assert "does not increase" in by_behaviour["loop"]["message"]
    assert by_behaviour["huge"] is not None
    assert f"more than {HOSTILE_ROWS_READ} instances" in by_behaviour["huge"]["message"]
    assert by_behaviour["wrong-address"] is not None
    assert "not from the address asked" in by_behaviour["wrong-address"]["message"]
    assert by_behaviour["error"] is not None
    assert "error-status" in by_behaviour["error"]["message"]
    assert good.address not in errors
    assert errors["printer.invalid"]["kind"] == "local"
    assert "cannot resolve" in errors["printer.invalid"]["message"]
    printers = {p["address"].rsplit(":", 1)[0]: p for p in doc["printers"]}
    assert printers[good.address]["serial"] == good.plan.serial
    # what was read before the trouble is kept
    for behaviour in ("loop", "huge", "error", "garbage", "truncated"):
        host = next(a.host for a in agents if a.behaviour == behaviour)
        assert printers[host]["serial"] == "HOSTILE001" or behaviour in ("error", "garbage",
                                                                         "truncated")
        assert printers[host]["problems"], behaviour
    huge_host = next(a.host for a in agents if a.behaviour == "huge")
    assert len(printers[huge_host]["status"]["alerts"]) == HOSTILE_ROWS_READ
    loop_host = next(a.host for a in agents if a.behaviour == "loop")
    assert printers[loop_host]["counters"]["total_impressions"] == 777


async def test_a_printer_that_vanishes_mid_read_keeps_what_it_said() -> None:
    agent = HostileAgent("vanish", "127.0.3.20")
    await agent.start()
    scanner = Scanner(ScanOptions(timeout=0.3, retries=0, v1="off"))
    try:
        doc = (await scanner.scan([Target(agent.host, agent.port)])).to_json()
    finally:
        scanner.close()
        await agent.stop()
    assert agent.reads >= 2  # it answered the first read request, not the rest of the walk
    assert [(e["kind"], e["phase"]) for e in doc["errors"]] == [("timeout", "read")]
    [p] = doc["printers"]
    assert p["serial"] == "HOSTILE001" and p["problems"] and "no answer" in p["problems"][0]
    # the first rows of the long alert table came in the first read request: kept
    assert [a["description"] for a in p["status"]["alerts"][:2]] == ["alert 1", "alert 2"]


@pytest.mark.parametrize(("words", "expected"), [
    (["127.0.1.10-12"], ["127.0.1.10", "127.0.1.11", "127.0.1.12"]),
    (["127.0.1.0/30"], ["127.0.1.1", "127.0.1.2"]),
    (["127.0.1.5:1161", "127.0.1.5:1161"], ["127.0.1.5:1161"]),
    (["printer.example.com"], ["printer.example.com"]),
    (["127.0.1.254-127.0.2.1"], ["127.0.1.254", "127.0.1.255", "127.0.2.0", "127.0.2.1"]),
])
def test_targets(words: list[str], expected: list[str]) -> None:
    assert [str(t) for t in parse_targets(words)] == expected


@pytest.mark.parametrize(("word", "says"), [
    ("10.0.0.0/8", "at most 65536"), ("127.0.1.40-10", "ends before"),
    ("127.0.1.1:99999", "port"), ("not an address!", "is not an address"),
    ("127.0.1.1-300", "0..255"), ("1.2.3", "is not an address"),
    ("::1", "IPv6 is not supported"), ("fe80::/120", "IPv6 is not supported"),
    ("[::1]:1161", "IPv6 is not supported"),
])
def test_bad_targets_say_what_is_wrong(word: str, says: str) -> None:
    with pytest.raises(TargetError, match=says):
        parse_targets([word])


def test_target_file_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "targets.txt"
    f.write_text("# office\n127.0.1.1\n\n127.0.1.999\n")
    with pytest.raises(TargetError, match=r"targets.txt:4"):
        parse_targets([f"@{f}"])
    f.write_text("127.0.1.1  # the copier\n127.0.1.2\n")
    assert [t.host for t in parse_targets([f"@{f}"])] == ["127.0.1.1", "127.0.1.2"]


def test_cli_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (["127.0.1.0/8"], [f"@{tmp_path}/missing.txt"],
                 ["127.0.1.1", "--v3-user", "u", "--v3-auth-key", "short"],
                 ["127.0.1.1", "--v3-auth-key", "a-long-pass-phrase"]):
        out = subprocess.run([sys.executable, "-m", "device_direct", "manager", "scan", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.startswith("error:"), out.stderr


def test_report_rows_carry_each_printers_own_read_time() -> None:
    from device_direct.manager.report import rows

    doc = {"read_at": "2026-12-07T10:00:00+00:00",
           "printers": [{"address": "127.0.1.5", "read_at": "2026-12-06T09:00:00+00:00"},
                        {"address": "127.0.1.6"}]}
    assert [r["read_at"] for r in rows(doc)] == ["2026-12-06T09:00:00+00:00",
                                                 "2026-12-07T10:00:00+00:00"]


def test_report_of_a_hand_edited_scan_document_skips_what_is_malformed() -> None:
    from device_direct.manager.report import to_csv, to_html

    doc = {"printers": [{"address": "127.0.1.5", "serial": "S1",
                         "status": {"alerts": ["jam"], "detected_errors": [3]},
                         "missing": [1], "supplies": "toner"},
                        {"address": "127.0.1.6", "missing": None}],
           "errors": ["timeout"]}
    table = to_csv(doc).splitlines()
    assert len(table) == 3 and table[1].startswith("127.0.1.5,,,S1,")
    page = to_html(doc)
    assert "<td>S1</td>" in page and "0 errors" in page


def test_a_negative_page_counter_is_missing_not_a_reading() -> None:
    from device_direct.manager import mib
    from device_direct.manager.reading import interpret

    raw: dict[mib.Oid, mib.Value] = {  # an INTEGER -42 where a Counter32 belongs
        mib.SYS_DESCR: b"Printer", (*mib.PRT_GENERAL, 17, 1): b"NEG1",
        (*mib.PRT_MARKER, 4, 1, 1): -42}
    reading = interpret("127.0.1.5", raw, None, None)
    assert reading.counters["total_impressions"] is None
    assert "counters.total_impressions" in reading.missing
    assert reading.properties["markers"][0]["life_count"] is None
