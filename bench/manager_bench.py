"""The device manager's scan against net-snmp's snmpbulkwalk, on the same emulated printers.

(a) A simulated LAN (``python -m emulator lan``, its own process) of 250 printers and
    250 silent addresses. Our scan (``device-direct manager scan --json``, its own
    process, timed and its peak RSS taken with ``wait4``) probes all 500 addresses and
    reads the 250 printers. The baseline, in the same run and against the same
    printers: net-snmp's ``snmpbulkwalk`` of the same subtrees the manager reads,
    16 at a time (``xargs -P 16``), with ``-Cr64`` (the manager's largest repetition
    count): one walk per table the manager reads from (the manager reads only the
    columns it uses). Each is run ``--rounds`` times, interleaved; medians are compared. The
    goal is ours / net-snmp <= 1.0 for the printers' reads (our read phase), and the
    silent addresses must cost no more than one timeout round in all (our probe phase).
    The silent addresses are also scanned alone, next to a baseline in the same run:
    pysnmp's own high-level ``get_cmd`` of sysObjectID.0 to each of them at once (a
    target table row per address, timeouts counted in pysnmp's timer ticks), with the
    same timeout and retries.
(b) A scan of 2,000 printers (two LAN processes of 1,000, one per core): its time and
    the manager's peak RSS. The two processes answer for 2,000 printers from the two
    cores this machine has, so this scan probes 100 addresses at a time with a 15 s
    timeout and 2 retries; the printers it found and those without answer are reported.

Run: ``.venv/bin/python bench/manager_bench.py [--printers 250] [--big 2000]``. Needs
net-snmp's tools (Debian package ``snmp``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_direct.manager import mib  # noqa: E402
from device_direct.manager.mib import format_oid  # noqa: E402

# The baseline walks each table the manager reads from, whole (one snmpbulkwalk per
# table and printer), as a person with net-snmp would; the manager reads only the
# columns it uses of the same tables.
BASELINE_SUBTREES = (mib.SYSTEM, mib.IF_TYPE, mib.IF_PHYS_ADDRESS, mib.HR_DEVICE,
                     mib.HR_PRINTER, mib.PRT_GENERAL, mib.PRT_INPUT, mib.PRT_MARKER,
                     mib.PRT_SUPPLIES, mib.PRT_COLORANT, mib.PRT_CONSOLE, mib.PRT_ALERT,
                     mib.IC_KEY, mib.IC_IMPRESSION)

# One LAN process answers for all 250 printers (one request at a time, on a shared
# CPU): at 3 s a try, reads of a busy moment timed out once the manager kept its
# deadlines on the clock (pysnmp's tick-counted ones had stretched to 4-7 s).
TIMEOUT_S, RETRIES = 5.0, 1


def start_lan(printers: int, silent: int,
              subnet: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "lan", "--printers", str(printers), "--silent",
         str(silent), "--non-printers", "0", "--subnet", subnet, "--snmp-port", "0",
         "--jetdirect-port", "0", "--days-of-use", "10", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"the simulated LAN did not start: {err[-800:]}")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(cmd: list[str], ok: tuple[int, ...] = (0,), **kw: Any) -> tuple[float, int, bytes]:
    """Run ``cmd``; (wall seconds, peak RSS KiB of the child, stdout)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, **kw)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else b""
        out.seek(0)
        data = out.read()
    if proc.returncode not in ok:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err[-800:]!r}")
    return elapsed, int(usage.ru_maxrss), data


def our_scan(targets: list[str], port: int, ok: tuple[int, ...] = (0,),
             extra: tuple[str, ...] = ()) -> dict[str, Any]:
    elapsed, rss, out = timed(
        [sys.executable, "-m", "device_direct", "manager", "scan", *targets, "--snmp-port",
         str(port), "--timeout", str(TIMEOUT_S), "--retries", str(RETRIES), "--json",
         "--concurrency", "32", *extra], ok=ok, cwd=ROOT)
    doc: dict[str, Any] = json.loads(out)
    doc["wall_s"], doc["rss_kib"] = elapsed, rss
    return doc


