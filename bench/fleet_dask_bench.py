"""Fleet on Dask vs ``--processes 2``: device-days per second of the same run.

One machine. A local Dask cluster (``dask scheduler`` and two ``dask worker --nthreads
1`` processes on loopback, started before the timing, Dask's profiler off as
docs/fleet.md advises) runs the fleet with ``--cluster``
(two shard tasks); the baseline is the same fleet (devices, days, seed) with
``--processes 2``. Both use an embedded reference server in the client process. Rounds
alternate (Dask, processes, Dask, ...; ``--rounds`` each, default 3) and the medians of
the rates the reports give (device-days / ``wall_s``, set-up and registration included)
are compared, and the median of each round's own ratio printed beside: the machine is
shared and drifts. The Dask workers stay up between rounds (as a cluster does), so they
import the emulator once; each ``--processes`` run starts two fresh interpreters.

Goal: Dask >= 0.9 x ``--processes 2``. The last line is one JSON object.

    .venv/bin/python bench/fleet_dask_bench.py [--devices 400] [--days 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start_cluster(tmp: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
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
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


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


def run(args: argparse.Namespace, extra: list[str], tmp: Path, name: str) -> float:
    report = tmp / f"{name}.json"
    out = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--no-progress",
                          "--devices", str(args.devices), "--days", str(args.days),
                          "--seed", "3", "--report", str(report), *extra],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    data = json.loads(report.read_text())
    return float(data["device_days"]) / float(data["wall_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dd-dask-bench-") as t:
        tmp = Path(t)
        address, procs = start_cluster(tmp)
        dask: list[float] = []
        local: list[float] = []
        try:
            for r in range(args.rounds):
                dask.append(run(args, ["--cluster", address], tmp, f"dask-{r}"))
                local.append(run(args, ["--processes", "2"], tmp, f"proc-{r}"))
                print(f"round {r + 1}: dask {dask[-1]:.1f}, --processes 2 {local[-1]:.1f} "
                      "device-days/s", flush=True)
        finally:
            stop(procs)
    d, p = statistics.median(dask), statistics.median(local)
    ratio = d / p
    paired = statistics.median(a / b for a, b in zip(dask, local, strict=True))
    print(f"fleet {args.devices} devices x {args.days} days, {args.rounds} rounds each")
    print(f"dask (2 workers x 1 thread)  {d:8.1f} device-days/s (median)")
    print(f"--processes 2 (baseline)     {p:8.1f} device-days/s (median)")
    print(f"ratio dask / processes       {ratio:8.2f}  (goal >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'}); median of the rounds' own ratios "
          f"{paired:.2f}")
    print(json.dumps({"devices": args.devices, "days": args.days, "rounds": args.rounds,
                      "dask_device_days_per_s": round(d, 1),
                      "processes2_device_days_per_s": round(p, 1),
                      "ratio_dask_to_processes": round(ratio, 3),
                      "ratio_per_round_median": round(paired, 3), "goal_ratio": 0.9,
                      "goal_met": ratio >= 0.9}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
