"""Benchmark: the CPU of one device-day's payload build, as the fleet's agent does it.

Each device-day ``Agent.queue_payload`` runs ``collect(model)`` (the emulated model's
snapshot, validated), ``build_xml`` (scrubbed, XSD-shaped XML) and ``pack_zip`` (the
one-entry deflated zip). This times those three calls for ``--devices`` emulated devices
of the fleet's profiles (office-color, office-mono, production in turn) over ``--days``
days each: every device runs its day on the model, then builds its payload with its own
transfer history (one "stored" line per earlier day, as the outbox records it), the
default privacy policy, a ``DIRECT`` proxy route and its own ``PayloadCache`` (the parts
of its payloads that did not change since the day before), as the fleet's agents do.

Each round runs in a fresh interpreter and times each call in the thread's CPU time
(``time.thread_time_ns``); the figures are medians over ``--rounds`` rounds of the mean
per payload. The same rounds run the code of an earlier tree too, alternating with
this one's, so machine noise hits both alike: ``--compare-with TREE`` (a checkout), or
by default commit ``--base`` (a627848, the code before issue 23's payload work) taken
out of this repository with ``git archive`` into a temporary directory. Both build the
payloads from the same seeds, and the SHA-256 of all their payload bytes says whether
the two builds gave the same bytes.

    .venv/bin/python bench/payload_build.py [--devices 30] [--days 30] [--rounds 5]
        [--compare-with TREE | --base COMMIT]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILE_MIX = ("office-color", "office-mono", "production")
START = date(2026, 1, 5)
PARTS = ("collect", "build_xml", "pack_zip")
BASE_COMMIT = "a627848"  # the code before issue 23's payload work


class _DayClock:
    """A clock the child sets by hand: the evening of the simulated day."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()

    async def sleep_until(self, when: datetime) -> None:  # unused: no loop runs here
        self.at = max(self.at, when)

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def child(devices: int, days: int) -> dict[str, Any]:
    """One round, in this interpreter (whose ``sys.path`` says which code it runs)."""
    from device_direct.collector import collect
    from device_direct.core.payload import (
        PayloadMeta,
        ProxyRoute,
        TransferRecord,
        build_xml,
        new_upload_id,
        pack_zip,
    )
    from device_direct.core.privacy import PrivacyPolicy
    from emulator.model import EmulatedDevice, load_profile

    try:  # each agent keeps its payloads' unchanged parts (trees before it: no cache)
        from device_direct.core.payload import PayloadCache

        def caching(n: int) -> dict[str, Any]:
            return {"cache": PayloadCache()}
    except ImportError:
        def caching(n: int) -> dict[str, Any]:
            return {}

    start = datetime.combine(START, datetime.min.time(), UTC)
    clock = _DayClock(start)
    profiles = [load_profile(p) for p in PROFILE_MIX]
    models = [EmulatedDevice(profiles[i % len(profiles)], serial=f"PB{i:06d}", clock=clock,
                             rng_seed=i, state_dir=None) for i in range(devices)]
    histories: list[list[Any]] = [[] for _ in models]
    caches = [caching(n) for n in range(len(models))]
    rng = random.Random(23)
    policy = PrivacyPolicy()
    proxy = ProxyRoute("DIRECT", "off")
    ns = dict.fromkeys(PARTS, 0)
    digest = hashlib.sha256()
    payload_bytes = 0
    clock_ns = time.thread_time_ns
    for k in range(days):
        day = START + timedelta(days=k)
        for model in models:
            clock.at = start + timedelta(days=k, hours=8)
            model.run_day(day)
        clock.at = start + timedelta(days=k, hours=20)
        for n, model in enumerate(models):
            meta = PayloadMeta(upload_id=new_upload_id(rng.getrandbits(128)), sequence=k,
                               generated_at=clock.at)
            history = histories[n]
            t0 = clock_ns()
            snapshot = collect(model)
            t1 = clock_ns()
            xml = build_xml(snapshot, meta, policy=policy, transfer_history=history,
                            proxy=proxy, engineering_log=None, **caches[n])
            t2 = clock_ns()
            zipped = pack_zip(xml)
            t3 = clock_ns()
            ns["collect"] += t1 - t0
            ns["build_xml"] += t2 - t1
            ns["pack_zip"] += t3 - t2
            digest.update(zipped)
            payload_bytes += len(zipped)
            history.append(TransferRecord(clock.at + timedelta(minutes=1), "stored",
                                          len(zipped), meta.upload_id))
            del history[:-100]
    payloads = devices * days
    return {"ms": {part: ns[part] / 1e6 / payloads for part in PARTS},
            "sha256": digest.hexdigest(), "payloads": payloads,
            "mean_zip_bytes": payload_bytes / payloads}


