"""The garbage collector in the fleet process: its time per device-day, by generation,
the longest a collection held the loop, and what the fleet leaves for it to free.

The instruction count (``fleet_instructions.py``, 40 devices) cannot see what grows with
a fleet's size, and the collector's work does: a young collection walks everything in
flight. This runs ``fleet_bench.py``'s fleet (its ``fleet_run``, seeded, against the
reference server in its own process) with ``gc.callbacks`` timing every collection, each
tree twice, ``--days`` short and long: the difference over the extra device-days is what
one more registered device-day costs the collector. ``--compare-with`` runs another
tree too, alternating with this one ``--pairs`` times, so that the host's spells hit both
alike. In each long run the collector also keeps, for ``--save-seconds`` of steady state
(from the tenth second on), everything it frees (``gc.DEBUG_SAVEALL``): objects that
reference counting could not free, listed by type.

    .venv/bin/python bench/fleet_gc.py [--devices 1000] [--days 3 10] [--pairs 2]
        [--compare-with TREE|COMMIT] [--save-seconds 3]

Last line: JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from payload_build import _archive  # bench/, beside this script

ROOT = Path(__file__).resolve().parents[1]
SAVE_FROM_S = 10.0  # the long run's steady state: the fleet is built and registering


def child(tree: Path, devices: int, days: int, save_seconds: float) -> int:
    """One fleet run of ``tree``'s code in this interpreter; prints its collections."""
    sys.path[:0] = [str(tree / "bench"), str(tree)]
    from fleet_bench import fleet_run, fleet_target, served

    started = time.perf_counter()
    by_generation = {g: [0, 0.0, 0.0] for g in range(3)}  # count, seconds, longest
    since = [0.0]
    saving: dict[str, float] = {}
    garbage: Counter[str] = Counter()

    def timed(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            since[0] = now
            if save_seconds and not saving and now - started >= SAVE_FROM_S:
                gc.set_debug(gc.DEBUG_SAVEALL)
                saving["from"] = now
            return
        taken = now - since[0]
        seen = by_generation[info["generation"]]
        seen[0] += 1
        seen[1] += taken
        seen[2] = max(seen[2], taken)
        if saving and "until" not in saving and now - saving["from"] >= save_seconds:
            gc.set_debug(0)
            saving["until"] = now
            garbage.update(type(o).__qualname__ for o in gc.garbage)
            gc.garbage.clear()

    gc.callbacks.append(timed)
    with served() as (tmp, state, _, port):
        _, _, ok = fleet_run(fleet_target(port, state, devices), tmp / "fleet", devices, days,
                             concurrency=32, seed=10)
    gc.callbacks.remove(timed)
    if saving and "until" not in saving:  # the run ended inside the window: close it
        gc.collect()
        gc.set_debug(0)
        saving["until"] = time.perf_counter()
        garbage.update(type(o).__qualname__ for o in gc.garbage)
        gc.garbage.clear()
    print(json.dumps({"collections": by_generation, "garbage": garbage.most_common(12),
                      "garbage_total": sum(garbage.values()),
                      "saved_s": saving.get("until", 0.0) - saving.get("from", 0.0)}))
    return 0 if ok else 1


def run(tree: Path, devices: int, days: int, save_seconds: float) -> dict[str, Any]:
    """``child`` in a fresh interpreter, ``tree`` its code and its working directory."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(tree),
         "--devices", str(devices), "--child-days", str(days),
         "--save-seconds", str(save_seconds)],
        cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the fleet failed ({tree}, {days} days):\n{done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def per_device_day(tree: Path, devices: int, days: tuple[int, int],
                   save_seconds: float) -> dict[str, Any]:
    """The collector's ms per extra device-day (total and by generation), its longest
    pauses in the long run (ms) and the garbage it saw there."""
    short = run(tree, devices, days[0], 0.0)
    long = run(tree, devices, days[1], save_seconds)
    extra = devices * (days[1] - days[0])
    gens = {g: 1000 * (long["collections"][g][1] - short["collections"][g][1]) / extra
            for g in ("0", "1", "2")}
    return {"ms": sum(gens.values()), "by_generation": gens,
            "longest_ms": {g: 1000 * long["collections"][g][2] for g in ("0", "1", "2")},
            "collections": {g: long["collections"][g][0] - short["collections"][g][0]
                            for g in ("0", "1", "2")},
            "garbage": long["garbage"], "garbage_total": long["garbage_total"],
            "saved_s": long["saved_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000, help="fleet size (default 1000)")
    ap.add_argument("--days", type=int, nargs=2, default=(3, 10), metavar=("SHORT", "LONG"),
                    help="the two run lengths (default 3 10)")
    ap.add_argument("--pairs", type=int, default=2, help="rounds of each tree (default 2)")
    ap.add_argument("--compare-with", metavar="TREE|COMMIT",
                    help="also run another checkout, or a commit of this repository")
    ap.add_argument("--save-seconds", type=float, default=3.0,
                    help="how long the long run keeps what the collector frees (default 3)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices < 1 or not 1 <= args.days[0] < args.days[1] or args.pairs < 1:
        ap.error("--devices and --pairs must be >= 1, --days SHORT LONG with 1 <= SHORT < LONG")
    if args.child is not None:
        return child(args.child, args.devices, args.child_days, args.save_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": ROOT}
        if args.compare_with is not None:
            given = Path(args.compare_with)
            base: Path | None = given.resolve()
            if not (given / "device_direct").is_dir():
                base = _archive(args.compare_with, Path(tmp))
            if base is None:
                return 2
            trees = {f"baseline ({args.compare_with})": base, **trees}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for k in range(args.pairs):
            for name, tree in trees.items():
                rounds[name].append(per_device_day(tree, args.devices, tuple(args.days),
                                                   args.save_seconds))
                print(f"round {k + 1}, {name}: {rounds[name][-1]['ms']:.4f} ms per "
                      "device-day", file=sys.stderr, flush=True)
    print(f"The garbage collector in the fleet process ({args.devices} devices, days "
          f"{args.days[0]} to {args.days[1]}, {args.pairs} round(s) each, median)")
    figures: dict[str, Any] = {"devices": args.devices, "days": list(args.days)}
    for name, runs in rounds.items():
        ms = statistics.median(r["ms"] for r in runs)
        gens = {g: statistics.median(r["by_generation"][g] for r in runs) for g in "012"}
        longest = {g: max(r["longest_ms"][g] for r in runs) for g in "012"}
        count = {g: statistics.median(r["collections"][g] for r in runs) for g in "012"}
        saved = runs[-1]
        left = ", ".join(f"{t} {n}" for t, n in saved["garbage"]) or "none"
        print(f"{name}:")
        each = ", ".join(f"{r['ms']:.4f}" for r in runs)
        print(f"  {ms:.4f} ms per device-day (each round: {each}); young {gens['0']:.4f}, "
              f"middle {gens['1']:.4f}, full {gens['2']:.4f}")
        print(f"  collections over the extra days: {count['0']:.0f} young, {count['1']:.0f} "
              f"middle, {count['2']:.0f} full; the longest of each in a long run (its set-up "
              f"too: a full one before the fleet is frozen) {longest['0']:.1f}, "
              f"{longest['1']:.1f}, {longest['2']:.1f} ms")
        if saved["saved_s"]:
            print(f"  left for the collector in {saved['saved_s']:.1f} s of steady state: "
                  f"{saved['garbage_total']} objects ({left})")
        else:
            print(f"  the long run ended before its {SAVE_FROM_S:.0f}th second: nothing saved")
        key = "baseline" if name.startswith("baseline") else "fleet"
        figures[f"{key}_gc_ms_per_device_day"] = round(ms, 4)
        figures[f"{key}_gc_ms_per_device_day_by_generation"] = {
            g: round(v, 4) for g, v in gens.items()}
        figures[f"{key}_gc_longest_pause_ms"] = {g: round(v, 1) for g, v in longest.items()}
        figures[f"{key}_garbage_objects_saved"] = saved["garbage_total"]
    if figures.get("baseline_gc_ms_per_device_day"):
        ratio = figures["fleet_gc_ms_per_device_day"] / figures["baseline_gc_ms_per_device_day"]
        print(f"this tree / baseline: {ratio:.3f}")
        figures["fleet_over_baseline_gc"] = round(ratio, 4)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
