"""Same-run A/B of the reference server's CPU: this checkout's server against another's.

Two servers run side by side, each in its own processes (``server run``, ``--workers``
each, default 1), each with its own registered devices: the baseline (commit ``--base``
taken out of this repository with ``git archive``, or the checkout ``--compare-with
TREE``) and this checkout's. One load generator (``upload_load.py``'s requests: blocking
sockets in threads, two processes) alternates its requests between the two, so both
servers see the same machine at the same moments; rounds alternate which comes first.
Per round, each server's CPU (all its processes, from /proc) per request that succeeded;
the figures are per-round ratios new / base and their median, beside each server's own
medians. On a shared machine this resolves a few percent where two separate runs of
``server_bench.py`` would not: an A/A control (``--compare-with`` this checkout) shows
the noise, about +-3-5% per round.

``--mode upload``: a new mTLS connection per upload (6-22 KiB zip, ``Connection:
close``), as ``server_bench.py`` (a). ``--mode day``: a device-day on one new connection,
the upload then ``GET actions`` and ``GET firmware``, as the fleet's agents do.
``--base-loop`` / ``--new-loop`` pass ``server run --loop`` (a checkout older than the
option takes none: leave ``--base-loop`` unset there).

    .venv/bin/python bench/server_ab.py [--base COMMIT | --compare-with TREE]
        [--mode upload|day] [--rounds 6] [--seconds 10] [--workers 1]
        [--base-loop L] [--new-loop L]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from fleet_bench import tmp_base  # bench/, beside this script
from server_bench import ROOT, Server, cpu_s
from upload_load import Device, build_payload, nvm_table, run_forked, upload_request

BASE_COMMIT = "46e9462"  # main before issue 23f's server work
Target = tuple[int, str, list[Device]]  # port, CA bundle, devices


def _answer(sock: ssl.SSLSocket, buf: bytes) -> tuple[int, bytes]:
    """One HTTP answer's status (0: the connection ended first); the bytes after it."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head[9:12]), rest[length:]


