"""Where a fleet run's wall time goes between the fleet and the server: a profile.

A fleet on one machine is a pipeline of two processes: the fleet (its event loop's
thread) and the reference server. Each device-day needs both, so the rate is set by how
often each of them is at work. This script runs ``--devices`` x ``--days`` of the fleet
(as ``fleet_bench.py`` does: every device uploads at 02:00, ``--concurrency`` slots)
against the server in its own process, after a same-size one-day fleet that registers
other devices. A separate sampler process (so that sampling takes nothing from the
fleet's interpreter, only a little of a core) reads, every ``--interval-ms``, how long
the fleet's loop thread and the server's ran on a CPU since the last look
(``/proc/<pid>/task/<tid>/schedstat``, in nanoseconds): a thread that ran more than half
of the interval was at work in it, else waiting (for the other side, or for a core on a
busy machine). It prints the share of the timed run's intervals in each of the four
states:

- both at work;
- the fleet waits, the server works (the server sets the pace);
- the server waits, the fleet works (the fleet sets the pace);
- both wait (neither has work: between virtual days, or a stall).

and each process's CPU share of a core and CPU per device-day over the run.
docs/fleet.md ("Where the floor is") quotes it. The last line is one JSON object.

    .venv/bin/python bench/fleet_pipeline.py [--devices 1000] [--days 10]
        [--concurrency 32] [--interval-ms 5] [--loop auto|uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fleet_bench import cpu_s, fleet_run, fleet_target, served

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.loop import LOOP_NAMES  # noqa: E402

STATES = {
    (True, True): "both at work",
    (False, True): "the fleet waits, the server works",
    (True, False): "the server waits, the fleet works",
    (False, False): "both wait",
}

# The sampler: its own interpreter, so its wake-ups cost the fleet nothing but a core's
# share. Reads two stat files until stdin closes, then prints the counts as JSON.
SAMPLER = textwrap.dedent("""
    import json, sys, threading, time
    fleet, server, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    def on_cpu(path):
        with open(path, "rb") as fh:
            return int(fh.read().split()[0])  # ns this thread has run
    counts = {}
    last = (time.perf_counter_ns(), on_cpu(fleet), on_cpu(server))
    while not done.is_set():
        time.sleep(interval)
        now = (time.perf_counter_ns(), on_cpu(fleet), on_cpu(server))
        span = now[0] - last[0]
        key = f"{int(2 * (now[1] - last[1]) > span)}{int(2 * (now[2] - last[2]) > span)}"
        counts[key] = counts.get(key, 0) + 1
        last = now
    print(json.dumps(counts))
""")


def main_thread_schedstat(pid: int) -> str:
    """The scheduler's figures of ``pid``'s main thread (the loop's, fleet and server)."""
    return f"/proc/{pid}/task/{pid}/schedstat"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--interval-ms", type=float, default=5.0,
                    help="how often the sampler looks (default 5 ms; at 1 ms its own "
                         "wake-ups take enough of the two cores to slow the fleet)")
    ap.add_argument("--loop", choices=LOOP_NAMES, default="auto",
                    help="the fleet's event loop, as `fleet --loop`")
    args = ap.parse_args()
    with served() as (tmp, state, proc, port):
        # Registration, imports and the server's first requests, outside the timing.
        fleet_run(fleet_target(port, state, args.devices), tmp / "one",
                  args.devices, 1, args.concurrency, seed=9, loop=args.loop)
        target = fleet_target(port, state, args.devices)
        sampler = subprocess.Popen(
            [sys.executable, "-c", SAMPLER, main_thread_schedstat(os.getpid()),
             main_thread_schedstat(proc.pid), str(args.interval_ms / 1000)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started, fleet0, server0 = time.perf_counter(), time.process_time(), cpu_s(proc.pid)
        rate, _, ok = fleet_run(target, tmp / "fleet", args.devices, args.days,
                                args.concurrency, loop=args.loop)
        wall = time.perf_counter() - started
        fleet_cpu, server_cpu = time.process_time() - fleet0, cpu_s(proc.pid) - server0
        out, _ = sampler.communicate("", timeout=30)
    counts = json.loads(out)
    total = sum(counts.values()) or 1
    shares = {name: counts.get(f"{int(f)}{int(s)}", 0) / total
              for (f, s), name in STATES.items()}
    print(f"{args.devices} devices x {args.days} days, {rate:.1f} device-days/s "
          f"(registration in the run), {args.concurrency} slots, expectations "
          f"{'ok' if ok else 'FAILED'}; {total} samples every {args.interval_ms:g} ms")
    device_days = args.devices * args.days
    print(f"  the fleet process: {fleet_cpu / wall:.0%} of a core, "
          f"{1000 * fleet_cpu / device_days:.2f} ms CPU per device-day; the server: "
          f"{server_cpu / wall:.0%} of a core, {1000 * server_cpu / device_days:.2f} ms")
    print("share of the run's wall time:")
    for name, share in shares.items():
        print(f"  {share:6.1%}  {name}")
    key = {name: name.replace(",", "").replace(" ", "_") for name in STATES.values()}
    print(json.dumps({
        "device_days_per_s": round(rate, 1), "ok": ok, "samples": total,
        "fleet_cpu_fraction_of_core": round(fleet_cpu / wall, 3),
        "server_cpu_fraction_of_core": round(server_cpu / wall, 3),
        "fleet_cpu_ms_per_device_day": round(1000 * fleet_cpu / device_days, 3),
        "server_cpu_ms_per_device_day": round(1000 * server_cpu / device_days, 3),
        **{f"wall_fraction_{key[name]}": round(share, 4) for name, share in shares.items()},
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
