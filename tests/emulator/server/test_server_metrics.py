"""``server run --metrics-port``: the server's side of a fleet run, for Prometheus."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from refserver_helpers import (
    manager_upload,
    manager_zip,
    payload_zip,
    register,
    register_manager,
)

from emulator.fleet.runner import ServerTarget, run_fleet
from emulator.fleet.spec import FleetSpec
from emulator.server.app import ReferenceServer
from emulator.server.metrics import instrument, serve_metrics

ROOT = Path(__file__).resolve().parents[3]


def _samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))] = s.value
    return out


async def test_server_metrics_count_a_fleets_uploads(tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "server")
    metrics = instrument(server)
    runner, port = await serve_metrics(metrics, 0)
    try:
        async with server:
            keys = tuple(server.create_registration_key() for _ in range(3))
            target = ServerTarget(url=f"https://127.0.0.1:{server.port}/",
                                  ca_bundle=server.ca_cert_path, server_name="localhost",
                                  keys=keys)
            report = await run_fleet(FleetSpec(devices=3, days=2, seed=5), tmp_path / "w",
                                     target=target)
            assert report.ok
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/metrics") as r:
                seen = _samples(await r.text())
    finally:
        await runner.cleanup()
    assert seen["ddserver_uploads_total,outcome=stored"] == 6
    assert seen["ddserver_devices"] == 3 and seen["ddserver_uploads_stored"] == 6
    assert sum(v for k, v in seen.items()
               if k.startswith("ddserver_requests_total,route=/dd/v1/register,")) == 3
    assert seen["ddserver_request_seconds_count,route=/dd/v1/devices/{id}/uploads"] == 6


def test_server_run_serves_metrics_on_a_port_it_picks(tmp_path: Path) -> None:
    """``--metrics-port 0``: the server binds a free port itself and names it in its
    first line, so nothing can take the port between choosing and binding it."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "server", "--state-dir",
                             str(tmp_path / "s"), "run", "--port", "0", "--metrics-port",
                             "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        port = json.loads(line)["metrics_port"]
        assert isinstance(port, int) and port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            seen = _samples(r.read().decode())
        assert seen["ddserver_devices"] == 0 and seen["ddserver_uploads_stored"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_server_run_says_when_its_metrics_port_is_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "emulator", "server", "--state-dir",
                              str(tmp_path / "s"), "run", "--port", "0", "--metrics-port",
                              str(port)], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in out.stderr


async def test_uploads_stored_counts_the_managers_uploads_as_uploads_total_does(
        tmp_path: Path) -> None:
    # uploads_total{outcome="stored"} counted a manager's upload (its route ends in
    # /uploads), uploads_stored (from the database) did not: the two never matched again.
    server = ReferenceServer(tmp_path / "server")
    metrics = instrument(server)
    runner, port = await serve_metrics(metrics, 0)
    try:
        async with server:
            device = await register(server, tmp_path / "dev")
            upload_id, body = payload_zip(serial=device.serial)
            assert (await device.upload(body, upload_id))[0] == 201
            manager = await register_manager(server, tmp_path / "mgr")
            upload_id, body = manager_zip(device.serial, 184390)
            assert (await manager_upload(manager, upload_id, body))[0] == 201
            assert (await manager_upload(manager, upload_id, body))[0] == 200
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/metrics") as r:
                seen = _samples(await r.text())
    finally:
        await runner.cleanup()
    assert seen["ddserver_uploads_total,outcome=stored"] == 2
    assert seen["ddserver_uploads_total,outcome=duplicate"] == 1
    assert seen["ddserver_uploads_stored"] == 2 and seen["ddserver_devices"] == 1