_HLAPI_SILENT = """
import asyncio, sys, time
from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, ObjectIdentity,
    ObjectType, SnmpEngine, UdpTransportTarget, get_cmd)
async def main(port, timeout, retries, hosts):
    engine = SnmpEngine()
    async def one(host):
        target = await UdpTransportTarget.create((host, port), timeout=timeout,
                                                 retries=retries)
        return await get_cmd(engine, CommunityData("public"), target, ContextData(),
                             ObjectType(ObjectIdentity("1.3.6.1.2.1.1.2.0")))
    t0 = time.perf_counter()
    got = await asyncio.gather(*(one(h) for h in hosts))
    print(time.perf_counter() - t0, sum(1 for g in got if g[0]))
    engine.close_dispatcher()
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
"""


def hlapi_silent(hosts: list[str], port: int) -> float:
    """pysnmp's high-level GET to every silent address at once; wall seconds."""
    out = subprocess.run([sys.executable, "-c", _HLAPI_SILENT, str(port), str(TIMEOUT_S),
                          str(RETRIES), *hosts], capture_output=True, text=True, check=False,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"pysnmp hlapi baseline failed: {out.stderr[-800:]}")
    elapsed, timed_out = out.stdout.split()
    if int(timed_out) != len(hosts):
        raise SystemExit(f"hlapi baseline: {timed_out} of {len(hosts)} timed out")
    return float(elapsed)


