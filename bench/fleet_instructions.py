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
and the system's), zlib, libc, the rest.

Instructions are not time: a handshake's arithmetic runs several per cycle, the
interpreter fewer. Use this to tell whether a change does less work, and the timed
benches for what it is worth. About 3 minutes a tree under valgrind.

    .venv/bin/python bench/fleet_instructions.py [--devices 40] [--days 3 9]
        [--compare-with TREE|COMMIT]

Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import re
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
    ("OpenSSL, bundled (cryptography)", re.compile(r"^_rust\.abi3\.so$")),
    ("OpenSSL, system", re.compile(r"^lib(ssl|crypto)\.so")),
    ("zlib", re.compile(r"^libz\.so")),
    ("libc", re.compile(r"^lib(c|m)\.so")),
)
OTHER = "the rest (uvloop, extension modules, the loader)"
# Lines without an object (code inlined from a header), by their source path: CPython's
# build tree, or glibc's ("./nptl/...").
_INLINED = (("python-build", "libpython"), ("./", "libc.so"))
_LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$")


def child(tree: Path, devices: int, days: int) -> int:
    """One fleet run of ``tree``'s code, in this interpreter (counted by the parent)."""
    sys.path[:0] = [str(tree / "bench"), str(tree)]
    from fleet_bench import fleet_run, fleet_target, served

    with served() as (tmp, state, _, port):
        _, _, ok = fleet_run(fleet_target(port, state, devices), tmp / "fleet", devices, days,
                             concurrency=32, seed=10)
    return 0 if ok else 1


def counted(tree: Path, devices: int, days: int, out: Path) -> Counter[str]:
    """Run ``tree``'s fleet under callgrind; its instructions by place."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, str(Path(__file__).resolve()), "--child", str(tree),
           "--devices", str(devices), "--child-days", str(days)]
    run = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"the fleet under valgrind failed ({tree}, {days} days):\n"
                         f"{run.stdout[-1500:]}{run.stderr[-1500:]}")
    table = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                            str(out)], capture_output=True, text=True, check=True).stdout
    places: Counter[str] = Counter()
    for line in table.splitlines():
        m = _LINE.match(line)
        if m is None or "PROGRAM TOTALS" in line:
            continue
        where = m.group(2)
        obj = re.search(r"\[([^\]]*)\]\s*$", where)
        # A line for code inlined from another file (a header) names no object.
        name = Path(obj.group(1)).name if obj else next(
            (lib for start, lib in _INLINED if where.startswith(start)), "")
        place = next((p for p, pattern in PLACES if pattern.match(name)), OTHER)
        places[place] += int(m.group(1).replace(",", ""))
    out.unlink()
    return places


def per_device_day(tree: Path, devices: int, days: tuple[int, int], work: Path
                   ) -> dict[str, float]:
    """Instructions (millions) one more device-day costs in ``tree``'s fleet, by place."""
    short = counted(tree, devices, days[0], work / "short.out")
    long = counted(tree, devices, days[1], work / "long.out")
    extra = devices * (days[1] - days[0])
    result = {p: (long[p] - short[p]) / extra / 1e6 for p in (*(p for p, _ in PLACES), OTHER)}
    result["total"] = sum(result.values())
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=40, help="fleet size (default 40)")
    ap.add_argument("--days", type=int, nargs=2, default=(3, 9), metavar=("SHORT", "LONG"),
                    help="the two run lengths whose difference is counted (default 3 9)")
    ap.add_argument("--compare-with", metavar="TREE|COMMIT",
                    help="also count another checkout's code, or a commit of this repository")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices < 1 or not 1 <= args.days[0] < args.days[1]:
        ap.error("--devices must be >= 1 and --days SHORT LONG with 1 <= SHORT < LONG")
    if args.child is not None:
        return child(args.child, args.devices, args.child_days)
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("valgrind is not installed: sudo apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base: Path | None = None
        if args.compare_with is not None:
            given = Path(args.compare_with)
            if (given / "device_direct").is_dir():
                base = given.resolve()
            else:
                (work / "base").mkdir()
                base = _archive(args.compare_with, work / "base")
                if base is None:
                    return 2
        ours = per_device_day(ROOT, args.devices, tuple(args.days), work)
        theirs = per_device_day(base, args.devices, tuple(args.days), work) if base else None
    print(f"{args.devices} devices, {args.days[0]} and {args.days[1]} days: millions of "
          "instructions per device-day (the fleet process, registered devices)")
    head = f"{'where':48}" + (f"{'baseline':>10}" if theirs else "") + f"{'this tree':>10}"
    print(head + (f"{'ratio':>8}" if theirs else ""))
    for place, value in ours.items():
        row = f"{place:48}"
        if theirs:
            row += f"{theirs[place]:10.3f}"
        row += f"{value:10.3f}"
        if theirs and theirs[place]:
            row += f"{value / theirs[place]:8.3f}"
        print(row)
    figures: dict[str, Any] = {"devices": args.devices, "days": list(args.days),
                               "minstr_per_device_day": round(ours["total"], 4),
                               "minstr_per_device_day_by_place": {
                                   k: round(v, 4) for k, v in ours.items() if k != "total"}}
    if theirs:
        print(f"baseline: {args.compare_with}")
        figures["baseline_minstr_per_device_day"] = round(theirs["total"], 4)
        figures["ratio_instructions"] = round(ours["total"] / theirs["total"], 4)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
