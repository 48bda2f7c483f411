"""100,000 printers x 1 day on one machine: wall time, device-days/s, peak RSS per process.

One run, all on this machine:

(a) the reference server in its own processes (``server run --workers W``, default 2),
    state in a temporary directory (``/dev/shm`` when writable); one registration key
    per device minted by its CLI before the clock starts;
(b) ``python -m emulator fleet --devices N --days 1 --processes 2`` against it, as an
    operator would run it (``--server``, ``--ca``, ``--key-file``, ``--firmware-key``):
    every device makes its own key, registers with a CSR, gets its certificate, then
    makes its daily upload, action poll and firmware check on a new TLS connection.
    All devices upload in one minute of virtual time (``02:00-02:01`` UTC, as
    fleet_bench.py does), so the fleet keeps its connections busy instead of measuring
    the virtual clock's serialisation of a spread-out window;
(c) baselines in the same run: ``openssl s_time -new`` against the same server before
    and after (b), and the same fleet command with ``--devices`` / 100 (1,000 by
    default) just before (b): the device-days/s a small fleet makes, which the big one
    should keep (ratio big/small). The fleet command's own start-up (its interpreter and
    each shard's, the imports) weighs a hundred times more per device in the small
    fleet, so a 2-device fleet run first measures it (wall and CPU), and the ratios are
    of the figures less it.

Each fleet's CPU is measured too, so that a slow-down at scale shows on its side: the
fleet's (the CLI and its shards, all reaped: ``RUSAGE_CHILDREN`` over the run) and the
server's (its parent and workers, from ``/proc``), each per device-day.

Peak RSS is each process's own high-water mark (``VmHWM`` in ``/proc/PID/status``),
sampled every half second for the fleet parent, its shard processes and the server
workers, so a process that exits keeps the last value read. The last line is one JSON
object.

    .venv/bin/python bench/fleet_100k.py [--devices 100000] [--processes 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from peers import (  # bench/, beside this script
    children_cpu_s,
    launch_server,
    openssl_handshakes,
    process_tree,
    tree_cpu_s,
)

ROOT = Path(__file__).resolve().parents[1]


def tmp_base() -> str | None:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def server_cli(state: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "emulator.server.cli", "server", "--state-dir", str(state),
         *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


class PeakRss:
    """The VmHWM (KiB) of a process tree's members, sampled until stopped."""

    def __init__(self, roots: list[int], names: dict[int, str]) -> None:
        self.roots = roots
        self.names = names  # pid -> label, filled in as processes appear
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for pid in process_tree(self.roots):
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                    status = fh.read()
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak[pid] = max(self.peak.get(pid, 0), int(line.split()[1]))
            if pid not in self.names:
                self.names[pid] = _label(cmd)


class Run(NamedTuple):
    """One fleet command: wall seconds, its report, peak RSS by process, and the CPU
    seconds the fleet's processes and the server's spent meanwhile."""

    wall: float
    report: dict[str, Any]
    peaks: list[tuple[str, int, int]]
    fleet_cpu: float
    server_cpu: float


def _label(cmd: str) -> str:
    if "--shard" in cmd:
        return "fleet shard " + cmd.split("--shard ", 1)[1].split()[0]
    if "--listen-fd" in cmd:
        return "server worker"
    if "emulator.server.cli" in cmd:
        return "server parent"
    if "emulator fleet" in cmd:
        return "fleet parent"
    return cmd[:40]


