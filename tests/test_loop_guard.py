"""The loop guard of tests/conftest.py catches device code that blocks the event loop,
and only device code (issue 16, item 6)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from device_direct.durable import atomic_write
from tests.conftest import _BlockWatch, _limit_now


def _run_blocking(callback: object) -> list[tuple[float, str]]:
    loop = asyncio.new_event_loop()
    watch = _BlockWatch()
    watch.install()
    try:
        loop.call_soon(callback)  # type: ignore[arg-type]
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        watch.remove()
        loop.close()
    return watch.blocked


def test_an_fsync_on_the_loop_in_device_code_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow disk: each fsync takes 150 ms (eMMC on a bad day), or three times the limit
    # when the machine's load has stretched it.
    slow = max(0.15, 3 * _limit_now())
    monkeypatch.setattr(os, "fsync", lambda fd: time.sleep(slow))
    blocked = _run_blocking(lambda: atomic_write(tmp_path / "f", b"x"))
    assert blocked, "a blocking atomic_write on the loop went unnoticed"
    assert "device_direct/durable.py" in blocked[0][1]


def test_a_tests_own_blocking_set_up_is_not_blamed_on_the_device() -> None:
    assert _run_blocking(lambda: time.sleep(0.15)) == []


def test_the_limit_is_the_issues_50_ms_unless_the_machine_is_overloaded(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _limit_now() == pytest.approx(0.05)
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 1.0, 1.0))
    assert _limit_now() == pytest.approx(0.2)


def test_a_garbage_collection_inside_device_code_is_not_blamed_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from tests.conftest import _GcTime

    def slow_collection(fd: int) -> None:  # what a full collection of a big heap costs
        _GcTime.callback("start", {})
        time.sleep(max(0.15, 3 * _limit_now()))
        _GcTime.callback("stop", {})

    monkeypatch.setattr(os, "fsync", slow_collection)
    assert _run_blocking(lambda: atomic_write(tmp_path / "f", b"x")) == []
    assert _GcTime.callback in gc.callbacks


def test_waiting_for_the_gil_a_worker_thread_holds_is_not_blamed_on_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A to_thread job (parsing a list, hashing a file) holds the GIL for its switch
    # interval at a time; device code on the loop waits for it at each release.
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    def gil_bound_fsync(fd: int) -> None:  # short sleeps, each a GIL hand-over
        for _ in range(40):
            time.sleep(0.0002)

    worker = threading.Thread(target=spin)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.01)
    worker.start()
    try:
        monkeypatch.setattr(os, "fsync", gil_bound_fsync)
        blocked = _run_blocking(lambda: atomic_write(tmp_path / "f", b"x"))
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(old)
    assert blocked == []
