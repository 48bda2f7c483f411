"""The loop guard of tests/conftest.py catches device code that blocks the event loop,
and only device code (issue 16, item 6)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from device_direct.durable import atomic_write
from tests.conftest import _BlockWatch


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
    # A slow disk: each fsync takes 150 ms (eMMC on a bad day).
    monkeypatch.setattr(os, "fsync", lambda fd: time.sleep(0.15))
    blocked = _run_blocking(lambda: atomic_write(tmp_path / "f", b"x"))
    assert blocked, "a blocking atomic_write on the loop went unnoticed"
    assert "device_direct/durable.py" in blocked[0][1]


def test_a_tests_own_blocking_set_up_is_not_blamed_on_the_device() -> None:
    assert _run_blocking(lambda: time.sleep(0.15)) == []
