"""Instructions per fleet device-day, counted by valgrind: a measure the host's noise
does not move.

The fleet benches time CPU, and on these shared machines a tree's CPU per device-day
moves by 10% or more between runs minutes apart, more than most changes are worth.
``valgrind --tool=callgrind`` counts the instructions the fleet process executes
instead: the same code and inputs give the same count (two runs of one tree differ by
about 0.02%), whatever else the host does.

Each run is the fleet of ``fleet_bench.py`` (its ``fleet_run``, seeded) against the
reference server in its own process, which valgrind does not follow: only the fleet
process is counted. A tree is run twice, ``--days`` short and long, and the difference
divided by the extra device-days is what one more device-day costs once every device is
registered (imports, set-up and registration cancel out). It is split by where the
instructions ran: the interpreter, OpenSSL (the bundled one the devices' TLS runs on,
and the system's together), zlib, libc, the rest.

Beside the fleet, the same count for two of ``fleet_bench.py``'s baselines, each doing
the same device-day with the fleet's own payloads and registered devices: (e') the
device's transport alone (``bare_client.py --client transport``) and Locust's
FastHttpUser. Their runs are timed, not counted in days, so each is run for two lengths
of time and the difference divided by the extra device-days they made.

Instructions are not time. A handshake's arithmetic runs several per cycle, the
interpreter fewer; and valgrind counts the process's own code, not the kernel's work on
its system calls (the fleet's files: about 60 calls a device-day). So with the baselines
the same three clients are also run natively, two lengths each, and their user and
system CPU per extra device-day printed: timed, one run each, as noisy as the host. Use
the counts to tell whether a change does less work, and the timed benches for what it is
worth. About 4 minutes a tree under valgrind, 6 more with the baselines.

    .venv/bin/python bench/fleet_instructions.py [--devices 40] [--days 10 30]
        [--compare-with TREE|COMMIT] [--[no-]baselines] [--baseline-seconds 20 60]

Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from payload_build import _archive  # bench/, beside this script

ROOT = Path(__file__).resolve().parents[1]

# Where the instructions ran, by the file name of the object that holds the code.
PLACES = (
    ("interpreter", re.compile(r"^libpython")),
    # One place for both OpenSSLs: the one cryptography bundles (the devices' TLS) and
    # the system's (Python's ssl and hashlib, Locust's TLS). callgrind names code without
    # symbols by function name, and gives some of one library's calls to the other.
    ("OpenSSL", re.compile(r"^(_rust\.abi3\.so|lib(ssl|crypto)\.so.*)$")),
    ("zlib", re.compile(r"^libz\.so")),
    ("libc", re.compile(r"^lib(c|m)\.so")),
)
TIMED_SECONDS = (5, 15)  # the baselines' two native runs, for their CPU
BASELINE_OWN = "the device's transport alone (e')"
BASELINE_FHU = "Locust FastHttpUser"
OTHER = "the rest (uvloop, extension modules, the loader)"
# Lines without an object (code inlined from a header), by their source path: CPython's
# build tree (relative or not, as callgrind_annotate prints it from where it runs), or
# glibc's ("./nptl/...").
_INLINED = ((re.compile(r"^(.*/)?python-build"), "libpython"), (re.compile(r"^\./"), "libc.so"))
_LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$")


def child(tree: Path, devices: int, days: int) -> int:
    """One fleet run of ``tree``'s code, in this interpreter (counted by the parent).
    Its last line: this process's user and system CPU seconds (the server, in its own
    process, not included)."""
    sys.path[:0] = [str(tree / "bench"), str(tree)]
    from fleet_bench import fleet_run, fleet_target, served

    with served() as (tmp, state, _, port):
        _, _, ok = fleet_run(fleet_target(port, state, devices), tmp / "fleet", devices, days,
                             concurrency=32, seed=10)
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"user_s": used.ru_utime, "system_s": used.ru_stime}))
    return 0 if ok else 1


def fleet_cpu(tree: Path, devices: int, days: tuple[int, int]) -> tuple[float, float]:
    """The fleet's user and system CPU ms per extra device-day, run natively (timed)."""
    runs = []
    for d in days:
        run = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(tree),
             "--devices", str(devices), "--child-days", str(d)],
            cwd=tree, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise SystemExit(f"the fleet failed ({tree}, {d} days):\n{run.stderr[-1500:]}")
        runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
    extra = devices * (days[1] - days[0])
    user, system = (1000 * (runs[1][k] - runs[0][k]) / extra for k in ("user_s", "system_s"))
    return user, system


