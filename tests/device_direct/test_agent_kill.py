"""The agent as a real process, killed with SIGKILL at random points, many times.

Each round starts ``device-direct run`` (emulated MFP from a profile) against the
reference server on loopback, asks it to sync now one to three times, and kills it
after a random delay: during payload building, the outbox write, or the upload. A
final clean run flushes what is left. Every payload the agent reported as queued
(logged only after the outbox write was durable) must then be stored on the server
exactly once, and no sequence number may be stored twice.
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

from device_direct.control import call, socket_path
from device_direct.errors import ConnectError
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import write_agent_config

ROUNDS = 20
QUEUED = re.compile(r"payload ([0-9a-f-]{36}) \(seq (\d+), [a-z-]+, \d+ bytes\) queued")


async def _start(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONUNBUFFERED="1", DD_EMULATED_SERIAL="KILL0001")
    with log.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_direct", "--log-format", "json", "run",
            "--config", str(cfg), stdout=fh, stderr=fh, env=env,
        )


async def _wait_ready(proc: asyncio.subprocess.Process, data_dir: Path) -> None:
    for _ in range(600):  # up to ~30 s for a cold interpreter on a busy machine
        if proc.returncode is not None:
            raise AssertionError(f"agent exited early with {proc.returncode}")
        if socket_path(data_dir).exists():
            try:
                await call(data_dir, "status", timeout=2)
                return
            except ConnectError:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError("agent did not open its control socket in time")


def _queued(log: Path) -> dict[str, int]:
    """Upload-Id -> sequence of every payload the agent logged as durably queued."""
    queued: dict[str, int] = {}
    for line in log.read_text().splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except json.JSONDecodeError:
            continue  # a line cut off by SIGKILL
        m = QUEUED.search(msg)
        if m:
            queued[m.group(1)] = int(m.group(2))
    return queued


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    log = tmp_path / "agent.log"
    data_dir = tmp_path / "data"
    async with ReferenceServer(tmp_path / "server") as server:
        cfg = write_agent_config(
            tmp_path / "agent.toml", server, data_dir, key=server.create_registration_key(),
            extra='[outbox]\nbudget_bytes = 16777216\n',
        )
        text = cfg.read_text().replace("[device]\n", '[device]\nprofile = "office-color"\n')
        cfg.write_text(text)

        # At least ROUNDS kills, and more (up to 3 * ROUNDS) until ROUNDS payloads were
        # queued: on a loaded machine fewer builds finish before the kill.
        rounds = 0
        while rounds < ROUNDS or (len(_queued(log)) < ROUNDS and rounds < 3 * ROUNDS):
            rounds += 1
            proc = await _start(cfg, log)
            await _wait_ready(proc, data_dir)
            for _ in range(rng.randint(1, 3)):
                await call(data_dir, "send-now")
                await asyncio.sleep(rng.uniform(0, 0.02))
            await asyncio.sleep(rng.uniform(0, 0.08))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

        # A clean run sends what the killed ones left behind.
        proc = await _start(cfg, log)
        await _wait_ready(proc, data_dir)
        await call(data_dir, "send-now")
        for _ in range(600):
            status = (await call(data_dir, "status"))["status"]
            if not status["queued"] and status["stats"]["payloads_built"] >= 1:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

        queued = _queued(log)
        assert len(queued) >= ROUNDS, "too few payloads were built to prove anything"

        devices = server.storage.devices()
        assert len(devices) == 1
        uploads = server.storage.uploads(devices[0]["device_id"])
        stored_ids = [u["upload_id"] for u in uploads]
        stored_seqs = [u["sequence"] for u in uploads]
        assert len(stored_ids) == len(set(stored_ids)), "an upload was stored twice"
        assert len(stored_seqs) == len(set(stored_seqs)), "a sequence number was reused"
        assert server.storage.sequence_gaps(devices[0]["device_id"]) == [], "a false gap"
        missing = set(queued) - set(stored_ids)
        assert not missing, f"{len(missing)} queued payloads never reached the server"
