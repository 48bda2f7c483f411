"""The QA control API of a running emulated device, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from closed_pipe import run_with_stdout_closed

from emulator.clock import VirtualClock
from emulator.device_control import serve_control
from emulator.device_runner import AgentOptions, DeviceOptions, DeviceRunner
from emulator.server.app import ReferenceServer


async def _call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(
        method, f"http://127.0.0.1:{port}{path}", json=body
    ) as r:
        return r.status, await r.json()


async def test_print_fault_clear_power_over_the_api(tmp_path: Path) -> None:
    clock = VirtualClock()  # nobody holds time: boots and prints take no real time
    runner = DeviceRunner(DeviceOptions(state_dir=tmp_path), clock=clock)
    await runner.start()
    control, port = await serve_control(runner)
    try:
        status, state = await _call(port, "GET", "/state")
        assert status == 200 and state["power"] in ("ready", "sleeping")
        before = state["counters"]["total_impressions"]

        status, result = await _call(port, "POST", "/print", {"pages": 3, "color": True})
        assert status == 200 and result["completed"]
        _, state = await _call(port, "GET", "/state")
        assert state["counters"]["total_impressions"] == before + 3
        assert state["counters"]["color_impressions"] >= 3

        status, body = await _call(port, "POST", "/fault", {})
        assert status == 200 and body["fault"]["code"]
        _, state = await _call(port, "GET", "/state")
        assert state["power"] == "faulted" and state["faults"][0]["code"] == body["fault"]["code"]
        status, body = await _call(port, "POST", "/print", {"pages": 1})
        assert status == 409 and "error" in body  # a jammed device does not print
        await _call(port, "POST", "/clear")

        status, body = await _call(port, "POST", "/power", {"state": "off"})
        assert (status, body["power"]) == (200, "off")
        status, body = await _call(port, "POST", "/print", {"pages": 1})
        assert status == 409
        status, body = await _call(port, "POST", "/power", {"state": "on"})
        assert status == 200 and body["power"] in ("ready", "sleeping")
        status, body = await _call(port, "POST", "/power-loss")
        assert status == 200 and body["power"] in ("ready", "sleeping")
        _, state = await _call(port, "GET", "/state")
        assert state["counters"]["total_impressions"] == before + 3  # persisted

        assert (await _call(port, "POST", "/power", {"state": "sideways"}))[0] == 400
        assert (await _call(port, "POST", "/print", {"pages": 0}))[0] == 400
        assert (await _call(port, "POST", "/send-now"))[0] == 409  # no agent here
    finally:
        await control.cleanup()
        await runner.stop()


async def test_bodies_the_api_cannot_read_are_400_not_500(tmp_path: Path) -> None:
    runner = DeviceRunner(DeviceOptions(state_dir=tmp_path), clock=VirtualClock())
    await runner.start()
    control, port = await serve_control(runner)
    try:
        assert runner.device is not None
        before = runner.device.counters().total_impressions
        async with aiohttp.ClientSession() as s:
            for path, body, content_type in [
                    ("/fault", b'{"code": "075-135"}', "application/json; charset=bogus"),
                    ("/fault", b'{"code": "\xff"}', "application/json"),
                    ("/print", b'{"pages": 1e999}', "application/json"),  # inf
                    ("/print", b'{"copies": -1e999}', "application/json")]:
                async with s.post(f"http://127.0.0.1:{port}{path}", data=body,
                                  headers={"Content-Type": content_type}) as r:
                    assert r.status == 400, (path, body, r.status)
                    assert "error" in await r.json()
        assert runner.device.counters().total_impressions == before
        assert not runner.device.alerts()
    finally:
        await control.cleanup()
        await runner.stop()


async def test_a_request_waiting_on_a_long_job_does_not_hold_up_the_stop(
        tmp_path: Path) -> None:
    from device_direct.model import PrintJob
    from emulator.device_control import SHUTDOWN_TIMEOUT_S

    runner = DeviceRunner(DeviceOptions(state_dir=tmp_path))  # the system clock
    await runner.start()
    control, port = await serve_control(runner)
    try:
        assert runner.device is not None
        # Minutes of real printing hold the device; a power off waits behind them.
        job = asyncio.create_task(runner.device.print_job(PrintJob(pages=2, copies=200)))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(_call(port, "POST", "/power", {"state": "off"}))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        # the CLI's SIGTERM path; aiohttp's default waited 60 s for the request
        await asyncio.wait_for(control.cleanup(), SHUTDOWN_TIMEOUT_S + 10)
    finally:
        await runner.stop()
        for task in (job, waiting):
            task.cancel()
        await asyncio.gather(job, waiting, return_exceptions=True)


async def test_send_now_reaches_the_server(tmp_path: Path) -> None:
    clock = VirtualClock()
    # Two participants: this test, which never parks, and the device's agent (the runner
    # does not register it; counted alone, its parking let time run on to the daily
    # sync and beyond: one run of the full suite saw 617 days uploaded before the first
    # look). So virtual time stands still: the one payload is the one send-now asks for.
    clock.register()
    clock.register()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        runner = DeviceRunner(DeviceOptions(
            state_dir=tmp_path / "dev",
            agent=AgentOptions(server_url=f"https://127.0.0.1:{server.port}",
                               ca_bundle=server.ca_cert_path, server_name="localhost",
                               registration_key=server.create_registration_key())),
            clock=clock)
        await runner.start()
        control, port = await serve_control(runner)
        try:
            status, _ = await _call(port, "POST", "/send-now")
            assert status == 200
            # The server stores the upload before the agent has read the answer and
            # marked its outbox (off the loop since issue 16): wait for both.
            state: dict[str, Any] = {}
            for _ in range(1000):
                _, state = await _call(port, "GET", "/state")
                if (server.storage.uploads_count() == 1
                        and state["agent"]["stats"]["uploads_stored"] == 1):
                    break
                await asyncio.sleep(0.01)
            assert server.storage.uploads_count() == 1
            assert state["agent"]["registered"] and state["agent"]["stats"]["uploads_stored"] == 1
        finally:
            await control.cleanup()
            await runner.stop()


def test_cli_device_and_device_ctl(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "device", "--no-agent", "--state-dir",
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = {}
        for line in proc.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info.get("control_port"), "the device did not print its ports"

        def ctl(*args: str) -> tuple[int, Any]:
            out = subprocess.run(
                [sys.executable, "-m", "emulator", "device-ctl", "--port",
                 str(info["control_port"]), *args], capture_output=True, text=True, timeout=60)
            return out.returncode, json.loads(out.stdout) if out.stdout else None

        code, state = ctl("state")
        assert code == 0 and state["identity"]["serial"] == info["serial"]
        code, result = ctl("print", "--pages", "2")
        assert code == 0 and result["impressions"] == 2
        code, _ = ctl("send-now")
        assert code == 1  # refused: this device runs without an agent

        # `device-ctl ... state | head -1`: the reader is gone before the answer comes.
        closed = run_with_stdout_closed(
            [sys.executable, "-m", "emulator", "device-ctl", "--port",
             str(info["control_port"]), "state"])
        assert (closed.returncode, closed.stderr) == (141, "")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
