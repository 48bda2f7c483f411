"""The printer as real tools see it: every object typed as its MIB says (net-snmp, v1,
v2c and v3), one truth across SNMP, PJL on port 9100 and the payload, and garbage on
both ports costing one warning line, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from snmp_helpers import make_agent, make_device, parse_walk, run, v2c, v3

from device_direct.core.payload import NAMESPACE, PayloadMeta, build_xml
from device_direct.core.privacy import PrivacyPolicy
from emulator.clock import VirtualClock
from emulator.jetdirect import JetDirectConfig, JetDirectServer
from emulator.model.device import EmulatedDevice
from emulator.snmp import SnmpAgent
from emulator.snmp.oid_table import Oid, parse_oid

UEL = b"\x1b%-12345X"
FF = b"\x0c"
NS = {"p": NAMESPACE}

# -- the types each object has in its MIB, by column (net-snmp's names for them) ----------

INT, OCT, OID, TT, C32, G32, IP = ("INTEGER",), ("STRING", "Hex-STRING", '""'), ("OID",), \
    ("Timeticks",), ("Counter32",), ("Gauge32",), ("IpAddress",)


Kinds = tuple[str, ...]


def _cols(prefix: str, spec: dict[tuple[int, ...], Kinds]) -> dict[Oid, Kinds]:
    base = parse_oid(prefix)
    return {(*base, *cols): kind for cols, kind in spec.items()}


def _many(cols: range | tuple[int, ...], kind: Kinds) -> dict[tuple[int, ...], Kinds]:
    return {(c,): kind for c in cols}


TYPES: dict[Oid, tuple[str, ...]] = {
    # SNMPv2-MIB system and snmp groups (RFC 3418)
    **_cols("1.3.6.1.2.1.1", {(1,): OCT, (2,): OID, (3,): TT, (4,): OCT, (5,): OCT, (6,): OCT,
                              (7,): INT}),
    **_cols("1.3.6.1.2.1.11", {**_many((1, 3, 4, 5, 6, 31, 32), C32), (30,): INT}),
    # IF-MIB (RFC 2863) ifNumber, ifTable, ifXTable
    **_cols("1.3.6.1.2.1.2", {(1,): INT}),
    **_cols("1.3.6.1.2.1.2.2.1", {**_many((1, 3, 4, 7, 8), INT), (2,): OCT, (5,): G32,
                                  (6,): OCT, (9,): TT,
                                  **_many((10, 11, 13, 14, 15, 16, 17, 19, 20), C32)}),
    **_cols("1.3.6.1.2.1.31.1.1.1", {(1,): OCT, (15,): G32, (16,): INT, (17,): INT,
                                     (18,): OCT}),
    # IP-MIB scalars and ipAddrTable (RFC 4293)
    **_cols("1.3.6.1.2.1.4", {(1,): INT, (2,): INT}),
    **_cols("1.3.6.1.2.1.4.20.1", {(1,): IP, (2,): INT, (3,): IP, (4,): INT, (5,): INT}),
    # RFC 1213 ipRouteTable: the subnet and the default route via the gateway
    **_cols("1.3.6.1.2.1.4.21.1", {(1,): IP, **_many((2, 3, 8, 9, 10), INT), (7,): IP,
                                   (11,): IP}),
    # HOST-RESOURCES-MIB (RFC 2790)
    **_cols("1.3.6.1.2.1.25.1", {(1,): TT, (2,): OCT, (3,): INT, (4,): OCT, (5,): G32,
                                 (6,): G32, (7,): INT}),
    **_cols("1.3.6.1.2.1.25.2", {(2,): INT}),
    # hrStorageTable: RAM and, with the HDD option, the fixed disk
    **_cols("1.3.6.1.2.1.25.2.3.1", {(1,): INT, (2,): OID, (3,): OCT, **_many((4, 5, 6), INT),
                                     (7,): C32}),
    **_cols("1.3.6.1.2.1.25.3.2.1", {(1,): INT, (2,): OID, (3,): OCT, (4,): OID, (5,): INT,
                                     (6,): C32}),
    **_cols("1.3.6.1.2.1.25.3.5.1", {(1,): INT, (2,): OCT}),
    # Printer-MIB (RFC 3805)
    **_cols("1.3.6.1.2.1.43.5.1.1", {(1,): C32, **_many(range(2, 4), INT),
                                     **_many((4, 5, 16, 17), OCT), **_many(range(6, 16), INT),
                                     (18,): C32, (19,): C32}),
    **_cols("1.3.6.1.2.1.43.6.1.1", {(2,): OCT, (3,): INT}),  # prtCover
    **_cols("1.3.6.1.2.1.43.7.1.1", {(2,): OCT, (3,): OCT, (4,): INT}),  # prtLocalization
    **_cols("1.3.6.1.2.1.43.8.2.1", {**_many(range(2, 12), INT), **_many(range(12, 19), OCT),
                                     (19,): INT, (20,): INT, (21,): OCT, (22,): OCT,
                                     (23,): INT}),  # prtInput
    **_cols("1.3.6.1.2.1.43.9.2.1", {**_many(range(2, 7), INT), **_many(range(7, 13), OCT),
                                     (13,): INT, (19,): INT, (20,): INT}),  # prtOutput
    **_cols("1.3.6.1.2.1.43.10.2.1", {(2,): INT, (3,): INT, (4,): C32, (5,): C32,
                                      **_many(range(6, 16), INT)}),  # prtMarker
    **_cols("1.3.6.1.2.1.43.11.1.1", {**_many(range(2, 6), INT), (6,): OCT,
                                      **_many(range(7, 10), INT)}),  # prtMarkerSupplies
    **_cols("1.3.6.1.2.1.43.12.1.1", {(2,): INT, (3,): INT, (4,): OCT, (5,): INT}),
    **_cols("1.3.6.1.2.1.43.13.4.1", {**_many(range(2, 10), INT), (10,): OCT, (11,): INT}),
    **_cols("1.3.6.1.2.1.43.14.1.1", {(2,): INT, (3,): OCT, **_many(range(4, 9), INT),
                                      (9,): OCT}),  # prtChannel
    **_cols("1.3.6.1.2.1.43.15.1.1", {(2,): INT, **_many(range(3, 7), OCT),
                                      **_many(range(7, 13), INT)}),  # prtInterpreter
    **_cols("1.3.6.1.2.1.43.16.5.1", {(2,): OCT}),  # prtConsoleDisplayBuffer
    **_cols("1.3.6.1.2.1.43.17.6.1", {**_many(range(2, 5), INT), (5,): OCT}),  # lights
    **_cols("1.3.6.1.2.1.43.18.1.1", {**_many(range(2, 8), INT), (8,): OCT, (9,): TT}),
    # PWG imaging counters (all IcCounter32 = Integer32) and Xerox's private objects
    **_cols("1.3.6.1.4.1.2699.1.3.1", {(1,): INT, (2,): INT, (7,): INT, (8,): INT,
                                       (10,): INT}),
    **_cols("1.3.6.1.4.1.2699.1.3.1.3.1.1", {(3,): INT, (4,): OCT, (6,): INT}),
    **_cols("1.3.6.1.4.1.253.8.51.1.2.1.20", {(1,): OCT}),  # 1284 device id
    **_cols("1.3.6.1.4.1.253.8.53.13.2.1.6.1.20", {(1,): INT, (33,): INT, (34,): INT}),
    # SNMP-FRAMEWORK-MIB engine (RFC 3411) and usmStats (RFC 3414)
    **_cols("1.3.6.1.6.3.10.2.1", {(1,): OCT, **_many(range(2, 5), INT)}),
    **_cols("1.3.6.1.6.3.15.1.1", _many(range(1, 7), C32)),
}


def _object_of(oid: Oid) -> Oid | None:
    """The longest known column prefix of ``oid``."""
    for n in range(len(oid), 0, -1):
        if oid[:n] in TYPES:
            return oid[:n]
    return None


Rig = tuple[EmulatedDevice, SnmpAgent, JetDirectServer]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    device = make_device(clock, serial="FACES001")
    agent = make_agent(device, clock)
    jetdirect = JetDirectServer(device, clock=clock, config=JetDirectConfig(port=0))
    await agent.start()
    await jetdirect.start()
    try:
        yield device, agent, jetdirect
    finally:
        await jetdirect.stop()
        await agent.stop()


@pytest.mark.parametrize("how", ["walk-v1", "walk-v2c", "bulkwalk-v3"])
async def test_every_object_exists_with_its_mib_type(rig: Rig, how: str) -> None:
    device, agent, _ = rig
    device.jam()  # so the alert table has a row
    args = {"walk-v1": ("snmpwalk", "-v1", "-c", "public", "-On", f"127.0.0.1:{agent.port}"),
            "walk-v2c": ("snmpwalk", *v2c(agent.port)),
            "bulkwalk-v3": ("snmpbulkwalk", *v3(agent.port))}[how]
    built = agent.snapshots_built
    result = await run(args[0], *args[1:], "1.3.6", timeout_s=5)
    assert result.returncode == 0, result.err
    # Hundreds of requests, one snapshot: the model did not change during the walk.
    assert agent.snapshots_built - built <= 1
    rows = [r for r in parse_walk(result.out) if not r[1].startswith("No more variables")]
    assert len(rows) > 400
    seen: set[Oid] = set()
    for oid, value in rows:
        obj = _object_of(oid)
        assert obj is not None, f"unexpected object {oid} = {value}"
        kind = value.split(":", 1)[0] if ":" in value else value
        assert kind in TYPES[obj], f"{oid}: {value!r} is not {TYPES[obj]}"
        seen.add(obj)
    missing = sorted(".".join(map(str, o)) for o in set(TYPES) - seen)
    assert not missing, f"objects absent from the walk: {missing}"
    values = dict(rows)
    # The MAC is where fleet tools read it, and the engine objects answer (even over v1).
    mac = device.network().mac.replace(":", " ").upper()
    assert values[parse_oid("1.3.6.1.2.1.2.2.1.6.1")] == f"Hex-STRING: {mac} "
    assert values[parse_oid("1.3.6.1.6.3.10.2.1.2.0")] == "INTEGER: 1"  # one boot so far
    assert values[parse_oid("1.3.6.1.2.1.43.5.1.1.2.1")] == "INTEGER: 1"  # ...CurrentLocalization
    assert parse_oid("1.3.6.1.2.1.43.7.1.1.2.1.1") in values  # ...and the row it points to
    supplies = {o[-1] for o, _ in rows if o[:10] == parse_oid("1.3.6.1.2.1.43.11.1.1")}
    assert supplies == set(range(1, 13))  # office-color: 12 supplies, transfer roll included


async def _pjl(server: JetDirectServer, command: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    echo = b"@PJL ECHO FACES\r\n"
    writer.write(UEL + command + echo + UEL)
    await writer.drain()
    data = await asyncio.wait_for(reader.readuntil(echo + FF), timeout=10)
    writer.close()
    return data[: -len(echo + FF)]


async def _snmp(agent: SnmpAgent, *oids: str) -> dict[str, str]:
    result = await run("snmpget", *v2c(agent.port), *oids)
    assert result.returncode == 0, result.err
    return {".".join(map(str, o)): v for o, v in parse_walk(result.out)}


def _payload(device: EmulatedDevice) -> ET.Element:
    meta = PayloadMeta("12345678-1234-4234-8234-123456789abc", 1,
                       datetime(2026, 1, 5, tzinfo=UTC))
    return ET.fromstring(build_xml(device.snapshot(), meta, policy=PrivacyPolicy()))


def _console_property(root: ET.Element) -> str:
    for prop in root.iterfind("p:Properties/p:Property", NS):
        if prop.get("name") == "console-display":
            return prop.get("value", "")
    raise AssertionError("no console-display property in the payload")


DISPLAY = "1.3.6.1.2.1.43.16.5.1.2.1.1"
ERROR_STATE = "1.3.6.1.2.1.25.3.5.1.2.1"
DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5.1"
LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"
XEROX_TOTAL = "1.3.6.1.4.1.253.8.53.13.2.1.6.1.20.1"


async def test_alert_display_and_job_agree_in_snmp_pjl_and_payload(rig: Rig) -> None:
    device, agent, server = rig
    # A tool listening for unsolicited status (PJL USTATUS DEVICE=ON) on port 9100.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(UEL + b"@PJL USTATUS DEVICE=ON\r\n")
    first = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert b"CODE=10001" in first
    # An alert raised in the model: prtAlertTable, the error bits, PJL and the payload.
    fault = device.jam()
    alert = device.alerts()[0]
    got = await _snmp(agent, DISPLAY, ERROR_STATE, DEVICE_STATUS,
                      f"1.3.6.1.2.1.43.18.1.1.8.1.{alert.index}",
                      f"1.3.6.1.2.1.43.18.1.1.7.1.{alert.index}")
    assert got[f"1.3.6.1.2.1.43.18.1.1.8.1.{alert.index}"] == f'STRING: "{alert.description}"'
    assert got[f"1.3.6.1.2.1.43.18.1.1.7.1.{alert.index}"] == "INTEGER: 8"  # jam
    assert got[ERROR_STATE] == "Hex-STRING: 04 00 "  # bit 5 jammed
    assert got[DEVICE_STATUS] == "INTEGER: 5"
    assert got[DISPLAY] == f'STRING: "{alert.description}"'
    status = await _pjl(server, b"@PJL INFO STATUS\r\n")
    assert b"CODE=42000" in status and f'DISPLAY="{alert.description}"'.encode() in status
    pushed = await asyncio.wait_for(reader.readuntil(FF), timeout=10)  # unasked
    assert pushed.startswith(b"@PJL USTATUS DEVICE\r\nCODE=42000\r\n")
    assert f'DISPLAY="{alert.description}"'.encode() in pushed
    root = _payload(device)
    rows = root.findall("p:Status/p:Alert", NS)
    assert [(r.get("index"), r.get("code"), r.text) for r in rows] == [
        (str(alert.index), "8", alert.description)]
    assert _console_property(root) == alert.description
    assert fault.code in alert.description
    # Cleared: it leaves all of them.
    device.clear_fault()
    walk = await run("snmpwalk", *v2c(agent.port), "1.3.6.1.2.1.43.18")
    assert [r for r in parse_walk(walk.out) if not r[1].startswith("No Such")] == []
    got = await _snmp(agent, ERROR_STATE, DISPLAY)
    assert got[ERROR_STATE] == "Hex-STRING: 00 00 " and got[DISPLAY] == 'STRING: "Ready to print"'
    assert b"CODE=10001" in await _pjl(server, b"@PJL INFO STATUS\r\n")
    pushed = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert pushed.startswith(b"@PJL USTATUS DEVICE\r\nCODE=10001\r\n")
    writer.close()
    root = _payload(device)
    assert root.findall("p:Status/p:Alert", NS) == []
    assert _console_property(root) == "Ready to print"

    # A display message set over PJL is the panel's: SNMP and the payload show it.
    await _pjl(server, b'@PJL RDYMSG DISPLAY="Floor 3 - ask Lena"\r\n')
    assert (await _snmp(agent, DISPLAY))[DISPLAY] == 'STRING: "Floor 3 - ask Lena"'
    assert b'DISPLAY="Floor 3 - ask Lena"' in await _pjl(server, b"@PJL INFO STATUS\r\n")
    assert _console_property(_payload(device)) == "Floor 3 - ask Lena"
    # OPMSG takes it off line everywhere until Continue is pressed on the panel.
    await _pjl(server, b'@PJL OPMSG DISPLAY="Load letterhead"\r\n')
    got = await _snmp(agent, DISPLAY, ERROR_STATE, DEVICE_STATUS)
    assert got[DISPLAY] == 'STRING: "Load letterhead"'
    assert got[ERROR_STATE] == "Hex-STRING: 02 00 " and got[DEVICE_STATUS] == "INTEGER: 5"
    assert b"CODE=10002" in await _pjl(server, b"@PJL INFO STATUS\r\n")
    device.console.press_continue()
    assert (await _snmp(agent, ERROR_STATE))[ERROR_STATE] == "Hex-STRING: 00 00 "

    # A print job on port 9100: one count in the Printer-MIB, Xerox's meter, PJL and
    # the payload.
    ps = b"%!PS\n(a) show showpage\n(b) show showpage\n(c) show showpage\n"
    out = await _pjl(server, b"@PJL SET COPIES=2\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + ps
                     + UEL + b"@PJL INFO PAGECOUNT\r\n")
    total = device.counters().total_impressions
    assert total == 6 and out.endswith(f"PAGECOUNT\r\n{total}\r\n\f".encode())
    got = await _snmp(agent, LIFE_COUNT, XEROX_TOTAL)
    assert got == {LIFE_COUNT: f"Counter32: {total}", XEROX_TOTAL: f"INTEGER: {total}"}
    meters = {m.get("name"): m.text for m in _payload(device).iterfind(
        "p:Counters/p:Meter", NS)}
    assert meters["total-impressions"] == str(total)


async def test_garbage_on_both_ports_logs_no_traceback(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    device, agent, server = rig
    caplog.set_level(logging.DEBUG)
    rng = random.Random(19)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"\xa0\x00", ("127.0.0.1", agent.port))  # made pysnmp raise before
        for i in range(2000):
            size = rng.choice((1, 2, 3, 8, 40, 300))
            data = bytes(rng.randrange(256) for _ in range(size))
            if i % 3 == 0:  # a plausible start: SEQUENCE, then noise
                data = b"\x30" + data
            sock.sendto(data, ("127.0.0.1", agent.port))
            if i % 100 == 99:
                await asyncio.sleep(0.01)  # let the agent drain its socket buffer
    finally:
        sock.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(bytes(rng.randrange(256) for _ in range(64 * 1024)))
    writer.write_eof()
    await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await asyncio.sleep(0.2)
    # Both ports still answer.
    got = await _snmp(agent, "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.11.6.0")
    assert got["1.3.6.1.2.1.1.5.0"] == f'STRING: "{device.network().hostname}"'
    assert int(got["1.3.6.1.2.1.11.6.0"].split()[-1]) > 0  # snmpInASNParseErrs counted
    assert b"WorkCentre 7545" in await _pjl(server, b"@PJL INFO ID\r\n")
    # No traceback, and one warning line per port (rate-limited), naming the peer.
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    snmp = [w for w in warnings if w.startswith("SNMP:")]
    port9100 = [w for w in warnings if w.startswith("port 9100:")]
    assert len(snmp) == 1 and "from 127.0.0.1:" in snmp[0], warnings
    assert len(port9100) == 1 and "from 127.0.0.1:" in port9100[0], warnings
    assert agent.bad_input.total >= 100 and server.bad_input.total == 1


async def test_engine_boots_and_time_follow_the_device(rig: Rig) -> None:
    device, agent, _ = rig
    boots, engine_time = "1.3.6.1.6.3.10.2.1.2.0", "1.3.6.1.6.3.10.2.1.3.0"
    await asyncio.sleep(1.1)
    got = await _snmp(agent, boots, engine_time)
    assert got[boots] == "INTEGER: 1" and int(got[engine_time].split()[-1]) >= 1
    await device.reboot()  # virtual boot time; the engine's counts real seconds again
    got = await _snmp(agent, boots, engine_time)
    assert got[boots] == "INTEGER: 2" and int(got[engine_time].split()[-1]) <= 1
    result = await run("snmpget", *v3(agent.port), boots)  # v3 resynchronises to it
    assert result.out.strip().endswith("INTEGER: 2"), result.err