def _requests(mode: str, dev: Device, upload_id: str, body: bytes) -> list[tuple[bytes, int]]:
    """The requests of one connection, each with the status it must get."""
    upload = upload_request(dev.device_id, upload_id, body)
    if mode == "upload":
        return [(upload, 201)]
    base = f"/dd/v1/devices/{dev.device_id}"
    return [(upload.replace(b"Connection: close\r\n", b""), 201),
            (f"GET {base}/actions HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(), 200),
            (f"GET {base}/firmware?model=ColorMFP%20C8055&version=100.2.57 HTTP/1.1\r\n"
             f"Host: localhost\r\nConnection: close\r\n\r\n".encode(), 204)]


def _child(targets: list[Target], first_n: int, step: int, items: int, threads: int,
           seed: int, mode: str, barrier: object, seconds: float, out: object) -> None:
    """One load process: its requests built first, then sent until time, alternating."""
    rng = random.Random(seed)
    tables = [nvm_table(rng) for _ in range(16)]
    contexts: dict[tuple[int, str], ssl.SSLContext] = {}
    queue: list[tuple[int, int, ssl.SSLContext, list[tuple[bytes, int]]]] = []
    for k in range(items):
        n = first_n + k * step
        t = k % len(targets)
        port, ca, devices = targets[t]
        dev = devices[n % len(devices)]
        ctx = contexts.get((t, dev.serial))
        if ctx is None:
            ctx = contexts[(t, dev.serial)] = ssl.create_default_context(cafile=ca)
            ctx.load_cert_chain(dev.cert, dev.key)
        upload_id, body = build_payload(dev.serial, 1000 + n // len(devices), rng,
                                        tables[k % len(tables)])
        queue.append((t, port, ctx, _requests(mode, dev, upload_id, body)))
    lock = threading.Lock()
    ok, errors, nxt = [0] * len(targets), [0] * len(targets), [0]
    barrier.wait()  # type: ignore[attr-defined]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while True:
            with lock:
                if nxt[0] >= len(queue) or time.monotonic() >= deadline:
                    return
                t, port, ctx, requests = queue[nxt[0]]
                nxt[0] += 1
            good = True
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
                        ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    buf = b""
                    for request, want in requests:
                        tls.sendall(request)
                        status, buf = _answer(tls, buf)
                        good = good and status == want
            except OSError:
                good = False
            with lock:
                (ok if good else errors)[t] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    out.put((ok, errors))  # type: ignore[attr-defined]


def alternate(targets: list[Target], seconds: float, seed: int, mode: str,
              processes: int = 2, threads: int = 12) -> tuple[list[int], list[int]]:
    """Send for ``seconds``, alternating between ``targets``; successes and failures
    per target."""
    items = int(700 * seconds / processes)
    results = run_forked(
        _child, lambda p: (targets, p, processes, items, threads, seed + p, mode),
        processes, seconds)
    return ([sum(r[0][i] for r in results) for i in range(len(targets))],
            [sum(r[1][i] for r in results) for i in range(len(targets))])


def main() -> int:
    """Run the A/B and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE_COMMIT,
                    help="the baseline commit, from this repository (default %(default)s)")
    ap.add_argument("--compare-with", type=Path, metavar="TREE",
                    help="a checkout as the baseline instead of --base")
    ap.add_argument("--mode", choices=("upload", "day"), default="upload")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0, help="per round")
    ap.add_argument("--workers", type=int, default=1, help="processes per server")
    ap.add_argument("--devices", type=int, default=150, help="registered per server")
    ap.add_argument("--base-loop", help="server run --loop of the baseline")
    ap.add_argument("--new-loop", help="server run --loop of this checkout's server")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=tmp_base()) as tmp:
        base_tree = args.compare_with
        if base_tree is None:
            base_tree = Path(tmp) / "base-tree"
            base_tree.mkdir()
            archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
        base = Server(Path(tmp) / "base", args.workers, args.devices, args.base_loop,
                      base_tree.resolve())
        new = Server(Path(tmp) / "new", args.workers, args.devices, args.new_loop)
        servers = [base, new]
        ms: list[list[float]] = [[], []]
        ratios: list[float] = []
        errors = 0
        try:
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                before = [cpu_s(s.proc.pid) for s in servers]
                ok, err = alternate([(s.port, str(s.ca), s.devices) for s in order],
                                    args.seconds, 100 * r + 5, args.mode)
                if r % 2:
                    ok, err = ok[::-1], err[::-1]
                errors += sum(err)
                cost = [1000 * (cpu_s(s.proc.pid) - b) / max(o, 1)
                        for s, b, o in zip(servers, before, ok, strict=True)]
                for i in (0, 1):
                    ms[i].append(cost[i])
                ratios.append(cost[1] / cost[0])
                print(f"round {r}: base {cost[0]:.2f} ms ({ok[0]} ok, {err[0]} failed), "
                      f"new {cost[1]:.2f} ms ({ok[1]} ok, {err[1]} failed), "
                      f"new/base {ratios[-1]:.3f}", flush=True)
        finally:
            for s in servers:
                s.stop()
    what = "upload" if args.mode == "upload" else "device-day"
    label = str(args.compare_with) if args.compare_with else args.base
    print(f"server CPU per {what}, {args.rounds} rounds: base ({label}) median "
          f"{statistics.median(ms[0]):.2f} ms, new median {statistics.median(ms[1]):.2f} ms; "
          f"new/base per round median {statistics.median(ratios):.3f} "
          f"({', '.join(f'{x:.3f}' for x in ratios)}); {errors} failed")
    print(json.dumps({
        "mode": args.mode, "base": label, "workers": args.workers,
        "base_loop": args.base_loop, "new_loop": args.new_loop,
        "base_cpu_ms_per_item": round(statistics.median(ms[0]), 3),
        "new_cpu_ms_per_item": round(statistics.median(ms[1]), 3),
        "ratio_new_vs_base": round(statistics.median(ratios), 3),
        "ratio_new_vs_base_runs": [round(x, 3) for x in ratios],
        "failed": errors,
    }))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
