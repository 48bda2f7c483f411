"""``server run --metrics-port``: the server's side of a fleet run, for Prometheus."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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


def test_server_run_serves_metrics_on_the_port_asked(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "server", "--state-dir",
                             str(tmp_path / "s"), "run", "--port", "0", "--metrics-port",
                             str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        assert json.loads(line)["metrics_port"] == port
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            seen = _samples(r.read().decode())
        assert seen["ddserver_devices"] == 0 and seen["ddserver_uploads_stored"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
