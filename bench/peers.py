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


def openssl_handshakes(port: int, seconds: int) -> float:
    """New full handshakes per second against 127.0.0.1:``port`` for ``seconds``."""
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not installed (apt-get install openssl)")
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
        capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    m = re.search(r"(\d+) connections in (\d+(?:\.\d+)?) real seconds", out)
    if m is None:
        raise SystemExit(f"cannot read openssl s_time output:\n{out}")
    return int(m.group(1)) / float(m.group(2))


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
