"""The SNMP agent against net-snmp's snmpwalk / snmpbulkwalk / snmpget / snmpset."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator

import pytest
from snmp_helpers import make_agent, make_device, parse_walk, run, v2c, v3

from device_direct.model import PrintJob, Severity
from emulator.clock import VirtualClock
from emulator.model.device import EmulatedDevice
from emulator.snmp import SnmpAgent
from emulator.snmp.printer_mib import HOST_RESOURCES, PRINTER_MIB, PRT_MARKER_LIFE_COUNT

Rig = tuple[EmulatedDevice, SnmpAgent]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    device = make_device(clock)
    agent = make_agent(device, clock)
    await agent.start()
    try:
        yield device, agent
    finally:
        await agent.stop()


def _ordered(oids: list[tuple[int, ...]]) -> bool:
    return all(a < b for a, b in itertools.pairwise(oids))


@pytest.mark.parametrize("prefix", [PRINTER_MIB, HOST_RESOURCES])
@pytest.mark.parametrize("how", ["walk-v2c", "bulkwalk-v2c", "walk-v1", "walk-v3"])
async def test_walks_are_complete_and_ordered(rig: Rig, prefix: tuple[int, ...],
                                              how: str) -> None:
    device, agent = rig
    device.jam()  # an alert row too
    root = ".".join(map(str, prefix))
    args = {"walk-v2c": ("snmpwalk", *v2c(agent.port)),
            "bulkwalk-v2c": ("snmpbulkwalk", *v2c(agent.port)),
            "walk-v1": ("snmpwalk", "-v1", "-c", "public", "-On", f"127.0.0.1:{agent.port}"),
            "walk-v3": ("snmpwalk", *v3(agent.port))}[how]
    result = await run(args[0], *args[1:], root)
    assert result.returncode == 0, result.err
    rows = parse_walk(result.out)
    oids = [oid for oid, _ in rows]
    assert _ordered(oids), "walk is not in lexicographic order"
    assert oids == [oid for oid, _ in agent.table().subtree(prefix)]
    snap = device.snapshot()
    if prefix == PRINTER_MIB:
        supplies = {o for o in oids if o[:10] == (*PRINTER_MIB, 11, 1, 1)}
        assert supplies == {(*PRINTER_MIB, 11, 1, 1, col, 1, s.index)
                            for s in snap.supplies for col in range(2, 10)}
        alerts = {o for o in oids if o[:10] == (*PRINTER_MIB, 18, 1, 1)}
        assert alerts == {(*PRINTER_MIB, 18, 1, 1, col, 1, a.index)
                          for a in snap.alerts for col in range(2, 10)}
        assert len(snap.alerts) >= 1
        assert PRT_MARKER_LIFE_COUNT in oids
        serial = dict(rows)[(*PRINTER_MIB, 5, 1, 1, 17, 1)]
        assert serial == f'STRING: "{snap.identity.serial}"'
    else:
        values = dict(rows)
        assert values[(*HOST_RESOURCES, 3, 2, 1, 2, 1)] == "OID: .1.3.6.1.2.1.25.3.1.5"
        assert values[(*HOST_RESOURCES, 3, 2, 1, 5, 1)] == "INTEGER: 5"  # down: jammed
        assert values[(*HOST_RESOURCES, 3, 5, 1, 1, 1)] == "INTEGER: 1"  # other
        assert values[(*HOST_RESOURCES, 3, 5, 1, 2, 1)].startswith("Hex-STRING: 04 00")


async def test_system_group_names_model_firmware_and_vendor_arc(rig: Rig) -> None:
    device, agent = rig
    result = await run("snmpwalk", *v2c(agent.port), "1.3.6.1.2.1.1")
    values = dict(parse_walk(result.out))
    descr = values[(1, 3, 6, 1, 2, 1, 1, 1, 0)]
    assert descr.startswith('STRING: "Xerox WorkCentre 7545 v1 Multifunction System; SS ')
    assert "SS 100.002.057.09608" in descr and "ME 063.022.000" in descr
    # Under Xerox's enterprise arc (253), where fleet tools look for a Xerox printer.
    assert values[(1, 3, 6, 1, 2, 1, 1, 2, 0)] == "OID: .1.3.6.1.4.1.253.8.62.1.20.5.40.1.1"
    assert values[(1, 3, 6, 1, 2, 1, 1, 5, 0)] == f'STRING: "{device.network().hostname}"'


async def test_life_count_follows_print_jobs(rig: Rig) -> None:
    device, agent = rig
    oid = ".".join(map(str, PRT_MARKER_LIFE_COUNT))
    before = await run("snmpget", *v2c(agent.port), oid)
    assert before.out.strip().endswith("Counter32: 0")
    await device.print_job(PrintJob(pages=7, copies=2))
    after = await run("snmpget", *v2c(agent.port), oid)
    total = device.counters().total_impressions
    assert total == 14
    assert after.out.strip() == f".{oid} = Counter32: {total}"
    v1 = await run("snmpget", "-v1", "-c", "public", "-On", f"127.0.0.1:{agent.port}", oid)
    assert v1.out.strip() == f".{oid} = Counter32: {total}"


async def test_supply_levels_and_alert_table_follow_the_model(rig: Rig) -> None:
    device, agent = rig
    # A heavy colour job runs the colour toners empty (critical: marking stops there,
    # the job does not complete); a black one then leaves the black toner low (warning).
    await device.print_job(PrintJob(pages=500, coverage=0.5, color=True))
    await device.print_job(PrintJob(pages=180, coverage=0.5, color=False))
    snap = device.snapshot()
    result = await run("snmpbulkwalk", *v2c(agent.port), "1.3.6.1.2.1.43.11.1.1.9")
    levels = {oid[-1]: value for oid, value in parse_walk(result.out)}
    assert levels == {s.index: f"INTEGER: {s.level}" for s in snap.supplies}
    low = [a for a in snap.alerts if a.group == 11]
    assert low, "heavy printing should have made a supply low"
    codes = await run("snmpwalk", *v2c(agent.port), "1.3.6.1.2.1.43.18.1.1.7")
    assert {oid[-1]: v for oid, v in parse_walk(codes.out)} == {
        a.index: f"INTEGER: {a.code}" for a in snap.alerts}
    severities = await run("snmpwalk", *v2c(agent.port), "1.3.6.1.2.1.43.18.1.1.2")
    assert all(v in ("INTEGER: 3", "INTEGER: 4") for _, v in parse_walk(severities.out))
    assert any(a.severity is Severity.WARNING for a in low)


async def test_v3_auth_priv_works_and_a_wrong_key_is_refused(rig: Rig) -> None:
    _, agent = rig
    ok = await run("snmpget", *v3(agent.port), "1.3.6.1.2.1.1.5.0")
    assert ok.returncode == 0 and "STRING" in ok.out, ok.err
    bad_auth = await run("snmpget", *v3(agent.port, auth="wrong-pass-1"), "1.3.6.1.2.1.1.5.0")
    assert bad_auth.returncode != 0
    assert "Authentication failure" in bad_auth.err or "Timeout" in bad_auth.err
    unknown = await run("snmpget", *v3(agent.port, user="mallory"), "1.3.6.1.2.1.1.5.0")
    assert unknown.returncode != 0 and "Unknown user name" in unknown.err
    public = await run("snmpget", *v2c(agent.port, "wrong-community"), "1.3.6.1.2.1.1.5.0",
                       timeout_s=0.3, retries=0)
    assert public.returncode != 0 and "Timeout" in public.err


async def test_set_needs_write_rights(rig: Rig) -> None:
    _, agent = rig
    loc = "1.3.6.1.2.1.1.6.0"
    ro = await run("snmpset", *v2c(agent.port, "public"), loc, "s", "lobby")
    assert ro.returncode != 0 and "noAccess" in ro.err
    ro1 = await run("snmpset", "-v1", "-c", "public", f"127.0.0.1:{agent.port}", loc, "s", "x")
    assert ro1.returncode != 0 and "noSuchName" in ro1.err
    reader = await run("snmpset", *v3(agent.port, user="reader"), loc, "s", "x")
    assert reader.returncode != 0 and "noAccess" in reader.err
    rw = await run("snmpset", *v2c(agent.port, "private"), loc, "s", "Room 4.12")
    assert rw.returncode == 0, rw.err
    admin = await run("snmpset", *v3(agent.port), "1.3.6.1.2.1.1.4.0", "s", "it@example.com")
    assert admin.returncode == 0, admin.err
    got = await run("snmpget", *v2c(agent.port), loc, "1.3.6.1.2.1.1.4.0")
    assert 'STRING: "Room 4.12"' in got.out and 'STRING: "it@example.com"' in got.out
    assert agent.settings.current().location == "Room 4.12"
    wrong_type = await run("snmpset", *v2c(agent.port, "private"), loc, "i", "5")
    assert wrong_type.returncode != 0 and "wrongType" in wrong_type.err
    read_only = await run("snmpset", *v2c(agent.port, "private"), "1.3.6.1.2.1.1.1.0", "s", "x")
    assert read_only.returncode != 0 and "notWritable" in read_only.err
    too_long = await run("snmpset", *v2c(agent.port, "private"), loc, "s", "x" * 256)
    assert too_long.returncode != 0 and "wrongLength" in too_long.err
    assert agent.settings.current().location == "Room 4.12"


async def test_get_of_missing_objects_and_end_of_mib(rig: Rig) -> None:
    _, agent = rig
    got = await run("snmpget", *v2c(agent.port), "1.3.6.1.2.1.43.11.1.1.9.1.99",
                    "1.3.6.1.2.1.99.1.0")
    assert "No Such Instance" in got.out and "No Such Object" in got.out
    last = agent.table().oids()[-1]
    nxt = await run("snmpgetnext", *v2c(agent.port), ".".join(map(str, last)))
    assert "No more variables left in this MIB View" in nxt.out


def _long_form_get(oid: bytes, community: bytes = b"public") -> bytes:
    """An SNMPv1 GET with every length in long form (0x82 hi lo), like nmap's probe."""
    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, 0x82]) + len(body).to_bytes(2, "big") + body

    varbind = tlv(0x30, bytes([0x06, len(oid)]) + oid + b"\x05\x00")
    pdu = tlv(0xA0, b"\x02\x04\x4c\x33\xa7\x56\x02\x01\x00\x02\x01\x00" + tlv(0x30, varbind))
    return tlv(0x30, b"\x02\x01\x00" + bytes([0x04, len(community)]) + community + pdu)


