"""Run a command whose standard output is a pipe nobody reads any more (`... | head -0`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_with_stdout_closed(argv: list[str], timeout: float = 120
                           ) -> subprocess.CompletedProcess[str]:
    """``argv`` with stdout a pipe whose read end is closed before it starts: its first
    write (or flush) fails with EPIPE, every time, with no race against a reader."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
