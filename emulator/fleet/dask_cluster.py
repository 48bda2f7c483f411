"""``--cluster tcp://HOST:PORT``: the fleet's shards on a Dask cluster.

Theory of operation
-------------------
The client (this process) connects to a running Dask scheduler and submits one task
per shard (``K`` = ``--processes``, default: one per worker thread of the cluster). A
task runs :func:`run_shard` on a worker: the same :func:`~emulator.fleet.runner.run_fleet`
a local shard runs, in a fresh work directory on that worker's machine, on its own event
loop and virtual clock, and returns the shard's report as JSON. The client gathers the
reports, merges them and checks the whole fleet, as ``--processes`` does; identities
come from seed and index, so they are the same as in any other run of the seed.

Server: ``--server`` as given, or a reference server in the client process that the
workers reach at ``--embedded-host`` (default 127.0.0.1: workers on this machine). The
shards mint their own registration keys through its admin API, so a shard that runs
again has keys too.

A worker that dies (killed, out of memory, machine lost) takes its shard with it; the
scheduler gives the shard to another worker, which runs it from the start. Its devices
register again (the server keeps the device id, derived from the serial) and build the
same payloads under the same Upload-Ids (``fleet_agent.py``): the server acknowledges
those it already holds as duplicates and stores the rest, so it ends with exactly one
payload per device-day. Dask gives up on a shard after
``distributed.scheduler.allowed-failures`` deaths (default 3): the run fails (exit 3).

Progress and live figures: a shard task sends a snapshot (``live_stats.py``) through the
scheduler's event log about once a second; the client keeps the latest per shard.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from device_direct.clock import SystemClock
from device_direct.config import TlsLibrary
from emulator.fleet.cli_common import WORK_PREFIX
from emulator.fleet.live_stats import merge_snapshots
from emulator.fleet.progress import ProgressBar
from emulator.fleet.report import FleetReport, merge_reports
from emulator.fleet.runner import FleetRunError, ServerTarget, server_upload_counts
from emulator.fleet.scratch import scratch_dir, sweep_orphans
from emulator.fleet.spec import FleetSpec, FleetSpecError, Shard
from emulator.loop import LoopName
from emulator.loop import run as run_on_loop
from emulator.server.app import ReferenceServer

CONNECT_TIMEOUT_S = 10.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ClusterUnreachable(FleetSpecError):
    """The scheduler named by ``--cluster`` did not answer (a usage error: exit 2)."""

    def __init__(self, address: str, cause: str) -> None:
        super().__init__(f"--cluster {address}: cannot reach the Dask scheduler ({cause}); "
                         "start one with `dask scheduler` or check the address")
        self.address = address


SHARD_PREFIX = f"{WORK_PREFIX}shard-"  # a shard's scratch directory on its worker


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What a worker needs to run one shard (plain values: it is pickled to the worker)."""

    spec: FleetSpec
    shard: Shard
    target: ServerTarget
    concurrency: int
    loop: LoopName
    topic: str  # event-log topic of this run's live figures
    ca_pem: str | None = None  # the CA bundle itself: workers elsewhere have no copy
    tls_library: str = "auto"  # --tls-library: auto is resolved on the worker


def run_shard(job: ShardJob) -> dict[str, Any]:
    """Run one shard on this (worker) machine (a Dask task): its report as JSON and its
    last live snapshot."""
    from distributed import get_worker

    from emulator.fleet.runner import run_fleet

    worker = get_worker()
    wall = SystemClock()
    sent = [-1.0]
    last: dict[str, Any] = {}

    def stats(snapshot: dict[str, Any]) -> None:
        last["stats"] = snapshot
        if wall.monotonic() - sent[0] >= 1.0:
            sent[0] = wall.monotonic()
            worker.log_event(job.topic, {"shard": str(job.shard), "stats": snapshot})

    # A worker killed mid-shard (SIGKILL, the OOM killer) could not remove its shard's
    # directory: the first shard run on this host after it does.
    sweep_orphans(SHARD_PREFIX)
    work = scratch_dir(f"{SHARD_PREFIX}{job.shard.index}-", owned=True)
    target = job.target
    try:
        if job.ca_pem is not None:
            (work / "ca.pem").write_text(job.ca_pem, encoding="utf-8")
            target = replace(target, ca_bundle=work / "ca.pem")
        library = None if job.tls_library == "auto" else cast(TlsLibrary, job.tls_library)
        report = run_on_loop(run_fleet(job.spec, work, shard=job.shard, target=target,
                                       concurrency=job.concurrency, stats=stats,
                                       tls_library=library), job.loop)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"report": report.to_json(), "stats": last.get("stats")}


