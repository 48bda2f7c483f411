"""Scratch directories: owned ones are swept once their process is gone, others never."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from emulator.fleet.scratch import (
    OWNER_FILE,
    Owner,
    alive,
    scratch_dir,
    sweep_orphans,
    this_process,
)


def _dir(base: Path, name: str, owner: str | None) -> Path:
    path = base / name
    path.mkdir()
    (path / "outbox.bin").write_bytes(b"device data")
    if owner is not None:
        (path / OWNER_FILE).write_text(owner, encoding="ascii")
    return path


def _ended_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_only_directories_whose_owner_has_ended_are_removed(tmp_path: Path) -> None:
    me = this_process()
    host = socket.gethostname()
    ended = _dir(tmp_path, "dd-x-ended", Owner(host, _ended_pid(), "1").text())
    reused = _dir(tmp_path, "dd-x-reused", Owner(host, me.pid, "1").text())  # pid reused
    mine = _dir(tmp_path, "dd-x-mine", me.text())
    elsewhere = _dir(tmp_path, "dd-x-elsewhere", Owner("another-host", 1, "").text())
    unowned = _dir(tmp_path, "dd-x-unowned", None)
    garbage = _dir(tmp_path, "dd-x-garbage", "not an owner line")
    other_prefix = _dir(tmp_path, "dd-y-ended", Owner(host, _ended_pid(), "").text())

    removed = sweep_orphans("dd-x-", tmp_path)

    assert sorted(removed) == sorted([ended, reused])
    assert not ended.exists() and not reused.exists()
    for kept in (mine, elsewhere, unowned, garbage, other_prefix):
        assert (kept / "outbox.bin").read_bytes() == b"device data"


def test_a_killed_process_not_yet_reaped_counts_as_ended(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        started = _proc_start(child.pid)
        deadline = time.monotonic() + 30
        while _proc_state(child.pid) != "Z":  # ended; not waited for: a zombie
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.01)
        left = _dir(tmp_path, "dd-x-zombie", Owner(socket.gethostname(), child.pid,
                                                   started).text())
        assert sweep_orphans("dd-x-", tmp_path) == [left]
    finally:
        child.wait()


def _proc_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _proc_start(pid: int) -> str:
    return _proc_fields(pid)[19]


def _proc_state(pid: int) -> str:
    return _proc_fields(pid)[0]


def test_an_owned_scratch_dir_names_this_process_and_is_kept_while_it_runs() -> None:
    path = scratch_dir("dd-scratch-test-", owned=True)
    try:
        owner = Owner.parse((path / OWNER_FILE).read_text(encoding="ascii"))
        assert owner == this_process() and alive(owner)
        assert path not in sweep_orphans("dd-scratch-test-")
        assert path.is_dir()
    finally:
        shutil.rmtree(path)


def test_a_plain_scratch_dir_has_no_owner_file() -> None:
    path = scratch_dir("dd-scratch-test-")
    try:
        assert not (path / OWNER_FILE).exists()
    finally:
        path.rmdir()
