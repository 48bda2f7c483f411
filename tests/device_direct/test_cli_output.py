"""``device-direct`` exits quietly when the reader of its output goes away (issue 17.3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device_direct.__main__ import EXIT_OUTPUT_CLOSED


def run_with_closed_stdout(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with its stdout a pipe whose reader has already gone (``| head -0``)."""
    proc = subprocess.Popen([sys.executable, "-m", "device_direct", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter is even up: every write fails
    err = proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=60), b"", err)


@pytest.mark.parametrize("command", ["help", "status"])
def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path, command: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[server]\nurl = "https://dd.example.com"\n\n'
                      f'[device]\ndata_dir = "{tmp_path / "data"}"\n')
    args = ["--help"] if command == "help" else ["status", "--config", str(config)]
    done = run_with_closed_stdout(*args)
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr
    # argparse swallows the failed write of --help itself (and exits 0).
    assert done.returncode == (EXIT_OUTPUT_CLOSED if command == "status" else 0)