def _round(tree: Path, devices: int, days: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(tree),
         "--devices", str(devices), "--days", str(days)],
        check=True, capture_output=True, text=True, env=env, cwd=tree)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _medians(rounds: list[dict[str, Any]]) -> dict[str, float]:
    med = {part: statistics.median(r["ms"][part] for r in rounds) for part in PARTS}
    med["total"] = statistics.median(sum(r["ms"].values()) for r in rounds)
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=30,
                    help="emulated devices (the three profiles in turn; default 30)")
    ap.add_argument("--days", type=int, default=30, help="days each (default 30)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="fresh-interpreter rounds of each tree, alternating (default 5)")
    ap.add_argument("--compare-with", type=Path, metavar="TREE",
                    help="also time the code of another checkout, alternating with this one")
    ap.add_argument("--base", default=BASE_COMMIT, metavar="COMMIT",
                    help="without --compare-with: the commit whose code is the baseline "
                         f"(default {BASE_COMMIT}; 'none' for no baseline)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices < 1 or args.days < 1 or args.rounds < 1:
        ap.error("--devices, --days and --rounds must be >= 1")
    if args.child is not None:
        sys.path.insert(0, str(args.child))
        print(json.dumps(child(args.devices, args.days)))
        return 0
    if args.compare_with is not None and not (args.compare_with / "device_direct").is_dir():
        ap.error(f"--compare-with {args.compare_with}: no device_direct/ in that tree")
    args.baseline_name = str(args.compare_with)
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare_with is None and args.base != "none":
            args.compare_with = _archive(args.base, Path(tmp))
            args.baseline_name = f"commit {args.base}"
        return _run(args)


def _archive(commit: str, into: Path) -> Path | None:
    """``commit``'s tree extracted into ``into`` (None, said why, when git cannot)."""
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"no baseline: cannot take commit {commit} out of {ROOT} "
              f"({exc}; {detail.decode(errors='replace').strip()})", file=sys.stderr)
        return None
    return into


def _run(args: argparse.Namespace) -> int:
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        if args.compare_with is not None:
            theirs.append(_round(args.compare_with.resolve(), args.devices, args.days))
        ours.append(_round(ROOT, args.devices, args.days))
    now = _medians(ours)
    print(f"{args.devices} devices x {args.days} days = {ours[0]['payloads']} payloads a "
          f"round, {args.rounds} rounds; CPU ms per payload (median of the rounds' means)")
    figures: dict[str, Any] = {"payloads_per_round": ours[0]["payloads"],
                               "rounds": args.rounds,
                               "mean_zip_bytes": round(ours[0]["mean_zip_bytes"], 1)}
    if theirs:
        base = _medians(theirs)
        same = {r["sha256"] for r in ours} == {r["sha256"] for r in theirs}
        print(f"{'part':12}{'baseline':>12}{'this tree':>12}{'ratio':>8}")
        for part in (*PARTS, "total"):
            print(f"{part:12}{base[part]:12.4f}{now[part]:12.4f}"
                  f"{now[part] / base[part]:8.2f}")
        print(f"baseline: {args.baseline_name}; payload bytes identical to the baseline's: "
              f"{'yes' if same else 'NO'} (mean zip {ours[0]['mean_zip_bytes']:.0f} B, "
              f"baseline {theirs[0]['mean_zip_bytes']:.0f} B)")
        figures.update({f"baseline_{p}_cpu_ms": round(base[p], 4) for p in (*PARTS, "total")})
        paired = statistics.median(sum(o["ms"].values()) / sum(t["ms"].values())
                                   for o, t in zip(ours, theirs, strict=True))
        print(f"median of the rounds' own total ratios (each round beside the baseline "
              f"round just before it): {paired:.2f}")
        figures["ratio_total"] = round(now["total"] / base["total"], 3)
        figures["ratio_total_paired_median"] = round(paired, 3)
        figures["bytes_identical"] = same
    else:
        for part in (*PARTS, "total"):
            print(f"{part:12}{now[part]:12.4f}")
    figures.update({f"{p}_cpu_ms": round(now[p], 4) for p in (*PARTS, "total")})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