async def _exchange(port: int, datagram: bytes, *, expect_answer: bool) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, datagram)
        if not expect_answer:
            return None
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout=5)


async def test_long_form_ber_probe_is_answered(rig: Rig) -> None:
    _, agent = rig
    probe = _long_form_get(bytes([0x2B, 6, 1, 2, 1, 1, 1, 0]))  # sysDescr.0
    assert probe.startswith(b"0\x82\x00")
    answer = await _exchange(agent.port, probe, expect_answer=True)
    assert answer is not None and b"WorkCentre 7545" in answer


async def test_malformed_datagrams_do_not_stop_the_agent(rig: Rig) -> None:
    _, agent = rig
    rng = random.Random(1234)
    valid = _long_form_get(bytes([0x2B, 6, 1, 2, 1, 1, 5, 0]))
    junk = [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"0\x82\x00/" + b"\x00" * 47,
            b"\x30\x80" + b"\x00" * 10, bytes(range(256))]
    for _ in range(150):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        junk.append(bytes(data[: rng.randint(1, len(data))]))
        junk.append(rng.randbytes(rng.randint(1, 200)))
    for datagram in junk:
        await _exchange(agent.port, datagram, expect_answer=False)
    still = await run("snmpget", *v2c(agent.port), "1.3.6.1.2.1.1.5.0")
    assert still.returncode == 0 and "STRING" in still.out


