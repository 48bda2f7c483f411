"""Chaos with real processes: agents and the server killed and faulted, nothing lost.

Two ``device-direct run`` processes (emulated MFPs) and one ``python -m emulator
server run`` process on loopback. For a dozen rounds and more the test asks agents to sync,
SIGKILLs them at random moments and at aimed ones (the instant a payload is logged as
queued, the instant an upload starts), SIGKILLs the server and starts it again on the
same state, and switches server faults on (503s, connections cut mid-answer). A last
calm round lets every agent deliver what it holds. Then, from the server's database:
every payload an agent logged as durably queued is stored exactly once, no sequence
number is stored twice, and the server recorded no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from device_direct.control import call, socket_path
from device_direct.errors import ConnectError
from emulator.server.storage import Storage

AGENTS = 2
ROUNDS = 14
QUEUED = re.compile(r"payload ([0-9a-f-]{36}) \(seq (\d+), [a-z-]+, \d+ bytes\) queued")


@dataclass
class AgentProc:
    serial: str
    dir: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "agent.log"


@dataclass
class ServerProc:
    state: Path
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    kills: int = 0
    faults: list[str] = field(default_factory=list)


async def start_server(server: ServerProc) -> None:
    server.proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator", "server", "--state-dir", str(server.state), "run",
        "--port", str(server.port), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert server.proc.stdout is not None
    try:
        line = await asyncio.wait_for(server.proc.stdout.readline(), 60)
    except TimeoutError:
        line = b""
    if not line:
        raise AssertionError("the reference server process did not start")
    server.port = int(json.loads(line)["port"])


async def kill(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


def set_faults(server: ServerProc, plan: dict[str, object]) -> None:
    """PUT /admin/v1/faults (blocking; a tiny local call)."""
    import ssl

    token = (server.state / "admin-token").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(server.state / "pki" / "bundle.pem"))
    ctx.check_hostname = False
    req = urllib.request.Request(
        f"https://127.0.0.1:{server.port}/admin/v1/faults", data=json.dumps(plan).encode(),
        method="PUT", headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as answer:
        assert answer.status == 200


def write_config(agent: AgentProc, server: ServerProc, key: str) -> Path:
    path = agent.dir / "agent.toml"
    path.write_text(f"""
[server]
url = "https://127.0.0.1:{server.port}/"
ca_bundle = "{server.state / 'pki' / 'bundle.pem'}"
server_name = "localhost"
registration_key = "{key}"

[device]
data_dir = "{agent.data_dir}"
profile = "office-color"