def run_fleet(target: dict[str, str], work: Path, devices: int, processes: int,
              concurrency: int, seed: int, server_pids: list[int]) -> Run:
    """The fleet CLI for ``devices`` x 1 day."""
    report = work / "report.json"
    cmd = [sys.executable, "-m", "emulator", "fleet", "--devices", str(devices), "--days", "1",
           "--processes", str(processes), "--seed", str(seed),
           "--upload-window", "02:00-02:01", "--zones", "UTC",
           "--concurrency", str(concurrency), "--server", target["url"], "--ca", target["ca"],
           "--server-name", "localhost", "--key-file", target["keys"],
           "--firmware-key", target["firmware_key"], "--work-dir", str(work / "fleet"),
           "--report", str(report), "--no-progress"]
    started, fleet0 = time.perf_counter(), children_cpu_s()
    server0 = sum(tree_cpu_s(pid) for pid in server_pids)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    names: dict[int, str] = {}
    try:
        with PeakRss([proc.pid, *server_pids], names) as rss:
            _, err = proc.communicate()
            rss.sample()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    wall = time.perf_counter() - started
    fleet_cpu = children_cpu_s() - fleet0
    server_cpu = sum(tree_cpu_s(pid) for pid in server_pids) - server0
    if not report.exists():
        raise SystemExit(f"the fleet wrote no report (exit {proc.returncode}):\n{err[-3000:]}")
    peaks = sorted(((names.get(pid, "?"), pid, kib) for pid, kib in rss.peak.items()),
                   key=lambda t: (t[0], t[1]))
    return Run(wall, json.loads(report.read_text()), peaks, fleet_cpu, server_cpu)


def mint(state: Path, work: Path, devices: int) -> dict[str, str]:
    keys = server_cli(state, "make-key", "--count", str(devices), "--ttl", str(7 * 86400))
    (work / "keys.txt").write_text(keys)
    fw = work / "firmware-key.pem"
    fw.write_text(server_cli(state, "export-firmware-key"))
    return {"keys": str(work / "keys.txt"), "firmware_key": str(fw)}


