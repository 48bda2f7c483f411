"""The fleet on a real Dask cluster: `dask scheduler` and two `dask worker` processes on
loopback (ports chosen at run time); a worker killed mid-run; an unreachable scheduler.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.fleet import dask_cluster
from emulator.fleet.dask_cluster import SHARD_PREFIX
from emulator.fleet.scratch import owned
from emulator.server.storage import Storage

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _start_cluster(tmp: Path) -> Cluster:
    tmp.mkdir(parents=True, exist_ok=True)
    info = tmp / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp / "cluster.log", "wb")  # noqa: SIM115 - the processes keep it
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(info)], stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 60
    while not info.exists():
        if scheduler.poll() is not None or time.monotonic() > deadline:
            scheduler.kill()
            pytest.fail("dask scheduler did not start: "
                        + (tmp / "cluster.log").read_text(errors="replace")[-2000:])
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    workers = [subprocess.Popen(
        [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
         "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"],
        stdout=log, stderr=log,
        env={**env, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"})  # as documented
        for i in range(2)]
    cluster = Cluster(address, scheduler, workers)
    from distributed import Client

    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
    except Exception as exc:  # the message says what did not start
        _stop(cluster)
        pytest.fail(f"dask workers did not join {address}: {exc}: "
                    + (tmp / "cluster.log").read_text(errors="replace")[-2000:])
    return cluster


def _stop(cluster: Cluster) -> None:
    # Workers first: a worker whose scheduler is gone keeps trying to reach it.
    for group in (cluster.workers, [cluster.scheduler]):
        for p in group:
            if p.poll() is None:
                p.terminate()
        for p in group:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # One cluster for the module; the kill test, which takes a worker down, runs last.
    c = _start_cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    _stop(c)


def _fleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "emulator", "fleet", "--no-progress", *args]


def _stored(work_dir: Path) -> dict[str, set[tuple[str, int]]]:
    """serial -> {(Upload-Id, sequence)} the embedded server of a kept work dir holds."""
    db = work_dir / "server" / "server.sqlite3"
    assert db.is_file(), f"no server database at {db}"
    storage = Storage(db)
    out: dict[str, set[tuple[str, int]]] = {}
    for d in storage.devices():
        out[d["serial"]] = {(u["upload_id"], u["sequence"])
                            for u in storage.uploads(d["device_id"])}
    return out


def test_cluster_run_stores_what_a_local_run_stores(cluster: Cluster, tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("local", []), ("dask", ["--cluster", cluster.address])):
        report = tmp_path / f"{name}.json"
        out = subprocess.run(_fleet("--devices", "20", "--days", "2", "--seed", "7",
                                    "--work-dir", str(tmp_path / name), "--report",
                                    str(report), *extra),
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        runs[name] = json.loads(report.read_text())
    local, dask = runs["local"], runs["dask"]
    assert dask["fleet"]["shards"] == ["1/2", "2/2"]
    assert [(d["index"], d["serial"], d["profile"], d["time_zone"]) for d in dask["devices"]] \
        == [(d["index"], d["serial"], d["profile"], d["time_zone"]) for d in local["devices"]]
    stored = _stored(tmp_path / "dask")
    assert stored == _stored(tmp_path / "local")  # same Upload-Ids, same sequences
    assert sum(len(v) for v in stored.values()) == 40


def test_a_worker_killed_mid_run_has_its_shard_run_again(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    # 600 device-days: at this machine's 50-150 device-days/s the run lasts seconds, so
    # the 1 Hz stats rows see it between a tenth and three quarters done (with 240 a
    # quiet machine could finish between two rows, or kill before shard 0 stored any).
    devices, days = 30, 20
    stats, report = tmp_path / "stats.csv", tmp_path / "r.json"
    run = subprocess.Popen(
        _fleet("--devices", str(devices), "--days", str(days), "--cluster", cluster.address,
               "--work-dir", str(tmp_path / "w"), "--report", str(report),
               "--stats-csv", str(stats)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    victim = cluster.workers[0]
    left: list[Path] = []  # the victim's shard directory (on the RAM disk)
    deadline = time.monotonic() + 90
    while run.poll() is None and time.monotonic() < deadline and not killed:
        rows = list(csv.DictReader(stats.open())) if stats.exists() else []
        done = int(rows[-1]["device_days_delivered"]) if rows else 0
        left = left or [path for path, owner in owned(SHARD_PREFIX) if owner.pid == victim.pid]
        if left and devices * days // 10 <= done < devices * days * 3 // 4:
            victim.send_signal(signal.SIGKILL)  # mid-shard: both are running
            killed = True
        time.sleep(0.05)
    out, err = run.communicate(timeout=120)
    assert killed, "the run ended before a worker could be killed mid-run: " + out
    assert run.returncode == 0, out + err[-3000:]
    data = json.loads(report.read_text())
    assert data["ok"], data["expectations"]
    totals = data["totals"]
    assert totals["uploads_duplicate"] > 0  # the rerun replayed stored payloads' ids
    stored = _stored(tmp_path / "w")
    assert len(stored) == devices
    for serial, uploads in stored.items():  # one payload per device-day, none lost
        assert len(uploads) == len({seq for _, seq in uploads}) == days, serial
    # The killed worker could not remove its shard's device data; the shard run again
    # on the other worker swept it up.
    assert not any(path.exists() for path in left), left


def test_an_unreachable_scheduler_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    import socket

    # A port nothing listens on, held (bound, not listening) while the run tries it:
    # closed at once, it could be handed to another listener meanwhile.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = subprocess.run(_fleet("--devices", "2", "--days", "1", "--cluster",
                                    f"tcp://127.0.0.1:{port}"),
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"tcp://127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


async def test_a_listener_that_is_not_a_scheduler_is_refused_in_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # It accepts and never answers: Dask's own timeout does not cover the handshake,
    # and the run waited for ever.
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_S", 1.0)
    try:
        with pytest.raises(dask_cluster.ClusterUnreachable, match="no Dask handshake"):
            await asyncio.wait_for(dask_cluster.connect(f"tcp://127.0.0.1:{port}"), 30)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
