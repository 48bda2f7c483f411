"""Fleet on Dask vs ``--processes 2``: device-days per second of the same run.

One machine. A local Dask cluster (``dask scheduler`` and two ``dask worker --nthreads
1`` processes on loopback, started before the timing, Dask's profiler off as
docs/fleet.md advises) runs the fleet with ``--cluster``
(two shard tasks); the baseline is the same fleet (devices, days, seed) with
``--processes 2``. Both use an embedded reference server in the client process. Rounds
alternate (Dask, processes, Dask, ...; ``--rounds`` each, default 3) and the medians of
the rates the reports give (device-days / ``wall_s``, set-up and registration included)
are compared, and the median of each round's own ratio printed beside: the machine is
shared and drifts. The Dask workers stay up between rounds (as a cluster does).

What is timed, on both sides: the report's ``wall_s``, from the start of the fleet run
in the client (embedded server start, key minting, shard start) to the merged report.
Outside it on both sides: the interpreter start and imports of the client. Outside it
for Dask only: the cluster start (scheduler, workers, and a warm-up task that imports
the fleet runner on each worker), printed apart; a cluster is long-lived, while a
``--processes`` run starts its two shard interpreters inside its window (their start
is printed apart too: window minus the slower shard's own ``wall_s``). Beside the
rates, CPU seconds per device-day: client and its children (``RUSAGE_CHILDREN``) plus,
for Dask, the scheduler's and workers' CPU time over the run.

Goal: Dask >= 0.9 x ``--processes 2``. The last line is one JSON object.

    .venv/bin/python bench/fleet_dask_bench.py [--devices 400] [--days 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.fleet.scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start_cluster(tmp: Path) -> tuple[str, list[subprocess.Popen[bytes]], float]:
    t0 = time.monotonic()
    info = tmp / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp / "cluster.log", "wb")  # noqa: SIM115 - the processes keep it
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file",
                               str(info)], stdout=log, stderr=log, env=env)]
    deadline = time.monotonic() + 60
    while not info.exists():
        if time.monotonic() > deadline:
            raise SystemExit("dask scheduler did not start; see " + str(tmp / "cluster.log"))
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    # As docs/fleet.md advises for fleet workers: without Dask's statistical profiler,
    # which samples the running thread's stack every 10 ms (a CPU-bound shard pays it).
    worker_env = {**env, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    procs += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1",
                                "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                               stdout=log, stderr=log, env=worker_env) for _ in range(2)]
    import importlib

    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        client.run(importlib.import_module, "emulator.fleet.runner")  # warm-up
    return address, procs, time.monotonic() - t0


def cpu_s(pids: list[int]) -> float:
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Workers first (a worker whose scheduler is gone retries it), then the scheduler."""
    for group in (procs[1:], procs[:1]):
        for p in group:
            p.terminate()
        for p in group:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@dataclass
class Run:
    rate: float  # device-days / wall_s
    wall_s: float
    cpu_per_day_ms: float  # CPU ms per device-day, every process of the run
    outside_s: float | None  # --processes: window minus the slower shard's own wall_s


def run(args: argparse.Namespace, extra: list[str], tmp: Path, name: str,
        cluster: list[int]) -> Run:
    report = tmp / f"{name}.json"
    # On the RAM disk, as the run's own work dir would be (every payload is fsync'ed).
    keep = scratch_dir(f"dd-dask-bench-{name}-") / "work"
    if "--processes" in extra:
        extra = [*extra, "--work-dir", str(keep), "--keep"]
    cpu0 = children_cpu_s() + cpu_s(cluster)
    out = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--no-progress",
                          "--devices", str(args.devices), "--days", str(args.days),
                          "--seed", "3", "--report", str(report), *extra],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    cpu = children_cpu_s() + cpu_s(cluster) - cpu0
    data = json.loads(report.read_text())
    wall, days = float(data["wall_s"]), float(data["device_days"])
    outside = None
    if keep.exists():
        shard_walls = [json.loads(f.read_text())["wall_s"] for f in keep.glob("shard-*.json")
                       if not f.name.endswith(".stats.json")]
        outside = wall - max(shard_walls)
    shutil.rmtree(keep.parent, ignore_errors=True)
    return Run(days / wall, wall, 1000 * cpu / days, outside)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dd-dask-bench-") as t:
        tmp = Path(t)
        address, procs, cluster_s = start_cluster(tmp)
        cluster = [p.pid for p in procs]  # scheduler and workers
        print(f"cluster start + warm-up (outside the Dask window) {cluster_s:.1f} s",
              flush=True)
        dask_runs: list[Run] = []
        local_runs: list[Run] = []
        try:
            for r in range(args.rounds):
                dask_runs.append(run(args, ["--cluster", address], tmp, f"dask-{r}", cluster))
                local_runs.append(run(args, ["--processes", "2"], tmp, f"proc-{r}", []))
                a, b = dask_runs[-1], local_runs[-1]
                print(f"round {r + 1}: dask {a.rate:.1f} device-days/s "
                      f"({a.cpu_per_day_ms:.0f} CPU ms/device-day), --processes 2 "
                      f"{b.rate:.1f} ({b.cpu_per_day_ms:.0f} CPU ms/device-day; shard "
                      f"start + merge {b.outside_s:.1f} s of {b.wall_s:.1f} s); "
                      f"ratio {a.rate / b.rate:.2f}", flush=True)
        finally:
            stop(procs)
    dask = [x.rate for x in dask_runs]
    local = [x.rate for x in local_runs]
    d, p = statistics.median(dask), statistics.median(local)
    ratio = d / p
    paired = statistics.median(a / b for a, b in zip(dask, local, strict=True))
    d_cpu = statistics.median(x.cpu_per_day_ms for x in dask_runs)
    p_cpu = statistics.median(x.cpu_per_day_ms for x in local_runs)
    print(f"fleet {args.devices} devices x {args.days} days, {args.rounds} rounds each")
    print(f"dask (2 workers x 1 thread)  {d:8.1f} device-days/s (median)")
    print(f"--processes 2 (baseline)     {p:8.1f} device-days/s (median)")
    print(f"ratio dask / processes       {ratio:8.2f}  (goal >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'}); median of the rounds' own ratios "
          f"{paired:.2f}")
    print(f"CPU ms per device-day (median) dask {d_cpu:.0f}, --processes 2 {p_cpu:.0f} "
          f"(ratio {d_cpu / p_cpu:.2f})")
    print(json.dumps({"devices": args.devices, "days": args.days, "rounds": args.rounds,
                      "dask_device_days_per_s": round(d, 1),
                      "processes2_device_days_per_s": round(p, 1),
                      "ratio_dask_to_processes": round(ratio, 3),
                      "ratio_per_round_median": round(paired, 3), "goal_ratio": 0.9,
                      "goal_met": ratio >= 0.9,
                      "dask_cpu_ms_per_device_day": round(d_cpu, 1),
                      "processes2_cpu_ms_per_device_day": round(p_cpu, 1),
                      "dask_cluster_start_s_outside_window": round(cluster_s, 1),
                      "dask_rates_device_days_per_s": [round(x, 1) for x in dask],
                      "processes2_rates_device_days_per_s": [round(x, 1) for x in local]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
