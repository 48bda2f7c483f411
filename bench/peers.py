"""What the benchmarks measure against: the reference server in its own process, and
the floor TLS itself sets (``openssl s_time -new`` handshakes per second); and how they
read the CPU the processes they start have used.

Shared by the fleet and server benchmarks; not a benchmark.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def launch_server(state: Path, workers: int = 1, loop: str | None = None,
                  tree: Path = ROOT) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """The reference server on 127.0.0.1, a free port, state in ``state``, ``workers``
    processes, on event loop ``loop`` (None: the CLI's default), the code of checkout
    ``tree`` (default this one); with the JSON line it prints once it listens."""
    command = [sys.executable, "-m", "emulator.server.cli", "server", "--state-dir",
               str(state), "run", "--port", "0"]
    if workers != 1:
        command += ["--workers", str(workers)]
    if loop is not None:
        command += ["--loop", loop]
    proc = subprocess.Popen(command, cwd=tree, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the reference server did not start")
    info: dict[str, object] = json.loads(line)
    return proc, info


def start_server(state: Path, workers: int = 1, loop: str | None = None,
                 tree: Path = ROOT) -> tuple[subprocess.Popen[str], int]:
    """:func:`launch_server`, with the port it listens on."""
    proc, info = launch_server(state, workers, loop, tree)
    return proc, int(str(info["port"]))


@dataclass(frozen=True, slots=True)
class HandshakeRun:
    """One ``openssl s_time -new`` run: its rate, and the CPU each side spent on it.

    s_time makes one connection at a time, so its rate is one over the sum of its own CPU
    per handshake, the server's and the wake-ups between them: not the server's
    capacity (the server sat about half idle in the runs of 2026-12-07)."""

    per_s: float  # new full handshakes per second
    connections: int
    client_cpu_ms: float  # openssl's own CPU per handshake (user + system)
    server_cpu_ms: float | None  # the server's, when its pid was given
    server_busy: float | None  # the server's share of a core over the run


def openssl_run(port: int, seconds: int, server_pid: int | None = None,
                device: tuple[Path, Path, Path] | None = None) -> HandshakeRun:
    """``openssl s_time -new`` against 127.0.0.1:``port`` for ``seconds``; the server's
    CPU is read from /proc when ``server_pid`` (it and its workers) is given. ``device``
    (certificate, key, CA bundle): the handshake a device makes, with its client
    certificate and the server's chain verified (``-cert -key -CAfile -verify``)."""
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not installed (apt-get install openssl)")
    extra: list[str] = []
    if device is not None:
        cert, key, ca = device
        extra = ["-cert", str(cert), "-key", str(key), "-CAfile", str(ca), "-verify", "2"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0 = tree_cpu_s(server_pid) if server_pid is not None else 0.0
    started = time.perf_counter()
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
         *extra], capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    wall = time.perf_counter() - started
    server = tree_cpu_s(server_pid) - server0 if server_pid is not None else None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"(\d+) connections in (\d+(?:\.\d+)?) real seconds", out)
    if m is None:
        raise SystemExit(f"cannot read openssl s_time output:\n{out}")
    connections = int(m.group(1))
    client = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    per = 1000 / max(connections, 1)
    return HandshakeRun(
        per_s=connections / float(m.group(2)), connections=connections,
        client_cpu_ms=client * per, server_cpu_ms=None if server is None else server * per,
        server_busy=None if server is None else server / wall)


def openssl_handshakes(port: int, seconds: int) -> float:
    """New full handshakes per second against 127.0.0.1:``port`` for ``seconds``."""
    return openssl_run(port, seconds).per_s


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and their live descendants (``/proc/<pid>/task/<pid>/children``)."""
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds used so far by ``root`` and its live descendants (a
    server and its workers)."""
    total = 0.0
    for pid in process_tree([root]):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (and theirs)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime
