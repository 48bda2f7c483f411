"""`manager run` as a real process, killed with SIGKILL mid-upload, then run again.

The server answers every call after a delay, so uploads are in flight when the kill
comes (after the first payload is logged as queued, i.e. durably in its printer's
outbox). A final clean run must deliver every payload any run queued: each stored
exactly once, no sequence number of a printer stored twice or skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sys
from pathlib import Path

from emulator.lan import EmulatedLan, LanOptions, LanSpec
from emulator.server.app import ReferenceServer
from emulator.server.sources import Sources

ROUNDS = 3
QUEUED = re.compile(r"payload ([0-9a-f-]{36}) \(printer (\S+), seq (\d+), \d+ bytes\) queued")


def _config(path: Path, server: ReferenceServer, data_dir: Path, subnet: str,
            snmp_port: int) -> Path:
    path.write_text(f"""
[server]
url = "https://127.0.0.1:{server.port}/"
ca_bundle = "{server.ca_cert_path}"
server_name = "localhost"
registration_key = "{server.create_registration_key()}"

[manager]
data_dir = "{data_dir}"
location = "Basement"
contact_email = "it@example.com"
hostname = "kill-pc"
ip = "127.0.0.1"

[scan]
targets = ["{subnet}"]
snmp_port = {snmp_port}
timeout = 2.0
""")
    return path


async def _start(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_direct", "--log-format", "json", "manager", "run",
            "--config", str(cfg), "--once", stdout=fh, stderr=fh,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _queued(log: Path) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for line in log.read_text().splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except json.JSONDecodeError:
            continue  # a line cut off by SIGKILL
        m = QUEUED.search(msg)
        if m:
            out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


async def test_sigkill_mid_upload_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(2026)
    log = tmp_path / "manager.log"
    spec = LanSpec(printers=4, non_printers=0, silent=0, seed=9, subnet="127.0.6.0/29")
    async with ReferenceServer(tmp_path / "server") as server, EmulatedLan(
            LanOptions(spec, snmp_port=0, jetdirect_port=0, days_of_use=1)) as lan:
        cfg = _config(tmp_path / "manager.toml", server, tmp_path / "mgr", spec.subnet,
                      lan.snmp_port)
        server.set_fault(latency_ms=150)  # every call in flight ~150 ms
        killed_with_queue = 0
        for _ in range(ROUNDS):
            proc = await _start(cfg, log)
            before = len(_queued(log))
            for _ in range(1200):  # up to ~60 s for a cold interpreter and a scan
                if len(_queued(log)) > before or proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            if proc.returncode is None:
                killed_with_queue += 1
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert killed_with_queue >= 2, "the kills never came mid-run"

        server.clear_faults()
        proc = await _start(cfg, log)
        assert await asyncio.wait_for(proc.wait(), 120) == 0, log.read_text()[-2000:]

        queued = _queued(log)
        assert len(queued) >= ROUNDS * 4
        sources = Sources(server.storage.path)
        try:
            managers = sources.managers()
            assert len(managers) == 1
            uploads = sources.uploads(managers[0]["manager_id"])
        finally:
            sources.close()
        ids = [u["upload_id"] for u in uploads]
        assert len(ids) == len(set(ids)), "an upload was stored twice"
        per_printer = [(u["serial"], u["sequence"]) for u in uploads]
        assert len(per_printer) == len(set(per_printer)), "a printer's sequence was reused"
        missing = set(queued) - set(ids)
        assert not missing, f"{len(missing)} queued payloads never reached the server"
        stored = {(u["serial"], u["sequence"]) for u in uploads}
        assert set(queued.values()) <= stored
        # A kill between a payload's durable store and its log line leaves a payload the
        # log never named: it must still be one of the printer's numbers, none skipped.
        for serial in {s for s, _ in stored}:
            numbers = sorted(n for s, n in stored if s == serial)
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
                f"printer {serial}: sequence numbers with a gap: {numbers}")
