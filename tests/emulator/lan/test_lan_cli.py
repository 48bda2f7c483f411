"""``python -m emulator lan``: starts, prints table and JSON, answers, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.lan.cli import _serve
from emulator.lan.network import EmulatedLan, LanOptions
from emulator.lan.plan import LanSpec

ROOT = Path(__file__).resolve().parents[3]


def _snmpget(address: str, port: int, oid: str) -> str:
    out = subprocess.run(["snmpget", "-v2c", "-cpublic", "-On", "-t", "2", "-r", "1",
                          f"{address}:{port}", oid], capture_output=True, text=True, timeout=20)
    return out.stdout + out.stderr


def test_lan_cli_serves_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "lan", "--printers", "3", "--non-printers", "2",
         "--silent", "2", "--snmp-port", "0", "--jetdirect-port", "0", "--subnet",
         "127.0.1.128/27", "--days-of-use", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while True:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"emulator lan exited early: {err}")
            lines.append(line)
            if line.startswith("{"):
                break
        info = json.loads(lines[-1])
        table = "".join(lines[:-1])
        assert info["printers"] == 3 and info["non_printers"] == 2 and info["silent"] == 2
        assert len(info["hosts"]) == 7
        for h in info["hosts"]:
            assert h["address"] in table
        printer = next(h for h in info["hosts"] if h["kind"] == "printer")
        other = next(h for h in info["hosts"] if h["kind"] == "other")
        silent = next(h for h in info["hosts"] if h["kind"] == "silent")
        port = info["snmp_port"]
        assert printer["serial"] in _snmpget(printer["address"], port,
                                             ".1.3.6.1.2.1.43.5.1.1.17.1")
        assert "OID:" in _snmpget(other["address"], port, ".1.3.6.1.2.1.1.2.0")
        assert "Timeout" in _snmpget(silent["address"], port, ".1.3.6.1.2.1.1.2.0")
        # garbage from a stray scanner: no traceback, and the printer still answers
        rng = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in range(200):
                junk = bytes([0xA0, 0x00]) if n == 0 else rng.randbytes(rng.randint(1, 64))
                s.sendto(junk, (printer["address"], port))
        assert printer["serial"] in _snmpget(printer["address"], port,
                                             ".1.3.6.1.2.1.43.5.1.1.17.1")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err, err
        assert "ignored bad input from 127.0.0.1:" in err  # one warning, naming the peer
        assert err.count("ignored bad input") == 1  # rate-limited
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lan_cli_refuses_a_subnet_too_small() -> None:
    out = subprocess.run([sys.executable, "-m", "emulator", "lan", "--printers", "40",
                          "--subnet", "127.0.1.0/28"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "127.0.1.0/28" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("flags", "words"), [
    (["--mix", "office-color:1,nosuch:1"], "--mix"),
    (["--printers", "65000", "--subnet", "127.0.0.0/16"], "ulimit -n"),
])
def test_lan_cli_refuses_what_it_cannot_start_before_starting(
        flags: list[str], words: str) -> None:
    out = subprocess.run([sys.executable, "-m", "emulator", "lan", *flags], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(
                             resource.RLIMIT_NOFILE,
                             (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr


async def test_ctrl_c_while_starting_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5,000 printers take a minute to start: Ctrl-C must not wait for the last one.
    async def forever(self: EmulatedLan) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(EmulatedLan, "_start_once", forever)
    spec = LanSpec(printers=1, non_printers=0, silent=0, subnet="127.0.4.64/28")
    options = LanOptions(spec, snmp_port=0, jetdirect_port=0)
    asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
    assert await asyncio.wait_for(_serve(options, as_json=True), 10) == 130
