"""Cutting a device's network: net-snmp times out and port 9100 refuses for the cut's
length on the device's (virtual) clock, then both answer again."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta

import pytest

from emulator.clock import VirtualClock
from emulator.device_runner import DeviceOptions, DeviceRunner
from emulator.network_cut import NetworkCutError

SYS_NAME = "1.3.6.1.2.1.1.5.0"


async def _snmpget(port: int) -> tuple[int, str]:
    if shutil.which("snmpget") is None:
        pytest.fail("snmpget is missing: apt-get install snmp")
    proc = await asyncio.create_subprocess_exec(
        "snmpget", "-v2c", "-c", "public", "-t", "1", "-r", "0", "-Oqv",
        f"127.0.0.1:{port}", SYS_NAME, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip()


async def _print_port_answers(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def test_a_cut_silences_snmp_and_port_9100_until_it_ends() -> None:
    clock = VirtualClock()
    # Two participants that never park (the cut's own sleep parks one): virtual time
    # moves only when the test advances it.
    clock.register()
    clock.register()
    runner = DeviceRunner(DeviceOptions(serial="CUT0000001", web_port=None), clock=clock)
    await runner.start()
    try:
        assert runner.snmp is not None and runner.jetdirect is not None
        snmp_port, print_port = runner.snmp.port, runner.jetdirect.port
        assert await _snmpget(snmp_port) == (0, '"mfp-cut0000001"')
        assert await _print_port_answers(print_port)

        cut = asyncio.create_task(runner.cut_network(10 * 60))
        for _ in range(500):
            if not runner.network.up and runner.jetdirect.paused:
                break
            await asyncio.sleep(0.01)
        assert not cut.done() and not runner.network.up and runner.jetdirect.paused
        with pytest.raises(NetworkCutError, match="already cut"):
            await runner.cut_network(60)
        dropped = runner.snmp.requests_dropped
        code, out = await _snmpget(snmp_port)
        assert code != 0 and "Timeout" in out
        assert runner.snmp.requests_dropped > dropped
        assert not await _print_port_answers(print_port)

        clock.advance_to(clock.now() + timedelta(minutes=9))  # not yet
        await asyncio.sleep(0.05)
        assert not cut.done() and not runner.network.up
        clock.advance_to(clock.now() + timedelta(minutes=1))
        await asyncio.wait_for(cut, 10)
        assert runner.network.up and runner.network.cuts == 1
        assert await _snmpget(snmp_port) == (0, '"mfp-cut0000001"')
        assert runner.jetdirect.port == print_port and await _print_port_answers(print_port)
    finally:
        clock.unregister()
        clock.unregister()
        await runner.stop()