def _xargs(lines: str) -> tuple[float, int, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write(lines)
        f.flush()
        with open(f.name, "rb") as stdin:
            t0 = time.perf_counter()
            out = subprocess.run(
                ["xargs", "-P", "16", "-L", "1", "snmpbulkwalk", "-v2c", "-c", "public",
                 "-On", "-m", "", "-Cr64", "-t", f"{TIMEOUT_S:g}", "-r", str(RETRIES)],
                stdin=stdin, capture_output=True, check=False)
            elapsed = time.perf_counter() - t0
    if out.returncode not in (0, 123):
        raise SystemExit(f"xargs snmpbulkwalk failed: {out.stderr[-800:]!r}")
    oids = sum(1 for line in out.stdout.splitlines() if line.startswith(b"."))
    return elapsed, 0, oids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--printers", type=int, default=250)
    ap.add_argument("--silent", type=int, default=250)
    ap.add_argument("--big", type=int, default=2000, help="printers in scan (b); 0 skips it")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only-big", action="store_true", help="run scan (b) only")
    args = ap.parse_args()
    if shutil.which("snmpbulkwalk") is None or shutil.which("xargs") is None:
        raise SystemExit("needs snmpbulkwalk (Debian package 'snmp') and xargs")

    result: dict[str, Any] = {}
    if not args.only_big:
        result = run_a(args)
    if args.big:
        result |= run_b(args, result.get("peak_rss_mib"))
    print(json.dumps(result))


def run_a(args: argparse.Namespace) -> dict[str, Any]:
    """(a): our scan against net-snmp on the same printers; returns the figures."""
    lan, info = start_lan(args.printers, args.silent, "127.0.16.0/23")
    try:
        port = info["snmp_port"]
        printers = [h["address"] for h in info["hosts"] if h["kind"] == "printer"]
        everything = [h["address"] for h in info["hosts"]]
        ours: list[dict[str, Any]] = []
        base: list[tuple[float, int]] = []
        for r in range(args.rounds):
            doc = our_scan(everything, port)
            found = len(doc["printers"])
            if found != len(printers) or doc["errors"]:
                raise SystemExit(f"our scan found {found} printers, errors {doc['errors'][:3]}")
            ours.append(doc)
            elapsed, _, oids = _xargs("".join(f"{a}:{port} {format_oid(s)}\n"
                                              for a in printers for s in BASELINE_SUBTREES))
            base.append((elapsed, oids))
            print(f"round {r + 1}: ours {doc['wall_s']:.2f} s (probe {doc['probe_s']:.2f} s, "
                  f"read {doc['read_s']:.2f} s, {doc['snmp_requests']} requests); "
                  f"net-snmp {elapsed:.2f} s ({oids} OIDs)", flush=True)
        silent = [h["address"] for h in info["hosts"] if h["kind"] == "silent"]
        alone_runs: list[dict[str, Any]] = []
        hlapi_runs: list[float] = []
        for _ in range(args.rounds if silent else 0):
            alone_runs.append(our_scan(silent, port, ok=(1,)))
            hlapi_runs.append(hlapi_silent(silent, port))
    finally:
        stop(lan)
    read_s = statistics.median(d["read_s"] for d in ours)
    wall_s = statistics.median(d["wall_s"] for d in ours)
    probe_s = statistics.median(d["probe_s"] for d in ours)
    net_s = statistics.median(b[0] for b in base)
    rss = statistics.median(d["rss_kib"] for d in ours)
    timeout_round = TIMEOUT_S * (RETRIES + 1)
    silent_s = statistics.median(d["probe_s"] for d in alone_runs) if alone_runs else 0.0
    hlapi_s = statistics.median(hlapi_runs) if hlapi_runs else 0.0
    if alone_runs:
        runs = ", ".join(f"{d['probe_s']:.2f}" for d in alone_runs)
        print(f"the {len(silent)} silent addresses alone: our probe phase {silent_s:.2f} s "
              f"(runs {runs}), one timeout "
              f"round {timeout_round:.1f} s (ratio {silent_s / timeout_round:.2f}); pysnmp "
              f"hlapi get_cmd to each at once {hlapi_s:.2f} s "
              f"(runs {', '.join(f'{x:.2f}' for x in hlapi_runs)})")
    print(f"(a) {args.printers} printers + {args.silent} silent: our scan {wall_s:.2f} s "
          f"(read phase {read_s:.2f} s, probe phase {probe_s:.2f} s against one timeout "
          f"round of {timeout_round:.1f} s); net-snmp snmpbulkwalk x16 of the same subtrees "
          f"on the printers only {net_s:.2f} s; ratio read/net-snmp {read_s / net_s:.2f}; "
          f"manager peak RSS {rss / 1024:.1f} MiB")
    result: dict[str, Any] = {
        "printers": args.printers, "silent": args.silent, "scan_s": round(wall_s, 2),
        "read_s": round(read_s, 2), "probe_s": round(probe_s, 2),
        "timeout_round_s": timeout_round, "silent_only_probe_s": round(silent_s, 2),
        "silent_vs_timeout_round": round(silent_s / timeout_round, 3),
        "silent_pysnmp_hlapi_s": round(hlapi_s, 2),
        "netsnmp_s": round(net_s, 2),
        "ratio_vs_netsnmp": round(read_s / net_s, 3),
        "kib_per_printer": round(rss / args.printers, 1), "peak_rss_mib": round(rss / 1024, 1),
        "rounds": args.rounds}
    return result


def run_b(args: argparse.Namespace, small_rss_mib: float | None) -> dict[str, Any]:
    """(b): one scan of ``args.big`` printers in two LAN processes; time and peak RSS."""
    result: dict[str, Any] = {}
    if args.big:
        half = args.big // 2
        lans = [start_lan(half, 0, "127.18.0.0/20"), start_lan(args.big - half, 0,
                                                                 "127.19.0.0/20")]
        try:
            targets = [f"{h['address']}:{i['snmp_port']}" for _, i in lans for h in i["hosts"]]
            path = Path(tempfile.mkstemp(suffix=".txt")[1])
            path.write_text("\n".join(targets) + "\n")
            # Two LAN processes answer for 2,000 printers from two shared cores, so the
            # probes go 100 at a time with a longer timeout (real printers each have
            # their own CPU; there is no silent address in this scan).
            doc = our_scan([f"@{path}"], 161, extra=(
                "--probe-window", "100", "--timeout", "15", "--retries", "2",
                "--concurrency", "16"), ok=(0, 1))
            path.unlink()
        finally:
            for proc, _ in lans:
                stop(proc)
        found = len(doc["printers"])
        slow = (" (the emulated LAN's two processes did not answer them in time)"
                if doc["no_answer"] else "")
        print(f"(b) {args.big} printers: found {found}, {doc['no_answer']} without answer"
              f"{slow}, {len(doc['errors'])} errors; scan {doc['wall_s']:.1f} s, "
              f"{doc['snmp_requests']} requests, manager peak RSS "
              f"{doc['rss_kib'] / 1024:.1f} MiB")
        if small_rss_mib is not None:
            # what each more printer costs the manager, between scan (a) and scan (b)
            result["kib_per_printer"] = round(
                (doc["rss_kib"] - small_rss_mib * 1024) / (args.big - args.printers), 1)
        result |= {"big_printers": args.big, "big_found": found,
                   "big_no_answer": doc["no_answer"], "big_scan_s": round(doc["wall_s"], 1),
                   "big_errors": len(doc["errors"]),
                   "big_peak_rss_mib": round(doc["rss_kib"] / 1024, 1)}
    return result


if __name__ == "__main__":
    main()
