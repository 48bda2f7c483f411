"""The pytest plugin, used the way a user's test suite would: a tmp project whose tests
use only the plugin's fixtures, run by pytester."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
from datetime import timedelta

import pytest


async def test_first_sync_registers_and_stores_a_payload(dd_device, dd_wait):
    dd_device.send_now()
    uploads = await dd_wait.uploads(1, dd_device)
    assert uploads[0]["serial"] == dd_device.serial
    assert uploads[0]["meters"]


async def test_daily_uploads_on_the_virtual_clock(dd_device, dd_wait, dd_clock):
    start = dd_clock.now()
    dd_device.send_now()
    uploads = await dd_wait.uploads(4, dd_device)   # three more nightly syncs
    assert [u["sequence"] for u in uploads] == sorted({u["sequence"] for u in uploads})
    assert dd_clock.now() - start >= timedelta(days=2)


async def test_status_action_is_reported(dd_device, dd_wait):
    dd_device.send_now()
    await dd_wait.registered(dd_device)
    action_id = dd_device.enqueue_action("get_status")
    dd_device.send_now()
    row = await dd_wait.action(action_id, status="succeeded")
    assert row["type"] == "get_status"


async def test_two_devices_and_time_passing(dd_make_device, dd_wait):
    mono = await dd_make_device("office-mono", "MONO0001")
    color = await dd_make_device("office-color", "COLR0001", upload_time="03:30")
    await dd_wait.run_for(timedelta(days=2))
    assert len(mono.uploads()) >= 1 and len(color.uploads()) >= 1


async def test_a_small_fleet(dd_fleet):
    report = await dd_fleet(devices=3, days=2, seed=4)
    assert report.ok, [e for e in report.expectations if not e.ok]
    assert report.totals()["uploads_stored"] == 6


async def test_waiting_for_what_never_comes_fails_clearly(dd_make_device, dd_wait):
    switched_off = await dd_make_device(start=False)
    await dd_wait.uploads(1, switched_off, timeout=0.2)
'''


def test_user_suite_with_only_the_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_inprocess("-p", "emulator.pytest_plugin", "-q",
                                          "-p", "no:cacheprovider")
    # The last test waits for an upload from a device whose agent never runs.
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.2 s waiting for 1 uploads of PYT0000001*"])


def test_plugin_loads_from_a_conftest_and_documents_its_fixtures(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest('pytest_plugins = ["emulator.pytest_plugin"]\n')
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines_random([
        "dd_clock*", "*virtual clock*", "dd_server*", "*reference communication server*",
        "dd_device*", "dd_make_device*", "dd_wait*", "*Wait helpers*", "dd_fleet*",
        "dd_scenario*"])


DOC = Path(__file__).resolve().parents[1] / "docs" / "pytest-plugin.md"


def _doc_example() -> tuple[str, str]:
    """The complete example test file of docs/pytest-plugin.md: (file name, code)."""
    found = re.search(r"<!-- example: (\S+) .*?-->\n```python\n(.*?)```", DOC.read_text(),
                      re.S)
    assert found, f"{DOC} lost its marked example"
    return found.group(1), found.group(2)


def _fresh_project(tmp_path: Path, *files: tuple[str, str], quiet: bool = True
                   ) -> subprocess.CompletedProcess[str]:
    """``pytest`` in a new directory holding only ``files``, as a user would run it."""
    project = tmp_path / "user-project"
    project.mkdir()
    for name, text in files:
        (project / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", *(["-q"] if quiet else []), "-rw"],
                          cwd=project,
                          env=env, capture_output=True, text=True, timeout=600)


def test_the_documented_first_test_passes_with_no_configuration_and_no_warning(
        tmp_path: Path) -> None:
    name, code = _doc_example()
    done = _fresh_project(tmp_path, (name, code))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"\b4 passed\b", out), out
    assert "warning" not in out.lower(), out


def test_a_projects_own_loop_scope_choice_wins(tmp_path: Path) -> None:
    done = _fresh_project(
        tmp_path, ("pytest.ini", "[pytest]\nasyncio_default_fixture_loop_scope = module\n"),
        ("test_one.py", "async def test_clock(dd_clock, dd_server):\n"
                        "    assert dd_server.port\n"), quiet=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "1 passed" in out, out
    assert "asyncio_default_fixture_loop_scope=module" in out, out  # pytest-asyncio's header


async def test_the_printer_stands_in_its_agents_time_zone(dd_make_device):
    # issue 18: working hours, holidays and faults run in the device's own zone
    tokyo = await dd_make_device("office-color", "TKYO0001", time_zone="Asia/Tokyo",
                                 start=False)
    assert str(tokyo.model.time_zone) == "Asia/Tokyo"
