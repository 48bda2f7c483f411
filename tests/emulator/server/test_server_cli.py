"""The ``server`` CLI commands that work on a state directory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from refserver_helpers import payload_zip, register

from emulator.clock import VirtualClock
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
    ReferenceServer(Path(state)).storage.close()
    assert main(["server", "--state-dir", state, "enqueue", "dd-nobody", "reboot"]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["server", "--state-dir", state, "enqueue", "dd-nobody", "reboot",
                 "--params", "{bad"]) == 2
    assert "--params is not JSON" in capsys.readouterr().err
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
    # The access log: one JSON line per request on standard error.
    lines = [json.loads(line) for line in (await proc.stderr.read()).decode().splitlines()
             if line.startswith("{")]
    assert {"device": None, "method": "GET", "endpoint": "/dd/v1/devices/{id}/actions",
            "status": 401}.items() <= lines[-1].items()


def test_base_url_follows_the_listening_address(tmp_path: Path) -> None:
    cases = {"127.0.0.1": "https://127.0.0.1:8443", "::1": "https://[::1]:8443",
             "0.0.0.0": "https://127.0.0.1:8443", "printer-gw.example": "https://printer-gw.example:8443"}
    for host, url in cases.items():
        server = ReferenceServer(tmp_path / "state", host=host, port=8443)
        server.storage.close()
        assert server.base_url == url, host


async def test_export_writes_the_zips_as_received(
        server: ReferenceServer, vclock: VirtualClock, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    a = await register(server, tmp_path / "a", "EXP-A")
    b = await register(server, tmp_path / "b", "EXP-B")
    sent: dict[str, bytes] = {}
    for dev, seq in ((a, 1), (b, 1), (a, 2)):
        if seq == 2:
            vclock.advance_to(vclock.now() + timedelta(days=1))
        upload_id, zip_ = payload_zip(serial=dev.serial, sequence=seq)
        assert (await dev.upload(zip_, upload_id))[0] == 201
        sent[upload_id] = zip_
    state = str(server.state_dir)

    out = tmp_path / "all"
    assert main(["server", "--state-dir", state, "export", "--json", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["uploads"], summary["devices"]) == (3, 2)
    index = json.loads((out / "uploads.json").read_text())
    assert {r["upload_id"]: (out / r["file"]).read_bytes() for r in index} == sent
    assert all(hashlib.sha256((out / r["file"]).read_bytes()).hexdigest() == r["sha256"]
               for r in index)
    assert not list(out.rglob("*.part"))

    one = tmp_path / "one"
    assert main(["server", "--state-dir", state, "export", "--device", b.device_id,
                 str(one)]) == 0
    assert "exported 1 uploads" in capsys.readouterr().out
    (only,) = json.loads((one / "uploads.json").read_text())
    assert only["device_id"] == b.device_id and (one / only["file"]).read_bytes() == sent[
        only["upload_id"]]

    late = tmp_path / "late"
    since = (vclock.now() - timedelta(hours=1)).isoformat()
    assert main(["server", "--state-dir", state, "export", "--since", since, str(late)]) == 0
    (last,) = json.loads((late / "uploads.json").read_text())
    assert (last["device_id"], last["sequence"]) == (a.device_id, 2)


@pytest.mark.parametrize(("args", "named"), [
    (["run", "--port", "99999"], "argument --port: 99999 is not a port number"),
    (["run", "--port", "-1"], "argument --port: -1 is not a port number"),
    (["run", "--metrics-port", "70000"], "argument --metrics-port: 70000"),
    (["run", "--cert-days", "99999999"], "cert_days must be 1..36500"),
    (["make-key", "--ttl", "99999999999999"], "ttl_s must be 1..3153600000"),
    (["make-key", "--count", "0"], "argument --count: must be 1..10000, got 0"),
    (["enqueue", "DEVICE", "reboot", "--expires-in", "99999999999999"],
     "expires_in_s must be 1..3153600000"),
    (["publish-firmware", "--model", "M", "--version", "1.0", "--expires-in",
      "99999999999999", "IMAGE"], "expires_in_s must be 1..3153600000"),
])
def test_numbers_out_of_range_are_usage_errors_naming_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    # They were tracebacks: bind()'s OverflowError for a port, a date past the year 9999
    # for a validity (and, for --cert-days, a 500 on every registration later).
    state = tmp_path / "state"
    image = tmp_path / "fw.bin"
    image.write_bytes(b"x")
    server = ReferenceServer(state)
    server.storage.register_device(
        device_id="dd-1", serial="S1", model="M", mac="00:00:00:00:00:01",
        firmware={"system": "1"}, cert_serial="01", not_after=server.clock.now(),
        now=server.clock.now())
    server.storage.close()
    args = [{"DEVICE": "dd-1", "IMAGE": str(image)}.get(a, a) for a in args]
    code: int | str | None
    try:
        code = main(["server", "--state-dir", str(state), *args])
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["devices"], ["enqueue", "dd-1", "reboot"]])
def test_commands_on_stored_state_refuse_a_directory_without_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    # A mistyped --state-dir: "devices" printed [] (exit 0) from a whole new state it
    # made there, CA and admin token included.
    missing = tmp_path / "no-such-state"
    assert main(["server", "--state-dir", str(missing), *command]) == 2
    assert "no server state" in capsys.readouterr().err and not missing.exists()


@pytest.mark.parametrize(("damaged", "named"), [
    ("pki/ca.pem", "pki/ca.pem is not a usable PEM"),
    ("pki/firmware-signing.key", "pki/firmware-signing.key is not a usable PEM"),
    ("admin-token", "admin token"),
    ("--tls-cert", "cannot use server certificate"),
])
def test_a_damaged_state_file_is_named_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], damaged: str, named: str
) -> None:
    # Each was an error naming no file: "Unable to load PEM file", "[SSL] PEM lib",
    # "'ascii' codec can't decode byte 0xff".
    state = tmp_path / "state"
    ReferenceServer(state).storage.close()
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\xff\xfejunk")
    args = ["make-key"]
    if damaged == "--tls-cert":
        args = ["run", "--port", "0", "--tls-cert", str(junk), "--tls-key", str(junk)]
    else:
        (state / damaged).write_bytes(junk.read_bytes())
    assert main(["server", "--state-dir", str(state), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1
    assert str(junk if damaged == "--tls-cert" else state / damaged) in err


def test_export_refuses_bad_input_in_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-state"
    assert main(["server", "--state-dir", str(missing), "export", str(tmp_path / "o")]) == 2
    assert "no server state" in capsys.readouterr().err and not missing.exists()
    state = tmp_path / "state"
    ReferenceServer(state).storage.close()
    assert main(["server", "--state-dir", str(state), "export", "--since", "yesterday",
                 str(tmp_path / "o")]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["server", "--state-dir", str(state), "export", "--device", "dd-nobody",
                 str(tmp_path / "o")]) == 2
    assert "--device" in capsys.readouterr().err
