"""Every emulator command exits quietly (141, nothing on stderr) when its reader is gone.

``device-ctl ... state`` is checked against a running device in test_device_control.py.
(``--help`` needs nothing: argparse already ignores a failed write of its help.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from closed_pipe import run_with_stdout_closed

from emulator.closed_output import EXIT_OUTPUT_CLOSED


def test_model_demo_into_a_closed_pipe() -> None:
    done = run_with_stdout_closed([sys.executable, "-m", "emulator", "model-demo",
                                   "--days", "1"])
    assert (done.returncode, done.stderr) == (EXIT_OUTPUT_CLOSED, "")


def test_server_commands_into_a_closed_pipe(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    # make-key first: it makes the state that devices reads (and refuses to make)
    for argv in (["-m", "emulator.server.cli", "server", "--state-dir", state, "make-key"],
                 ["-m", "emulator", "server", "--state-dir", state, "devices"]):
        done = run_with_stdout_closed([sys.executable, *argv])
        assert (done.returncode, done.stderr) == (EXIT_OUTPUT_CLOSED, ""), argv


def test_device_stops_and_exits_quietly_when_nobody_reads_its_ports(tmp_path: Path) -> None:
    done = run_with_stdout_closed([sys.executable, "-m", "emulator.device_runner",
                                   "--no-agent", "--state-dir", str(tmp_path)])
    assert done.returncode == EXIT_OUTPUT_CLOSED
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_the_fleet_runner_on_its_own_into_a_closed_pipe(tmp_path: Path) -> None:
    done = run_with_stdout_closed([sys.executable, "-m", "emulator.fleet", "--devices", "2",
                                   "--days", "1", "--no-progress",
                                   "--work-dir", str(tmp_path / "work")])
    assert done.returncode == EXIT_OUTPUT_CLOSED
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
