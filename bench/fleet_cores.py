"""The fleet and Locust's FastHttpUser on one core each, and on both cores each.

``fleet_bench.py`` runs every client as one process, which is what its goals (per core)
are about. A backend team with a 2-core machine asks another question too: which tool
puts more load on the server when each may use both cores? Here the same reference
server (own process) takes, in ``--rounds`` alternating rounds:

- the fleet as an operator runs it, ``python -m emulator fleet`` against the server
  (``--devices`` x ``--days``, every device at 02:00 UTC as in fleet_bench.py), with
  ``--processes 1`` and ``--processes 2`` (shards as local processes); its rate is the
  device-days over the command's wall time, set-up and registration included;
- Locust FastHttpUser doing fleet_bench.py's device-day for ``--locust-seconds``, as one
  process and with ``locust --processes 2``, uploading the fleet's own payloads (those of
  a small fleet of ``--days`` run first, as in fleet_bench.py); its rate and CPU count
  from its first device-day (each device's TLS context is built before it).

Each client's CPU per device-day (all its processes) is printed beside its rate. Medians
of the rounds, the ratios fleet / FastHttpUser at each process count and with each tool
at its own better count (what a team would run on this machine), JSON last.

    .venv/bin/python bench/fleet_cores.py [--devices 1000] [--days 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fleet_bench import (  # bench/, beside this script
    BENCH_WINDOW,
    SAMPLE_FLEET_DEVICES,
    fleet_payloads,
    fleet_run,
    fleet_target,
    locust_run,
    served,
    server_cli,
)
from peers import children_cpu_s

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = (1, 2)


def fleet_cli(port: int, state: Path, work: Path, devices: int, days: int,
              processes: int, concurrency: int) -> tuple[float, float]:
    """``python -m emulator fleet`` against the server: device-days/s over its wall time,
    and its processes' CPU ms per device-day."""
    keys, firmware = work / "keys.txt", work / "firmware-key.pem"
    work.mkdir()
    keys.write_text(server_cli(state, "make-key", "--count", str(devices),
                               "--ttl", str(7 * 86400)))
    firmware.write_text(server_cli(state, "export-firmware-key"))
    report = work / "report.json"
    started, cpu0 = time.perf_counter(), children_cpu_s()
    proc = subprocess.run(
        [sys.executable, "-m", "emulator", "fleet", "--devices", str(devices), "--days",
         str(days), "--processes", str(processes), "--server", f"https://127.0.0.1:{port}/",
         "--ca", str(state / "pki" / "bundle.pem"), "--key-file", str(keys),
         "--firmware-key", str(firmware), "--upload-window", str(BENCH_WINDOW),
         "--zones", "UTC", "--concurrency", str(concurrency), "--work-dir",
         str(work / "fleet"), "--report", str(report), "--no-progress"],
        cwd=ROOT, check=False, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"the fleet failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    done = json.loads(report.read_text())["device_days"]
    return done / wall, 1000 * cpu / done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=32,
                    help="fleet connections at once (per process), and Locust users")
    ap.add_argument("--locust-seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fleet: dict[int, list[tuple[float, float]]] = {p: [] for p in PROCESSES}
    locust: dict[int, list[tuple[float, float]]] = {p: [] for p in PROCESSES}
    with served() as (tmp, state, _, port):
        # The payloads Locust sends: a small fleet's, every day of its devices' lives.
        fleet_run(fleet_target(port, state, SAMPLE_FLEET_DEVICES), tmp / "payloads",
                  SAMPLE_FLEET_DEVICES, args.days, args.concurrency, seed=10)
        samples, _ = fleet_payloads(state, tmp / "baseline-payloads.json")
        # Devices for Locust (registered by a one-day fleet in this process).
        registered = tmp / "registered"
        fleet_run(fleet_target(port, state, args.devices), registered, args.devices, 1,
                  args.concurrency, seed=9)
        for run in range(args.rounds):
            for processes in PROCESSES:
                fleet[processes].append(fleet_cli(
                    port, state, tmp / f"fleet-{run}-{processes}", args.devices, args.days,
                    processes, args.concurrency))
                rate, done, errors, cpu = locust_run(
                    port, state, registered, args.concurrency, args.locust_seconds,
                    f"cores-{run}-{processes}", "FastHttpUser", processes, samples=samples)
                if errors:
                    raise SystemExit(f"Locust had {errors} failed device-days")
                locust[processes].append((rate, 1000 * cpu / max(done, 1)))
    print(f"{args.devices} devices x {args.days} days per fleet run, Locust FastHttpUser "
          f"{args.locust_seconds} s per run, {args.concurrency} at once; medians of "
          f"{args.rounds} alternating rounds (runs):")
    out: dict[str, float] = {}
    for processes in PROCESSES:
        f_rate = statistics.median(r for r, _ in fleet[processes])
        l_rate = statistics.median(r for r, _ in locust[processes])
        f_cpu = statistics.median(c for _, c in fleet[processes])
        l_cpu = statistics.median(c for _, c in locust[processes])
        ratios = [f / lo for (f, _), (lo, _) in zip(fleet[processes], locust[processes],
                                                    strict=True)]
        print(f"  {processes} process{'es' if processes > 1 else ''}: the fleet {f_rate:.1f} "
              f"device-days/s ({', '.join(f'{r:.1f}' for r, _ in fleet[processes])}) at "
              f"{f_cpu:.2f} ms CPU each; FastHttpUser {l_rate:.1f} "
              f"({', '.join(f'{r:.1f}' for r, _ in locust[processes])}) at {l_cpu:.2f} ms; "
              f"fleet / FastHttpUser {f_rate / l_rate:.3f} (rounds "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
        out |= {f"fleet_device_days_per_s_{processes}p": round(f_rate, 1),
                f"locust_fasthttpuser_device_days_per_s_{processes}p": round(l_rate, 1),
                f"fleet_cpu_ms_per_device_day_{processes}p": round(f_cpu, 2),
                f"locust_fasthttpuser_cpu_ms_per_device_day_{processes}p": round(l_cpu, 2),
                f"ratio_fleet_vs_fasthttpuser_{processes}p": round(f_rate / l_rate, 3)}
    # Each tool at its own better process count on this machine: what a team would run.
    f_best = max(PROCESSES, key=lambda n: out[f"fleet_device_days_per_s_{n}p"])
    l_best = max(PROCESSES, key=lambda n: out[f"locust_fasthttpuser_device_days_per_s_{n}p"])
    best = (out[f"fleet_device_days_per_s_{f_best}p"]
            / out[f"locust_fasthttpuser_device_days_per_s_{l_best}p"])
    print(f"  each at its better process count: the fleet with {f_best}, FastHttpUser with "
          f"{l_best}: fleet / FastHttpUser {best:.3f}")
    out |= {"fleet_best_processes": f_best, "locust_fasthttpuser_best_processes": l_best,
            "ratio_fleet_vs_fasthttpuser_each_at_best": round(best, 3)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
