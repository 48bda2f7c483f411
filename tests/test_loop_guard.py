"""The loop guard of tests/conftest.py catches device code that blocks the event loop,
and only device code (issue 16, item 6).

Each scenario runs in a fresh interpreter (tests/loop_guard_scenarios.py): the guard
discounts what the process's other threads did meanwhile, and late in a full run the
threads earlier tests left behind would make these tests depend on the order.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _GcTime, _limit_now

ROOT = Path(__file__).resolve().parent.parent


def _scenario(name: str, tmp_path: Path) -> list[list[object]]:
    out = subprocess.run([sys.executable, "-m", "tests.loop_guard_scenarios", name,
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    blocked: list[list[object]] = json.loads(out.stdout)
    return blocked


def test_an_fsync_on_the_loop_in_device_code_is_caught(tmp_path: Path) -> None:
    blocked = _scenario("slow-fsync", tmp_path)
    assert blocked, "a blocking atomic_write on the loop went unnoticed"
    assert "device_direct/durable.py" in str(blocked[0][1])


def test_a_tests_own_blocking_set_up_is_not_blamed_on_the_device(tmp_path: Path) -> None:
    assert _scenario("own-set-up", tmp_path) == []


def test_the_limit_is_the_issues_50_ms_unless_the_machine_is_overloaded(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _limit_now() == pytest.approx(0.05)
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 1.0, 1.0))
    assert _limit_now() == pytest.approx(0.2)


def test_a_garbage_collection_inside_device_code_is_not_blamed_on_it(tmp_path: Path) -> None:
    assert _scenario("garbage-collection", tmp_path) == []
    assert _GcTime.callback in gc.callbacks


def test_waiting_for_the_gil_a_worker_thread_holds_is_not_blamed_on_the_device(
    tmp_path: Path
) -> None:
    assert _scenario("gil-held-by-a-worker", tmp_path) == []