async def connect(address: str) -> Any:
    """An asynchronous Dask client of the scheduler at ``address``.

    A plain TCP connection is tried first, so that nothing listening there is said at
    once rather than after Dask's connect retries."""
    from distributed import Client

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if parts.scheme != "tcp" or not host or port is None:
        raise FleetSpecError(f"--cluster {address}: expected tcp://HOST:PORT")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                           CONNECT_TIMEOUT_S)
        writer.close()
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachable(address, str(exc) or type(exc).__name__) from exc
    client: Any = Client(  # type: ignore[no-untyped-call]
        address, asynchronous=True, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    try:
        # Dask's timeout covers its connect, not the handshake after it: a listener
        # that is not a scheduler and never answers would hold the run for ever.
        return await asyncio.wait_for(client, 2 * CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        await client.close()
        raise ClusterUnreachable(address, f"no Dask handshake in {2 * CONNECT_TIMEOUT_S:.0f} "
                                          "s: is a Dask scheduler listening there?") from exc
    except (OSError, ValueError) as exc:
        await client.close()
        raise ClusterUnreachable(address, str(exc) or type(exc).__name__) from exc


async def run_cluster(spec: FleetSpec, args: argparse.Namespace, target: ServerTarget | None,
                      work_dir: Path, *, progress: ProgressBar,
                      stats: Callable[[dict[str, Any]], None] | None = None) -> FleetReport:
    """Run the fleet's shards on the Dask cluster at ``args.cluster``; the merged report."""
    wall = SystemClock()
    started = wall.monotonic()
    client = await connect(args.cluster)
    server: ReferenceServer | None = None
    latest: dict[str, dict[str, Any]] = {}
    try:
        try:
            await client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise FleetSpecError(
                f"--cluster {args.cluster}: no worker joined the scheduler in "
                f"{CONNECT_TIMEOUT_S:.0f} s; start some with `dask worker {args.cluster} "
                "--nthreads 1`") from None
        workers = await client.scheduler.identity()
        threads = sum(int(w.get("nthreads", 1)) for w in workers["workers"].values())
        k = args.processes if args.processes > 1 else max(1, min(threads, spec.devices))
        if target is None:
            host = args.embedded_host
            server = ReferenceServer(work_dir / "server",
                                     host="127.0.0.1" if host in _LOOPBACK else "0.0.0.0",
                                     server_names=(host,))
            await server.start()
            target = ServerTarget(
                url=f"https://{host}:{server.port}/", ca_bundle=server.ca_cert_path,
                server_name=host if host not in _LOOPBACK else "localhost",
                firmware_key=server.firmware_public_key_pem.decode(),
                admin_token=server.admin_token)
        ca_pem = (target.ca_bundle.read_text(encoding="utf-8")
                  if target.ca_bundle is not None else None)
        topic = f"dd-fleet-{uuid.uuid4().hex}"

        def on_event(event: tuple[float, dict[str, Any]]) -> None:
            msg = event[1]
            if "stats" in msg:
                latest[msg["shard"]] = msg["stats"]

        client.subscribe_topic(topic, on_event)
        futures = [client.submit(run_shard, ShardJob(spec, Shard(i, k), target,
                                                     int(args.concurrency), args.loop, topic,
                                                     ca_pem, args.tls_library),
                                 key=f"{topic}-shard-{i}-of-{k}", pure=False, retries=0)
                   for i in range(1, k + 1)]
        done = asyncio.ensure_future(_gather(client, futures, k))
        while not done.done():
            merged = merge_snapshots(latest.values())
            progress(min(merged["delivered"], spec.device_days), spec.device_days, None)
            if stats is not None and latest:
                stats(merged)
            await asyncio.wait({done}, timeout=0.25)
        parts, finals = done.result()
        for shard, final in finals.items():
            latest[shard] = final
        if stats is not None and latest:
            stats(merge_snapshots(latest.values()))
        if server is not None:
            counts: dict[str, int] | None = {
                d["serial"]: int(d["uploads"]) for d in server.storage.devices()}
        elif target.admin_token is not None:
            counts = await server_upload_counts(target)
        else:
            counts = None
        progress(sum(p.device_days for p in parts), spec.device_days, None)
    finally:
        await client.close()
        if server is not None:
            await server.stop()
    return merge_reports(parts, wall_s=wall.monotonic() - started, server_uploads=counts)


async def _gather(client: Any, futures: list[Any], k: int
                  ) -> tuple[list[FleetReport], dict[str, dict[str, Any]]]:
    from distributed import KilledWorker

    try:
        results = await client.gather(futures)
    except KilledWorker as exc:
        raise FleetRunError(f"a shard's workers died too often; Dask gave up: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise FleetRunError(f"lost the Dask scheduler: {exc}") from exc
    reports, finals = [], {}
    for i, data in enumerate(results, 1):
        try:
            reports.append(FleetReport.from_json(data["report"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise FleetRunError(f"shard {i}/{k}: unreadable report: {exc}") from exc
        if data.get("stats") is not None:
            finals[f"{i}/{k}"] = data["stats"]
    return reports, finals

