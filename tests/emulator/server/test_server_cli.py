"""The ``server`` CLI commands that work on a state directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from emulator.server import ReferenceServer
from emulator.server.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_cli_keys_firmware_devices_and_key_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["server", "--state-dir", str(state), "make-key", "--count", "2"]) == 0
    keys = capsys.readouterr().out.split()
    assert len(keys) == 2 and keys[0] != keys[1]

    image = tmp_path / "fw.bin"
    image.write_bytes(b"image-bytes")
    assert main(["server", "--state-dir", str(state), "publish-firmware", "--model", "M1",
                 "--version", "2.0.1", str(image)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["size"] == len(b"image-bytes") and manifest["version"] == "2.0.1"

    assert main(["server", "--state-dir", str(state), "export-firmware-key"]) == 0
    pem = capsys.readouterr().out
    server = ReferenceServer(state)
    assert pem.encode() == server.firmware_public_key_pem
    server.storage.close()

    assert main(["server", "--state-dir", str(state), "devices"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_errors_are_one_clear_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    assert main(["server", "--state-dir", state, "enqueue", "dd-nobody", "reboot"]) == 2
    assert "unknown device" in capsys.readouterr().err
    image = tmp_path / "fw.bin"
    image.write_bytes(b"x")
    assert main(["server", "--state-dir", state, "publish-firmware", "--model", "M",
                 "--version", "one", str(image)]) == 2
    assert "dotted" in capsys.readouterr().err


async def test_run_reports_the_address_it_is_bound_to(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator", "server", "--state-dir", str(state), "run",
        "--host", "127.0.0.1", "--port", "0", cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if not line:
            pytest.fail(f"server did not start: {(await proc.stderr.read()).decode()}")
        info = json.loads(line)
        assert info["base_url"] == f"https://127.0.0.1:{info['port']}"
        assert info["listening"] == [f"127.0.0.1:{info['port']}"]
        # The URL works as printed: TLS verified against the printed CA, JSON answer.
        ctx = ssl.create_default_context(cafile=info["ca_cert"])
        async with aiohttp.ClientSession() as s, s.get(
                info["base_url"] + "/dd/v1/devices/x/actions", ssl=ctx) as r:
            assert r.status == 401 and (await r.json())["error"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0


def test_base_url_follows_the_listening_address(tmp_path: Path) -> None:
    cases = {"127.0.0.1": "https://127.0.0.1:8443", "::1": "https://[::1]:8443",
             "0.0.0.0": "https://127.0.0.1:8443", "printer-gw.example": "https://printer-gw.example:8443"}
    for host, url in cases.items():
        server = ReferenceServer(tmp_path / "state", host=host, port=8443)
        server.storage.close()
        assert server.base_url == url, host