async def test_switched_off_device_does_not_answer(rig: Rig) -> None:
    device, agent = rig
    await device.power_off()
    off = await run("snmpget", *v2c(agent.port), "1.3.6.1.2.1.1.3.0", timeout_s=0.3, retries=0)
    assert off.returncode != 0 and "Timeout" in off.err
    assert agent.requests_dropped >= 1
    await device.power_on()
    on = await run("snmpget", *v2c(agent.port), "1.3.6.1.2.1.25.3.5.1.1.1")
    assert on.out.strip().endswith("INTEGER: 3")  # idle again


async def test_pwg_imaging_counters_follow_the_model(rig: Rig) -> None:
    from device_direct.model import JobKind
    from emulator.snmp.printer_mib import IMAGING_COUNTERS

    device, agent = rig
    await device.print_job(PrintJob(pages=3, color=True))
    await device.print_job(PrintJob(kind=JobKind.COPY, pages=2))
    result = await run("snmpbulkwalk", *v2c(agent.port), ".".join(map(str, IMAGING_COUNTERS)))
    assert result.returncode == 0, result.err
    rows = parse_walk(result.out)
    oids = [oid for oid, _ in rows]
    assert _ordered(oids) and oids == [o for o, _ in agent.table().subtree(IMAGING_COUNTERS)]
    values = dict(rows)
    c = device.counters()
    imp = (*IMAGING_COUNTERS, 8, 1, 1)
    # key 1 = systemTotals, work type workTotals(3), persistence lifetime(3)
    assert values[(*imp, 4, 1, 3, 3)] == f"INTEGER: {c.total_impressions}"
    assert values[(*imp, 5, 1, 3, 3)] == f"INTEGER: {c.black_impressions}"
    assert values[(*imp, 7, 1, 3, 3)] == f"INTEGER: {c.color_impressions}"
    assert values[(*imp, 4, 2, 3, 3)] == f"INTEGER: {c.print_impressions}"  # print
    assert values[(*imp, 4, 3, 3, 3)] == f"INTEGER: {c.copy_impressions}"  # copy
    assert c.print_impressions >= 3 and c.copy_impressions >= 2
    # icServiceTable, indexed by IcServiceTypeTC: print(11) -> key 2
    assert values[(*IMAGING_COUNTERS, 3, 1, 1, 3, 11, 1)] == "INTEGER: 2"


async def test_a_getbulk_with_more_repeaters_than_an_answer_carries_is_cut_not_empty(
        rig: Rig) -> None:
    from emulator.snmp.instrum import BULK_MAX_VARBINDS

    _, agent = rig
    # 300 repeaters (net-snmp allows that many OIDs in one snmpbulkget): the answer is
    # the first round cut at BULK_MAX_VARBINDS (RFC 3416 4.2.3), not an empty PDU.
    oids = ["1.3.6.1.2.1.1.1"] * 300
    result = await run("snmpbulkget", *v2c(agent.port), "-Cn0", "-Cr3", *oids)
    rows = parse_walk(result.out)
    assert len(rows) == BULK_MAX_VARBINDS
    assert {oid for oid, _ in rows} == {(1, 3, 6, 1, 2, 1, 1, 1, 0)}
