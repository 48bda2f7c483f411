"""Reference server throughput: stored uploads/s beside the fleet's device-days/s.

One run, all on this machine, the server in its own processes (``python -m
emulator.server.cli server run --workers W``, default 2) with a few hundred registered
devices:

(a) the server's stored uploads per second: realistic 6-22 KiB payload zips, each on a
    NEW TLS connection with the device's client certificate (as devices do), from a
    load generator light enough not to be what limits (``upload_load.py``: blocking
    sockets in threads, two processes; the handshake runs in C). Every upload is
    checked (hash, zip, XSD, device fields) and stored in SQLite before its 201. The
    server's CPU time per stored upload (all its processes) is printed beside it: on a
    shared machine it is steadier than a rate. So is the load generator's CPU per
    upload: on 2 cores the two share the machine, and the rate is about
    cores / (server + load generator CPU per upload). The server's capacity, cores /
    its CPU per upload, is what it would store with the machine to itself;
(a') the same load against the same server with ``--workers 1``: what the workers buy;
(b) the fleet's device-days/s against the same server (the ``--workers W`` one):
    ``fleet_bench.py``'s own fleet functions, a 1-day and an N-day fleet of the same
    size, steady state = the extra days / the extra time (registration and set-up
    excluded, which makes the fleet's figure higher and the goal stricter);
(b') the same fleet against (a')'s one-worker server: on 2 cores a second worker takes
    CPU from the fleet, so the fleet is faster there. The goal takes the faster of (b)
    and (b');
(c) ``openssl s_time -new``: full TLS handshakes per second against the same port.

(a), (a'), (b), (c) are taken ``--repeats`` times (3), interleaved, and their medians
compared. Goal (issue 23): (a) >= 2 x the faster of (b) and (b'). The last line is one JSON object.

    .venv/bin/python bench/server_bench.py [--workers 2] [--seconds 10] [--repeats 3]
        [--loop asyncio|uvloop|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from fleet_bench import fleet_run, fleet_target, tmp_base  # bench/, beside this script
from peers import openssl_handshakes, start_server, tree_cpu_s
from upload_load import Device, LoadResult, run_load

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.server.pki import make_csr  # noqa: E402

cpu_s = tree_cpu_s  # the server and its workers (server_ab.py imports it from here)


async def register_all(base: str, ca: Path, keys: list[str], work: Path) -> list[Device]:
    devices = []
    trust = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession() as s:
        for i, key in enumerate(keys):
            serial = f"BENCH{i:05d}"
            key_pem, csr = make_csr(serial)
            body = {"serial": serial, "model": "ColorMFP C8055", "mac": "00:00:aa:00:00:01",
                    "firmware": {"system": "1.0"}, "registration_key": key,
                    "csr": csr.decode()}
            async with s.post(base + "/dd/v1/register", json=body, ssl=trust) as r:
                reg = await r.json()
                if r.status != 201:
                    raise SystemExit(f"registration failed: {reg}")
            (work / f"{serial}.crt").write_text(reg["certificate"])
            (work / f"{serial}.key").write_bytes(key_pem)
            devices.append(Device(serial, reg["device_id"], str(work / f"{serial}.crt"),
                                  str(work / f"{serial}.key")))
    return devices


class Server:
    """A server under test: its process, port, registered devices."""

    def __init__(self, root: Path, workers: int, devices: int,
                 loop: str | None = None, tree: Path = ROOT) -> None:
        self.workers = workers
        self.state, work = root / "state", root / "devices"
        work.mkdir(parents=True)
        keys = subprocess.run(
            [sys.executable, "-m", "emulator.server.cli", "server", "--state-dir",
             str(self.state), "make-key", "--count", str(devices)],
            cwd=tree, check=True, capture_output=True, text=True).stdout.split()
        self.proc, self.port = start_server(self.state, workers, loop, tree)
        self.ca = self.state / "pki" / "bundle.pem"
        self.devices = asyncio.run(register_all(f"https://localhost:{self.port}", self.ca,
                                                keys, work))

    def load(self, seconds: float, seed: int) -> tuple[LoadResult, float]:
        """Upload for ``seconds``; the result and the server's CPU ms per stored upload."""
        before = cpu_s(self.proc.pid)
        result = run_load(self.port, self.ca, self.devices, seconds=seconds, seed=seed)
        return result, 1000 * (cpu_s(self.proc.pid) - before) / max(result.stored, 1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def client_ms(result: LoadResult) -> float:
    """The load generator's CPU ms per stored upload."""
    return 1000 * result.client_cpu_s / max(result.stored, 1)


def fleet_steady(server: Server, work: Path, devices: int, days: int, run: int) -> float:
    """Device-days/s of a fleet against ``server`` past its first day (set-up excluded)."""
    t0 = time.perf_counter()
    fleet_run(fleet_target(server.port, server.state, devices), work / f"one-{run}",
              devices, 1, 32, seed=100 + run)
    one_day = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, ok = fleet_run(fleet_target(server.port, server.state, devices), work / f"n-{run}",
                         devices, days, 32, seed=200 + run)
    n_days = time.perf_counter() - t0
    if not ok:
        raise SystemExit("the fleet's expectations failed")
    return devices * (days - 1) / max(n_days - one_day, 1e-6)


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="server processes (a), (b), (c)")
    ap.add_argument("--devices", type=int, default=300, help="registered for the load")
    ap.add_argument("--seconds", type=float, default=10.0, help="per load round")
    ap.add_argument("--fleet-devices", type=int, default=300)
    ap.add_argument("--fleet-days", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--openssl-seconds", type=int, default=5)
    ap.add_argument("--loop", choices=("auto", "uvloop", "asyncio"),
                    help="the servers' event loop (server run --loop; default: its default)")
    args = ap.parse_args()
    loads: list[tuple[LoadResult, float]] = []
    single: list[tuple[LoadResult, float]] = []
    fleet: list[float] = []
    fleet_one: list[float] = []  # the same fleet against the one-worker server
    handshakes: list[float] = []
    # In /dev/shm where there is one, as fleet_bench.py and `fleet` by default: a fleet
    # on a disk waits on real fsyncs and is much slower, which would flatter the server.
    with tempfile.TemporaryDirectory(dir=tmp_base()) as tmp:
        main_server = Server(Path(tmp) / "w", args.workers, args.devices, args.loop)
        one = (Server(Path(tmp) / "one", 1, args.devices, args.loop)
               if args.workers != 1 else None)
        try:
            for run in range(args.repeats):
                loads.append(main_server.load(args.seconds, seed=1000 * run + 1))
                if one is not None:
                    single.append(one.load(args.seconds, seed=1000 * run + 2))
                fleet.append(fleet_steady(main_server, Path(tmp) / "fleet",
                                          args.fleet_devices, args.fleet_days, run))
                if one is not None:
                    # On 2 cores a second worker takes CPU from the fleet: its rate
                    # against one worker is the faster one, and the stricter for the goal.
                    fleet_one.append(fleet_steady(one, Path(tmp) / "fleet-one",
                                                  args.fleet_devices, args.fleet_days, run))
                handshakes.append(openssl_handshakes(main_server.port, args.openssl_seconds))
        finally:
            main_server.stop()
            if one is not None:
                one.stop()
    rate = statistics.median(r.per_s for r, _ in loads)
    ms = statistics.median(m for _, m in loads)
    errors = sum(r.errors for r, _ in loads) + sum(r.errors for r, _ in single)
    fleet_main = statistics.median(fleet)
    fleet_single = statistics.median(fleet_one) if fleet_one else None
    # The goal is against the fleet's fastest rate here, whichever server gave it.
    fleet_rate = max(fleet_main, fleet_single or 0.0)
    hs = statistics.median(handshakes)
    sizes = loads[0][0].sizes
    client = statistics.median(client_ms(r) for r, _ in loads)
    cores = os.cpu_count() or 1
    capacity = 1000 * cores / ms  # uploads/s were the server's CPU per upload all it used
    share = statistics.median(m / (m + client_ms(r)) for r, m in loads)
    print(f"devices registered:  {args.devices}; zip sizes {sizes[0]}..{sizes[1]} bytes; "
          f"new TLS connection per upload; {errors} errors")
    print(f"(a)  server --workers {args.workers}: median {rate:.1f} stored uploads/s "
          f"({', '.join(f'{r.per_s:.1f}' for r, _ in loads)}), server CPU "
          f"{ms:.2f} ms per upload ({', '.join(f'{m:.2f}' for _, m in loads)})")
    print(f"     load generator CPU {client:.2f} ms per upload "
          f"({', '.join(f'{client_ms(r):.2f}' for r, _ in loads)}): the server had "
          f"{100 * share:.0f}% of the CPU the two used; its capacity with the "
          f"{cores} cores to itself, {cores} x 1000 / {ms:.2f} ms: {capacity:.1f} uploads/s")
    one_rate = one_ms = None
    if single:
        one_rate = statistics.median(r.per_s for r, _ in single)
        one_ms = statistics.median(m for _, m in single)
        print(f"(a') server --workers 1: median {one_rate:.1f} stored uploads/s "
              f"({', '.join(f'{r.per_s:.1f}' for r, _ in single)}), server CPU "
              f"{one_ms:.2f} ms per upload ({', '.join(f'{m:.2f}' for _, m in single)}); "
              f"workers {args.workers}/1: {rate / one_rate:.2f}x")
    print(f"(b)  fleet, {args.fleet_devices} devices, steady state (days 2..{args.fleet_days}) "
          f"against (a)'s server: median {fleet_main:.1f} device-days/s "
          f"({', '.join(f'{f:.1f}' for f in fleet)})")
    if fleet_single is not None:
        print(f"(b') the same fleet against (a')'s one-worker server: median "
              f"{fleet_single:.1f} device-days/s ({', '.join(f'{f:.1f}' for f in fleet_one)}); "
              f"the goal takes the faster, {fleet_rate:.1f}")
    print(f"(c)  openssl s_time -new: median {hs:.1f} handshakes/s "
          f"({', '.join(f'{h:.1f}' for h in handshakes)})")
    print(f"ratios: server uploads / fleet device-days {rate / fleet_rate:.2f} (goal >= 2), "
          f"server uploads / openssl handshakes {rate / hs:.3f}; server capacity / fleet "
          f"device-days {capacity / fleet_rate:.2f}")
    need = 1000 * cores / (2 * fleet_rate)
    print(f"what the goal needs: {2 * fleet_rate:.1f} stored uploads/s, so the server and its "
          f"load generator at <= {need:.2f} ms CPU per upload together on the {cores} cores "
          f"(now {ms:.2f} + {client:.2f}; each upload is a new full handshake on both sides)")
    print(json.dumps({
        "server_workers": args.workers,
        "server_loop": args.loop or "default",
        "uploads_per_s": round(rate, 1),
        "uploads_per_s_runs": [round(r.per_s, 1) for r, _ in loads],
        "server_cpu_ms_per_upload": round(ms, 2),
        "server_cpu_ms_per_upload_runs": [round(m, 2) for _, m in loads],
        "load_generator_cpu_ms_per_upload": round(client, 2),
        "server_cpu_share_of_load": round(share, 3),
        "server_capacity_uploads_per_s": round(capacity, 1),
        "uploads_per_s_one_worker": round(one_rate, 1) if one_rate else None,
        "server_cpu_ms_per_upload_one_worker": round(one_ms, 2) if one_ms else None,
        "fleet_device_days_per_s": round(fleet_rate, 1),
        "fleet_device_days_per_s_runs": [round(f, 1) for f in fleet],
        "fleet_device_days_per_s_vs_main_server": round(fleet_main, 1),
        "fleet_device_days_per_s_vs_one_worker": (
            round(fleet_single, 1) if fleet_single is not None else None),
        "fleet_device_days_per_s_vs_one_worker_runs": [round(f, 1) for f in fleet_one],
        "openssl_handshakes_per_s": round(hs, 1),
        "ratio_uploads_vs_fleet": round(rate / fleet_rate, 3),
        "ratio_uploads_vs_openssl": round(rate / hs, 3),
        "ratio_capacity_vs_fleet": round(capacity / fleet_rate, 3),
        "goal_cpu_ms_per_upload_server_and_load": round(need, 2),
        "errors": errors,
    }))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
