"""Scenarios for tests/test_loop_guard.py, each run in a fresh interpreter.

The guard subtracts the time the process's other threads ran or waited to run during
a callback (they may hold the GIL). Late in a full test run, threads other tests left
behind would make its own tests depend on what ran before them, so each scenario runs
here, alone: ``python -m tests.loop_guard_scenarios NAME TMPDIR`` prints the blocks the
guard recorded as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device_direct.durable import atomic_write
from tests.conftest import _BlockWatch, _GcTime, _limit_now


def _run_blocking(callback: Callable[[], object]) -> list[tuple[float, str]]:
    loop = asyncio.new_event_loop()
    watch = _BlockWatch()
    watch.install()
    try:
        loop.call_soon(callback)
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        watch.remove()
        loop.close()
    return watch.blocked


def slow_fsync(tmp: Path) -> list[tuple[float, str]]:
    # A slow disk: each fsync takes 150 ms (eMMC on a bad day), or three times the limit
    # when the machine's load has stretched it.
    slow = max(0.15, 3 * _limit_now())
    os.fsync = lambda fd: time.sleep(slow)
    return _run_blocking(lambda: atomic_write(tmp / "f", b"x"))


def own_set_up(tmp: Path) -> list[tuple[float, str]]:
    return _run_blocking(lambda: time.sleep(0.15))


def garbage_collection(tmp: Path) -> list[tuple[float, str]]:
    def slow_collection(fd: int) -> None:  # what a full collection of a big heap costs
        _GcTime.callback("start", {})
        time.sleep(max(0.15, 3 * _limit_now()))
        _GcTime.callback("stop", {})

    os.fsync = slow_collection
    return _run_blocking(lambda: atomic_write(tmp / "f", b"x"))


def gil_held_by_a_worker(tmp: Path) -> list[tuple[float, str]]:
    # A to_thread job (parsing a list, hashing a file) holds the GIL for its switch
    # interval at a time; device code on the loop waits for it at each release.
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    def gil_bound_fsync(fd: int) -> None:  # short sleeps, each a GIL hand-over
        for _ in range(40):
            time.sleep(0.0002)

    worker = threading.Thread(target=spin)
    sys.setswitchinterval(0.01)
    worker.start()
    try:
        os.fsync = gil_bound_fsync
        return _run_blocking(lambda: atomic_write(tmp / "f", b"x"))
    finally:
        stop.set()
        worker.join()


SCENARIOS: dict[str, Callable[[Path], list[tuple[float, str]]]] = {
    "slow-fsync": slow_fsync, "own-set-up": own_set_up,
    "garbage-collection": garbage_collection, "gil-held-by-a-worker": gil_held_by_a_worker,
}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](Path(sys.argv[2]))))