[retry]
base_s = 1.0
cap_s = 2.0
""", encoding="utf-8")
    return path


async def start_agent(agent: AgentProc) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", DD_EMULATED_SERIAL=agent.serial)
    with agent.log.open("ab") as fh:
        agent.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_direct", "--log-format", "json", "run",
            "--config", str(agent.dir / "agent.toml"), stdout=fh, stderr=fh, env=env)
    agent.starts += 1
    for _ in range(600):
        if agent.proc.returncode is not None:
            raise AssertionError(f"agent {agent.serial} exited with {agent.proc.returncode}")
        if socket_path(agent.data_dir).exists():
            try:
                await call(agent.data_dir, "status", timeout=2)
                return
            except ConnectError:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"agent {agent.serial} did not open its control socket")


async def send_now(agent: AgentProc) -> None:
    with contextlib.suppress(ConnectError):  # being killed or started: nothing was asked
        await call(agent.data_dir, "send-now", timeout=2)


def log_size(agent: AgentProc) -> int:
    return agent.log.stat().st_size if agent.log.exists() else 0


async def aimed_kill(agent: AgentProc, marker: str, rng: random.Random) -> None:
    """SIGKILL the agent the instant its log shows ``marker`` (or after 3 s)."""
    seen = log_size(agent)
    await send_now(agent)
    for _ in range(600):
        with agent.log.open("rb") as fh:
            fh.seek(seen)
            if marker.encode() in fh.read():
                break
        await asyncio.sleep(0.005)
    await asyncio.sleep(rng.uniform(0, 0.01))
    await kill(agent.proc)
    agent.kills += 1


def queued_payloads(agent: AgentProc) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in agent.log.read_text(errors="replace").splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except json.JSONDecodeError:
            continue  # a line cut off by SIGKILL
        if m := QUEUED.search(msg):
            found[m.group(1)] = int(m.group(2))
    return found


async def test_chaos_of_real_processes_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261206)
    server = ServerProc(tmp_path / "server")
    keys = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator", "server", "--state-dir", str(server.state),
        "make-key", "--count", str(AGENTS), stdout=asyncio.subprocess.PIPE)
    out, _ = await keys.communicate()
    key_list = out.decode().split()
    assert len(key_list) == AGENTS, "the server could not make registration keys"
    await start_server(server)
    agents = [AgentProc(f"CHAOS{i:04d}", tmp_path / f"agent{i}") for i in range(AGENTS)]
    try:
        for agent, key in zip(agents, key_list, strict=True):
            agent.dir.mkdir()
            write_config(agent, server, key)
            await start_agent(agent)
            await send_now(agent)
        for _ in range(ROUNDS):
            agent = rng.choice(agents)
            move = rng.choice(["random-kill", "random-kill", "aimed-queued", "aimed-upload",
                               "server-kill", "server-fault", "sync"])
            if agent.proc is None or agent.proc.returncode is not None:
                await start_agent(agent)
            if move == "random-kill":
                await send_now(agent)
                await asyncio.sleep(rng.uniform(0, 0.15))
                await kill(agent.proc)
                agent.kills += 1
            elif move == "aimed-queued":
                await aimed_kill(agent, ") queued", rng)
            elif move == "aimed-upload":
                await aimed_kill(agent, "POST /dd/v1/devices", rng)
            elif move == "server-kill":
                await send_now(agent)
                await asyncio.sleep(rng.uniform(0, 0.1))
                await kill(server.proc)
                server.kills += 1
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                await start_server(server)
            elif move == "server-fault":
                plan = rng.choice([{"fail_fraction": 0.5}, {"drop_next": 3}, {"fail_next": 4}])
                await asyncio.to_thread(set_faults, server, plan)
                server.faults.append(json.dumps(plan))
                for other in agents:
                    if other.proc is not None and other.proc.returncode is None:
                        await send_now(other)
            else:
                await send_now(agent)
            await asyncio.sleep(rng.uniform(0, 0.2))

        # Calm: no faults, everyone up, everything delivered.
        await asyncio.to_thread(set_faults, server, {})
        for agent in agents:
            if agent.proc is None or agent.proc.returncode is not None:
                await start_agent(agent)
            await send_now(agent)
        for agent in agents:
            for _ in range(1200):
                status = (await call(agent.data_dir, "status"))["status"]
                if not status["queued"]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{agent.serial} still holds {status['queued']}")
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.proc.wait(), 30) == 0
    finally:
        for agent in agents:
            await kill(agent.proc)
        await kill(server.proc)

    assert sum(a.kills for a in agents) >= ROUNDS // 3 and server.kills >= 1
    storage = Storage(server.state / "server.sqlite3")
    try:
        devices = {d["serial"]: d["device_id"] for d in storage.devices()}
        assert sorted(devices) == sorted(a.serial for a in agents)
        for agent in agents:
            queued = queued_payloads(agent)
            uploads = storage.uploads(devices[agent.serial])
            ids = [u["upload_id"] for u in uploads]
            sequences = [u["sequence"] for u in uploads]
            assert len(ids) == len(set(ids)), f"{agent.serial}: a payload was stored twice"
            assert len(sequences) == len(set(sequences)), f"{agent.serial}: a number reused"
            lost = set(queued) - set(ids)
            assert not lost, f"{agent.serial}: {len(lost)} queued payloads never arrived"
            assert storage.sequence_gaps(devices[agent.serial]) == [], agent.serial
            assert queued, f"{agent.serial} built nothing: the test proved nothing"
    finally:
        storage.close()
