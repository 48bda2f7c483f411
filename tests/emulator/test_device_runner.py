"""The emulated MFP on the network: CLI process and in-process runner with its agent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from device_direct.errors import ConfigError
from emulator.device_runner import (
    AgentOptions,
    DeviceOptions,
    DeviceRunner,
    add_device_parser,
    options_from_args,
)
from emulator.server.app import ReferenceServer

ROOT = Path(__file__).resolve().parents[2]
UEL = b"\x1b%-12345X"


async def _pjl(port: int, command: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UEL + command + b"@PJL ECHO END\r\n" + UEL)
    data = await asyncio.wait_for(reader.readuntil(b"@PJL ECHO END\r\n\x0c"), timeout=10)
    writer.close()
    return data


async def test_cli_prints_its_ports_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator.device_runner", "--no-agent", "--serial", "CLI0001",
        "--state-dir", str(tmp_path / "state"), cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [await asyncio.wait_for(proc.stdout.readline(), timeout=60) for _ in range(4)]
        if not lines[-1]:
            assert proc.stderr is not None
            pytest.fail(f"device did not start: {(await proc.stderr.read()).decode()}")
        info = json.loads(lines[3])
        assert lines[0].decode().startswith("snmp udp 127.0.0.1:")
        assert lines[1].decode() == f"jetdirect tcp 127.0.0.1:{info['jetdirect_port']}\n"
        assert lines[2].decode() == f"control http 127.0.0.1:{info['control_port']}\n"
        assert info["serial"] == "CLI0001" and info["agent"] is False
        snmp = await asyncio.create_subprocess_exec(
            "snmpget", "-v2c", "-c", "public", "-On", "-t", "2", "-r", "1",
            f"127.0.0.1:{info['snmp_port']}", "1.3.6.1.2.1.43.5.1.1.17.1",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await snmp.communicate()
        assert out.decode().strip().endswith('STRING: "CLI0001"')
        answer = await _pjl(info["jetdirect_port"], b"@PJL INFO ID\r\n")
        assert b'"WorkCentre 7545"' in answer
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0
    assert (tmp_path / "state" / "model").is_dir()  # the state survives the process


def test_options_name_the_wrong_option() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_device_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(ConfigError, match="--server"):
        options_from_args(parser.parse_args(["device"]))
    with pytest.raises(ConfigError, match="--ca"):
        options_from_args(parser.parse_args(["device", "--server", "https://h/"]))
    with pytest.raises(ConfigError, match="--v3-user"):
        options_from_args(parser.parse_args(["device", "--no-agent", "--v3-user", "u"]))
    with pytest.raises(ConfigError, match=r"server\.url"):
        options_from_args(parser.parse_args(["device", "--server", "http://h/", "--ca", "x"]))
    ok = options_from_args(parser.parse_args(["device", "--no-agent", "--snmp-port", "0"]))
    assert ok.agent is None and ok.snmp.port == 0


async def test_runner_prints_through_9100_and_uploads_through_its_agent(tmp_path: Path) -> None:
    async with ReferenceServer(tmp_path / "server") as server:
        runner = DeviceRunner(DeviceOptions(
            serial="RUN0001", state_dir=tmp_path / "device",
            agent=AgentOptions(server_url=f"https://127.0.0.1:{server.port}/",
                               ca_bundle=server.ca_cert_path, server_name="localhost",
                               registration_key=server.create_registration_key())))
        await runner.start()
        try:
            assert runner.agent is not None and runner.device is not None
            await _pjl(runner.describe()["jetdirect_port"],
                       b"@PJL ENTER LANGUAGE=POSTSCRIPT\r\n%!\nshowpage\nshowpage\n" + UEL)
            assert runner.device.counters().total_impressions == 2
            assert await runner.agent.queue_payload("on-demand") is not None
            assert await runner.agent.sync("on-demand")
            devices = server.storage.devices()
            assert [d["serial"] for d in devices] == ["RUN0001"]
            assert server.storage.uploads_count(devices[0]["device_id"]) == 1
            assert await runner.agent_error() is None
        finally:
            await runner.stop()


def test_unknown_profile_is_a_usage_error_naming_the_option_and_the_profiles() -> None:
    done = subprocess.run([sys.executable, "-m", "emulator", "device", "--profile", "bogus",
                           "--no-agent"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "key '--profile'" in done.stderr and "'bogus'" in done.stderr
    assert "office-color" in done.stderr  # what the user could have meant


@pytest.mark.parametrize("option", ["--web-port", "--control-port", "--state-dir"])
def test_a_busy_port_or_unusable_state_dir_is_one_line_not_a_traceback(
        tmp_path: Path, option: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        value = str(blocker) if option == "--state-dir" else str(busy.getsockname()[1])
        done = subprocess.run([sys.executable, "-m", "emulator", "device", "--no-agent",
                               option, value], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and value in last, last


async def test_the_printer_and_its_agent_stand_in_the_time_zone_given(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_device_parser(parser.add_subparsers(dest="command"))
    common = ["device", "--server", "https://127.0.0.1:1/", "--ca", str(tmp_path / "ca.pem"),
              "--web-port", "-1"]
    for extra, zone in ((["--time-zone", "Asia/Tokyo", "--age-days", "3"], "Asia/Tokyo"),
                        (["--profile", "office-mono"], "America/Chicago")):  # the profile's
        runner = DeviceRunner(options_from_args(parser.parse_args(
            [*common, *extra, "--state-dir", str(tmp_path / zone)])))
        await runner.start()
        try:
            assert runner.device is not None and runner.agent is not None
            # Its working hours, holidays and history are local there, and so is its
            # agent's daily upload (they were Europe/Berlin and UTC).
            assert runner.device.time_zone == zone
            assert runner.agent.config.device.time_zone == zone
        finally:
            await runner.stop()
    with pytest.raises(ConfigError, match=r"--time-zone.*Mars/Olympus"):
        options_from_args(parser.parse_args(
            ["device", "--no-agent", "--time-zone", "Mars/Olympus"]))
