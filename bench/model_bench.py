"""Benchmark: the emulated device model alone, 10,000 devices x 30 days in one process.

Prints device-days per second and model state bytes per device, next to baselines
measured in the same run:
- an empty Python loop over the same number of device-days (the floor of any loop);
- a loop that only reseeds a random.Random and draws one normal value per device-day
  (the least work a seeded, replayable day could do).
Speed is the median of a few repetitions (fresh devices each time), in wall time (the
goal) and in the process's CPU time (steadier on a shared, loaded machine). Memory is measured
two ways: tracemalloc of the live devices after 30 days (everything a device owns;
profile, plan and clock are shared and not counted), and the size of the serialized
state (the JSON written to state_dir). The last line is one JSON object.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.clock import VirtualClock
from emulator.model import EmulatedDevice, load_profile

DEVICES = 10_000
DAYS = 30
REPEATS = 3
# tracemalloc slows allocation-heavy code about tenfold: memory is measured on a
# smaller fleet of the same profile mix (a per-device average does not depend on n).
MEM_DEVICES = 2_000
PROFILE_MIX = ("office-color", "office-color", "office-mono", "production")
START = date(2026, 1, 5)


def build(n: int, clock: VirtualClock) -> list[EmulatedDevice]:
    profiles = [load_profile(p) for p in PROFILE_MIX]
    return [EmulatedDevice(profiles[i % len(profiles)], serial=f"BENCH{i:06d}", clock=clock,
                           rng_seed=i, state_dir=None) for i in range(n)]


def run_days(devices: list[EmulatedDevice], cpu: list[float] | None = None) -> float:
    """Wall seconds for DAYS days of ``devices``; appends the CPU seconds to ``cpu``."""
    days = [START + timedelta(days=k) for k in range(DAYS)]
    t0 = time.perf_counter()
    c0 = time.process_time()
    for day in days:
        for dev in devices:
            dev.run_day(day)
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0


def empty_loop(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t0


def seed_and_draw(n: int) -> float:
    rng = random.Random()
    t0 = time.perf_counter()
    for i in range(n):
        rng.seed(i << 40)
        rng.gauss(500.0, 100.0)
    return time.perf_counter() - t0


def main() -> None:
    clock = VirtualClock(datetime(2026, 1, 5, tzinfo=UTC))
    total = DEVICES * DAYS
    model_s: list[float] = []
    empty_s: list[float] = []
    seed_s: list[float] = []
    model_cpu: list[float] = []
    for _ in range(REPEATS):
        devices = build(DEVICES, clock)
        model_s.append(run_days(devices, model_cpu))
        empty_s.append(empty_loop(total))
        seed_s.append(seed_and_draw(total))
    sizes = [len(json.dumps(d.export_state(), separators=(",", ":"))) for d in devices]
    del devices

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    live = build(MEM_DEVICES, clock)
    run_days(live)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_device_traced = traced / MEM_DEVICES

    rate = total / statistics.median(model_s)
    cpu_rate = total / statistics.median(model_cpu)
    empty_rate = total / statistics.median(empty_s)
    seed_rate = total / statistics.median(seed_s)
    print(f"model: {DEVICES} devices x {DAYS} days ({', '.join(PROFILE_MIX)} round robin), "
          f"{REPEATS} repetitions")
    print(f"  model run_day           {rate:>14,.0f} device-days/s  "
          f"(runs: {', '.join(f'{total / s:,.0f}' for s in model_s)})")
    # On a shared machine the wall rate falls with the load; CPU time does much less.
    print(f"  model run_day, CPU time {cpu_rate:>14,.0f} device-days per CPU second")
    print(f"  baseline empty loop     {empty_rate:>14,.0f} iterations/s")
    print(f"  baseline seed+1 draw    {seed_rate:>14,.0f} iterations/s")
    print(f"  state, tracemalloc      {per_device_traced:>14,.0f} bytes/device (live objects "
          f"after {DAYS} days, {MEM_DEVICES} devices)")
    print(f"  state, serialized JSON  {statistics.mean(sizes):>14,.0f} bytes/device mean, "
          f"{max(sizes):,} max")
    print("  goals: >= 10,000 device-days/s, <= 16 KiB/device")
    print(json.dumps({
        "device_days_per_s": round(rate),
        "device_days_per_cpu_s": round(cpu_rate),
        "bytes_state_per_device": round(per_device_traced),
        "bytes_state_serialized_mean": round(statistics.mean(sizes)),
        "bytes_state_serialized_max": max(sizes),
        "baseline_empty_loop_iters_per_s": round(empty_rate),
        "baseline_seed_and_draw_iters_per_s": round(seed_rate),
        "goal_device_days_per_s": 10000,
        "goal_kib_per_device": 16,
    }))


if __name__ == "__main__":
    main()
