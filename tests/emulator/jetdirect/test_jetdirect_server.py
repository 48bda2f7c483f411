"""Port 9100 over real loopback TCP: PJL the way tools speak it, print jobs, DLM, limits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from emulator.clock import VirtualClock
from emulator.jetdirect import DlmFile, DlmRejected, JetDirectConfig, JetDirectServer
from emulator.jetdirect.stream import Limits
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile

UEL = b"\x1b%-12345X"
FF = b"\x0c"
Rig = tuple[EmulatedDevice, JetDirectServer]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    device = EmulatedDevice(load_profile("office-color"), serial="JD0001", clock=clock,
                            rng_seed=5, state_dir=None)
    server = JetDirectServer(device, clock=clock, config=JetDirectConfig(
        port=0, idle_timeout_s=5, max_connections=16,
        limits=Limits(max_line=256, max_job=64 * 1024)))
    await server.start()
    try:
        yield device, server
    finally:
        await server.stop()


async def _connect(server: JetDirectServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def ask(server: JetDirectServer, command: bytes, tag: str = "DELIMITER4711") -> bytes:
    """What PRET-like tools do: UEL + command + ECHO + UEL; read until the echo is back."""
    reader, writer = await _connect(server)
    writer.write(UEL + command + f"@PJL ECHO {tag}\r\n".encode() + UEL)
    await writer.drain()
    echo = f"@PJL ECHO {tag}\r\n".encode() + FF
    data = await asyncio.wait_for(reader.readuntil(echo), timeout=10)
    writer.close()
    return data[: -len(echo)]


async def send_and_close(server: JetDirectServer, data: bytes) -> bytes:
    reader, writer = await _connect(server)
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


async def test_info_commands_the_way_tools_send_them(rig: Rig) -> None:
    _, server = rig
    assert await ask(server, b"@PJL INFO ID\r\n") == b'@PJL INFO ID\r\n"WorkCentre 7545"\r\n\x0c'
    status = await ask(server, b"@PJL INFO STATUS\r\n")
    assert status == (b'@PJL INFO STATUS\r\nCODE=10001\r\nDISPLAY="Ready to print"\r\n'
                      b"ONLINE=TRUE\r\n\x0c")
    assert (await ask(server, b"@PJL INFO PAGECOUNT\r\n")).endswith(b"\r\n0\r\n\x0c")
    ustatus = await ask(server, b"@PJL INFO USTATUS\r\n")
    assert b"DEVICE=OFF [3 ENUMERATED]\r\n\tOFF\r\n\tON\r\n\tVERBOSE" in ustatus
    assert b"TIMED=0 [2 RANGE]" in ustatus
    config = await ask(server, b"@PJL INFO CONFIG\r\n")
    assert b"IN TRAYS [5 ENUMERATED]" in config and config.endswith(b"\x0c")
    variables = await ask(server, b"@PJL INFO VARIABLES\r\n")
    assert b"COPIES=1 [2 RANGE]" in variables


async def test_bare_status_and_nmap_probe(rig: Rig) -> None:
    _, server = rig
    bare = await send_and_close(server, b"@PJL INFO STATUS\r\n")
    assert bare.startswith(b"@PJL INFO STATUS\r\nCODE=10001\r\n") and bare.endswith(FF)
    nmap = await send_and_close(server, b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n")
    assert nmap == b'@PJL INFO ID\r\n"WorkCentre 7545"\r\n\x0c'


async def test_print_jobs_move_the_meters_by_the_documented_count(rig: Rig) -> None:
    device, server = rig
    ps = b"%!PS\n(a) show showpage\n(b) show showpage\n(c) show showpage\n"
    out = await ask(server, b'@PJL JOB NAME="report"\r\n@PJL SET COPIES=2\r\n'
                            b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + ps + UEL
                            + b"@PJL INFO PAGECOUNT\r\n")
    assert device.counters().total_impressions == 6  # 3 showpage x 2 copies
    assert out.endswith(b"@PJL INFO PAGECOUNT\r\n6\r\n\x0c")
    pcl = b"\x1bE\x1b*b4W\x0c\x0c\x0c\x0cpage one\x0cpage two\x1bE"
    await ask(server, pcl + UEL)
    assert device.counters().total_impressions == 8
    text = b"line\n" * 130  # 3 pages of 60 lines
    await ask(server, b"@PJL SET DUPLEX=ON\r\n" + UEL + text + UEL)
    counters = device.counters()
    assert counters.total_impressions == 8 + 4  # 3 pages on 2 sheets, both sides counted
    assert counters.color_impressions == 0
    await ask(server, b"@PJL SET RENDERMODE=COLOR\r\n@PJL ENTER LANGUAGE=PCL\r\nhi\x0c" + UEL)
    assert device.counters().color_impressions == 1
    assert server.stats.jobs == 4 and server.stats.impressions == 13


async def test_unsolicited_status(rig: Rig) -> None:
    device, server = rig
    reader, writer = await _connect(server)
    writer.write(UEL + b"@PJL USTATUS DEVICE=ON\r\n@PJL USTATUS JOB=ON\r\n"
                       b"@PJL USTATUS PAGE=ON\r\n")
    first = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert first == (b'@PJL USTATUS DEVICE\r\nCODE=10001\r\nDISPLAY="Ready to print"\r\n'
                     b"ONLINE=TRUE\r\n\x0c")
    device.jam()
    writer.write(UEL + b'@PJL JOB NAME="j"\r\n' + UEL + b"text\x0c" + UEL)
    start = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert start == b'@PJL USTATUS JOB\r\nSTART\r\nNAME="j"\r\n\x0c'
    end = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert end == b'@PJL USTATUS JOB\r\nEND\r\nNAME="j"\r\nPAGES=0\r\n\x0c'  # jammed
    jam = await asyncio.wait_for(reader.readuntil(FF), timeout=10)
    assert jam.startswith(b"@PJL USTATUS DEVICE\r\nCODE=42000\r\n")
    assert b"ONLINE=FALSE" in jam
    assert server.stats.failed_jobs == 1
    writer.close()


async def test_rdymsg_changes_the_display(rig: Rig) -> None:
    _, server = rig
    await ask(server, b'@PJL RDYMSG DISPLAY="INSERT COIN"\r\n')
    assert b'DISPLAY="INSERT COIN"' in await ask(server, b"@PJL INFO STATUS\r\n")
    await ask(server, b'@PJL RDYMSG DISPLAY=""\r\n')
    assert b'DISPLAY="Ready to print"' in await ask(server, b"@PJL INFO STATUS\r\n")


DLM = (b'%%XRXbegin\n%%OID_ATT_JOB_TYPE OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE\n'
       b'%%OID_ATT_DLM_NAME "ColorWorks System"\n%%OID_ATT_DLM_VERSION "100.002.060.00001"\n'
       b'%%OID_ATT_DLM_SIGNATURE "deadbeef"\n%%XRXend\n' + bytes(range(256)) * 8)


async def test_dlm_goes_to_the_firmware_callback(rig: Rig) -> None:
    device, server = rig
    await ask(server, DLM + UEL)
    outcome = server.stats.firmware[-1]
    assert (outcome.accepted, outcome.reason) == (False, "firmware by print job is disabled")
    received: list[DlmFile] = []

    async def install(dlm: DlmFile) -> None:
        received.append(dlm)

    server.on_firmware = install
    await ask(server, DLM + UEL)
    assert [(d.name, d.version, d.signature) for d in received] == [
        ("ColorWorks System", "100.002.060.00001", bytes.fromhex("deadbeef"))]
    assert received[0].payload == bytes(range(256)) * 8
    assert server.stats.firmware[-1].accepted

    async def refuse(dlm: DlmFile) -> None:
        raise DlmRejected("signature does not verify")

    server.on_firmware = refuse
    await ask(server, DLM + UEL)
    assert server.stats.firmware[-1].reason == "signature does not verify"
    server.firmware_by_print_job = False
    server.on_firmware = install
    await ask(server, DLM + UEL)
    assert len(received) == 1 and "switched off" in server.stats.firmware[-1].reason
    await ask(server, DLM.replace(b'"deadbeef"', b'"nothex"') + UEL)
    assert "not hex" in server.stats.firmware[-1].reason
    assert device.counters().total_impressions == 0  # firmware is never printed


async def test_concurrent_clients(rig: Rig) -> None:
    device, server = rig
    jobs = [ask(server, f"@PJL SET COPIES={n}\r\n".encode() + UEL + b"page\x0cpage\x0c" + UEL,
                tag=f"D{n}") for n in range(1, 7)]
    infos = [ask(server, b"@PJL INFO ID\r\n", tag=f"I{n}") for n in range(6)]
    results = await asyncio.gather(*jobs, *infos)
    assert all(b"WorkCentre 7545" in r for r in results[6:])
    assert device.counters().total_impressions == 2 * sum(range(1, 7))


async def test_garbage_and_oversize_get_a_clean_close(rig: Rig) -> None:
    device, server = rig
    rng = random.Random(99)
    noise = bytes(rng.randrange(128, 256) for _ in range(4000))
    assert await send_and_close(server, noise) == b""
    assert server.stats.garbage == 1
    reader, writer = await _connect(server)
    writer.write(b"%!PS\n" + b"x" * (70 * 1024))
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the server
    writer.close()
    assert await send_and_close(server, b"@PJL " + b"A" * 300) == b""
    assert server.stats.violations == 2
    for _ in range(20):
        await send_and_close(server, rng.randbytes(rng.randint(1, 300)))
    assert device.counters().total_impressions >= 0
    assert b"WorkCentre 7545" in await ask(server, b"@PJL INFO ID\r\n")


async def test_idle_connections_are_closed(rig: Rig) -> None:
    device, _ = rig
    server = JetDirectServer(device, clock=VirtualClock(),
                             config=JetDirectConfig(port=0, idle_timeout_s=0.2))
    await server.start()
    try:
        reader, writer = await _connect(server)
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()
    finally:
        await server.stop()


async def test_connection_limit(rig: Rig) -> None:
    device, _ = rig
    server = JetDirectServer(device, clock=VirtualClock(),
                             config=JetDirectConfig(port=0, max_connections=1))
    await server.start()
    try:
        first_r, first_w = await _connect(server)
        first_w.write(b"@PJL ECHO ONE\r\n")
        assert await asyncio.wait_for(first_r.readuntil(FF), timeout=10) == (
            b"@PJL ECHO ONE\r\n\x0c")
        second_r, second_w = await _connect(server)
        assert await asyncio.wait_for(second_r.read(), timeout=10) == b""
        assert server.stats.refused_connections == 1
        first_w.close()
        second_w.close()
    finally:
        await server.stop()