STARTUP_DEVICES = 2  # the fleet that measures the command's start-up


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--processes", type=int, default=2, help="fleet shard processes")
    ap.add_argument("--workers", type=int, default=2, help="server processes")
    ap.add_argument("--concurrency", type=int, default=32, help="per shard process")
    ap.add_argument("--small", type=int, default=0,
                    help="devices of the same-run small fleet (default devices/100; "
                         "0 = that, -1 = skip)")
    ap.add_argument("--openssl-seconds", type=int, default=5)
    args = ap.parse_args()
    small = args.devices // 100 if args.small == 0 else args.small
    with tempfile.TemporaryDirectory(dir=tmp_base()) as tmp:
        state = Path(tmp) / "state"
        server_cli(state, "export-firmware-key")  # creates the state (PKI, schema)
        proc, info = launch_server(state, args.workers)
        server_pids = [proc.pid]
        try:
            base = {"url": f"https://127.0.0.1:{info['port']}/",
                    "ca": str(state / "pki" / "bundle.pem")}
            handshakes = [openssl_handshakes(int(str(info["port"])), args.openssl_seconds)]
            small_run = startup = None
            if small > 0:
                work = Path(tmp) / "startup"
                work.mkdir()
                target = {**base, **mint(state, work, STARTUP_DEVICES)}
                startup = run_fleet(target, work, STARTUP_DEVICES, args.processes,
                                    args.concurrency, 10, server_pids)
                work = Path(tmp) / "small"
                work.mkdir()
                target = {**base, **mint(state, work, small)}
                small_run = run_fleet(target, work, small, args.processes,
                                      args.concurrency, 11, server_pids)
            work = Path(tmp) / "big"
            work.mkdir()
            t0 = time.perf_counter()
            target = {**base, **mint(state, work, args.devices)}
            mint_s = time.perf_counter() - t0
            big = run_fleet(target, work, args.devices, args.processes,
                            args.concurrency, 12, server_pids)
            handshakes.append(openssl_handshakes(int(str(info["port"])), args.openssl_seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        db = sqlite3.connect(state / "server.sqlite3")
        stored = db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]
        db.close()
    wall, report, peaks = big.wall, big.report, big.peaks
    totals = report.get("totals", {})
    ok = bool(report.get("ok"))
    rate = args.devices / wall
    small_rate = small / small_run.wall if small_run is not None else None
    # The start-up's wall and fleet CPU, taken off both fleets' for the ratios.
    up_wall, up_cpu = (startup.wall, startup.fleet_cpu) if startup is not None else (0.0, 0.0)

    def net(run: Run, n: int) -> tuple[float, float, float]:
        """device-days/s, fleet and server CPU ms per device-day, less the start-up."""
        return (n / max(run.wall - up_wall, 1e-9), 1000 * (run.fleet_cpu - up_cpu) / n,
                1000 * run.server_cpu / n)

    big_ms = net(big, args.devices)
    hs = statistics.median(handshakes)
    print(f"fleet: {args.devices} devices x 1 day, --processes {args.processes}, against "
          f"server --workers {args.workers}: {wall:.1f} s wall (registration included), "
          f"{rate:.1f} device-days/s; expectations {'ok' if ok else 'FAILED'}")
    print(f"       keys minted before the clock started: {mint_s:.1f} s; uploads stored by "
          f"the server in all: {stored}; fleet totals: {json.dumps(totals)}")
    small_ms = None
    if startup is not None:
        print(f"       the fleet command's start-up ({STARTUP_DEVICES}-device fleet, same run): "
              f"{up_wall:.1f} s wall, {up_cpu:.1f} s CPU; less it: {big_ms[0]:.1f} "
              f"device-days/s")
    print(f"       CPU per device-day (registration included, less the start-up): the "
          f"fleet's processes {big_ms[1]:.2f} ms, the server's {big_ms[2]:.2f} ms")
    if small_run is not None and small_rate is not None:
        small_ms = net(small_run, small)
        print(f"small fleet, same run: {small} devices x 1 day: {small_rate:.1f} "
              f"device-days/s ({small_ms[0]:.1f} less the start-up); big/small "
              f"{big_ms[0] / small_ms[0]:.3f} less the start-up ({rate / small_rate:.3f} "
              f"with it); CPU per device-day: the fleet's {small_ms[1]:.2f} ms (big/small "
              f"{big_ms[1] / small_ms[1]:.3f}), the server's {small_ms[2]:.2f} ms "
              f"(big/small {big_ms[2] / small_ms[2]:.3f})")
    print(f"openssl s_time -new: {', '.join(f'{h:.1f}' for h in handshakes)} handshakes/s "
          f"(before, after); fleet/openssl {rate / hs:.3f}")
    print("peak RSS per process (VmHWM):")
    for label, pid, kib in peaks:
        print(f"  {label:<16} pid {pid:<8} {kib / 1024:8.1f} MiB")
    shard_peaks = [kib for label, _, kib in peaks if label.startswith("fleet shard")]
    print(json.dumps({
        "devices": args.devices, "days": 1, "processes": args.processes,
        "server_workers": args.workers, "wall_s": round(wall, 1),
        "device_days_per_s": round(rate, 1),
        "small_fleet_devices": small if small > 0 else None,
        "small_fleet_device_days_per_s": round(small_rate, 1) if small_rate else None,
        "ratio_vs_small_fleet_with_startup": round(rate / small_rate, 3) if small_rate else None,
        "ratio_vs_small_fleet": round(big_ms[0] / small_ms[0], 3) if small_ms else None,
        "startup_wall_s": round(up_wall, 2) if startup is not None else None,
        "startup_fleet_cpu_s": round(up_cpu, 2) if startup is not None else None,
        "fleet_cpu_ms_per_device_day": round(big_ms[1], 3),
        "server_cpu_ms_per_device_day": round(big_ms[2], 3),
        "small_fleet_fleet_cpu_ms_per_device_day": round(small_ms[1], 3) if small_ms else None,
        "small_fleet_server_cpu_ms_per_device_day": round(small_ms[2], 3) if small_ms else None,
        "openssl_handshakes_per_s": round(hs, 1),
        "ratio_vs_openssl": round(rate / hs, 3),
        "key_mint_s": round(mint_s, 1),
        "uploads_stored": stored,
        "peak_rss_kib_by_process": {f"{label} {pid}": kib for label, pid, kib in peaks},
        "peak_rss_kib_max_shard": max(shard_peaks) if shard_peaks else None,
        "fleet_ok": ok,
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