def callgrind(out: Path) -> tuple[str, ...]:
    """The command prefix that counts a process's instructions into ``out``."""
    return ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")


def places(out: Path) -> Counter[str]:
    """The instructions of callgrind's file ``out``, by place (the file is removed)."""
    table = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                            str(out)], capture_output=True, text=True, check=True).stdout
    found: Counter[str] = Counter()
    for line in table.splitlines():
        m = _LINE.match(line)
        if m is None or "PROGRAM TOTALS" in line:
            continue
        where = m.group(2)
        obj = re.search(r"\[([^\]]*)\]\s*$", where)
        # A line for code inlined from another file (a header) names no object.
        name = Path(obj.group(1)).name if obj else next(
            (lib for start, lib in _INLINED if start.match(where)), "")
        place = next((p for p, pattern in PLACES if pattern.match(name)), OTHER)
        found[place] += int(m.group(1).replace(",", ""))
    out.unlink()
    return found


def counted(tree: Path, devices: int, days: int, out: Path) -> Counter[str]:
    """Run ``tree``'s fleet under callgrind; its instructions by place."""
    cmd = [*callgrind(out), sys.executable, str(Path(__file__).resolve()), "--child",
           str(tree), "--devices", str(devices), "--child-days", str(days)]
    run = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"the fleet under valgrind failed ({tree}, {days} days):\n"
                         f"{run.stdout[-1500:]}{run.stderr[-1500:]}")
    return places(out)


def difference(short: Counter[str], long: Counter[str], extra: int) -> dict[str, float]:
    """Millions of instructions per extra device-day, by place, and their total."""
    result = {p: (long[p] - short[p]) / extra / 1e6 for p in (*(p for p, _ in PLACES), OTHER)}
    result["total"] = sum(result.values())
    return result


def per_device_day(tree: Path, devices: int, days: tuple[int, int], work: Path
                   ) -> dict[str, float]:
    """Instructions (millions) one more device-day costs in ``tree``'s fleet, by place."""
    short = counted(tree, devices, days[0], work / "short.out")
    long = counted(tree, devices, days[1], work / "long.out")
    return difference(short, long, devices * (days[1] - days[0]))


def baselines(devices: int, days: int, seconds: tuple[int, int], work: Path
              ) -> tuple[dict[str, dict[str, float]], dict[str, tuple[float, float]]]:
    """fleet_bench.py's (e') and (b) FastHttpUser: the device's transport alone and
    Locust, each the same device-day, run for two lengths of time. Under callgrind:
    instructions per extra device-day, by place; natively (``time``): user and system
    CPU ms per extra device-day. They send the payloads of a fleet of ``devices`` run for
    ``days`` (its devices, registered), in turn: the payloads the counted fleet sends,
    their transfer history growing day by day."""
    from fleet_bench import (
        OWN,
        bare_run,
        fleet_payloads,
        fleet_run,
        fleet_target,
        locust_run,
        served,
    )

    found: dict[str, dict[str, float]] = {}
    cpu: dict[str, tuple[float, float]] = {}
    with served() as (tmp, state, _, port):
        fleet = tmp / "fleet"  # registers the devices the baselines use
        fleet_run(fleet_target(port, state, devices), fleet, devices, days, 32, seed=10)
        samples, _ = fleet_payloads(state, tmp / "payloads.json")
        runs = 0

        def run(name: str, s: int, wrap: tuple[str, ...]) -> int:
            nonlocal runs
            runs += 1
            if name == BASELINE_OWN:
                result = bare_run(port, state, fleet, 32, s, client=OWN, samples=samples,
                                  wrap=wrap)
            else:
                result = locust_run(port, state, fleet, 32, s, f"fhu-{runs}",
                                    user_class="FastHttpUser", samples=samples, wrap=wrap)
            if result[2]:
                raise SystemExit(f"{name}: {result[2]} device-days failed")
            return result[1]

        for name in (BASELINE_OWN, BASELINE_FHU):
            counts, done = [], []
            for s in seconds:
                out = work / f"baseline-{s}.out"
                done.append(run(name, s, callgrind(out)))
                counts.append(places(out))
            if done[1] <= done[0]:
                raise SystemExit(f"{name}: the longer run made no more device-days "
                                 f"({done[0]}, {done[1]}); give --baseline-seconds more")
            found[name] = difference(counts[0], counts[1], done[1] - done[0])
            times, done = [], []
            for s in TIMED_SECONDS:
                out = work / f"time-{s}.txt"
                done.append(run(name, s, ("/usr/bin/time", "-f", "%U %S", "-o", str(out))))
                times.append([float(x) for x in out.read_text().split()[-2:]])
            extra = done[1] - done[0]
            cpu[name] = (1000 * (times[1][0] - times[0][0]) / extra,
                         1000 * (times[1][1] - times[0][1]) / extra)
    return found, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=40, help="fleet size (default 40)")
    ap.add_argument("--days", type=int, nargs=2, default=(10, 30), metavar=("SHORT", "LONG"),
                    help="the two run lengths whose difference is counted (default 10 30, "
                         "as fleet_bench.py's 30 days)")
    ap.add_argument("--compare-with", metavar="TREE|COMMIT",
                    help="also count another checkout's code, or a commit of this "
                         "repository (then without the baselines, unless --baselines)")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None,
                    help="also count the device's transport alone and Locust's "
                         "FastHttpUser (default: yes without --compare-with)")
    ap.add_argument("--baseline-seconds", type=int, nargs=2, default=(20, 60),
                    metavar=("SHORT", "LONG"),
                    help="the baselines' two run lengths under valgrind (default 20 60)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices < 1 or not 1 <= args.days[0] < args.days[1]:
        ap.error("--devices must be >= 1 and --days SHORT LONG with 1 <= SHORT < LONG")
    if not 1 <= args.baseline_seconds[0] < args.baseline_seconds[1]:
        ap.error("--baseline-seconds SHORT LONG needs 1 <= SHORT < LONG")
    if args.child is not None:
        return child(args.child, args.devices, args.child_days)
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("valgrind is not installed (apt-get install valgrind, or make bench)",
              file=sys.stderr)
        return 2
    with_baselines = args.compare_with is None if args.baselines is None else args.baselines
    columns: dict[str, dict[str, float]] = {}
    cpu: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.compare_with is not None:
            given = Path(args.compare_with)
            base: Path | None = given.resolve()
            if not (given / "device_direct").is_dir():
                (work / "base").mkdir()
                base = _archive(args.compare_with, work / "base")
            if base is None:
                return 2
            columns[f"baseline ({args.compare_with})"] = per_device_day(
                base, args.devices, tuple(args.days), work)
        if with_baselines:
            counts, cpu = baselines(args.devices, args.days[1], tuple(args.baseline_seconds),
                                    work)
            columns.update(counts)
            cpu["the fleet"] = fleet_cpu(ROOT, args.devices, tuple(args.days))
        ours = columns["the fleet"] = per_device_day(ROOT, args.devices, tuple(args.days),
                                                     work)
    print(f"Millions of instructions per device-day (valgrind's count; the fleet: "
          f"{args.devices} devices, {args.days[0]} and {args.days[1]} days, registered)")
    names = list(columns)
    width = max(12, *(len(n) for n in names)) + 2
    print(f"{'where':40}" + "".join(f"{n:>{width}}" for n in names))
    for place in ours:
        print(f"{place[:39]:40}" + "".join(f"{columns[n][place]:{width}.3f}" for n in names))
    figures: dict[str, Any] = {"devices": args.devices, "days": list(args.days),
                               "minstr_per_device_day": round(ours["total"], 4),
                               "minstr_per_device_day_by_place": {
                                   k: round(v, 4) for k, v in ours.items() if k != "total"}}
    if cpu:
        print("CPU ms per device-day, timed (one native run of each length; the host's "
              "noise moves these, not the counts above)")
        print(f"{'':40}" + "".join(f"{n:>{width}}" for n in cpu))
        for i, what in enumerate(("user", "system (the kernel, for the process)")):
            print(f"{what:40}" + "".join(f"{cpu[n][i]:{width}.3f}" for n in cpu))
        print(f"{'total':40}" + "".join(f"{sum(cpu[n]):{width}.3f}" for n in cpu))
        figures["cpu_ms_per_device_day_user_system"] = {
            n: [round(v, 4) for v in cpu[n]] for n in cpu}
    for name in names[:-1]:
        ratio = ours["total"] / columns[name]["total"]
        print(f"the fleet / {name}: {ratio:.3f}")
        key = "baseline" if name.startswith("baseline") else (
            "transport_alone" if name == BASELINE_OWN else "fasthttpuser")
        figures[f"{key}_minstr_per_device_day"] = round(columns[name]["total"], 4)
        figures[f"fleet_over_{key}_instructions"] = round(ratio, 4)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
