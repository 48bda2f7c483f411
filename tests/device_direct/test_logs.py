"""The CLI's logging: structured lines while a command runs, nothing left behind after."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from device_direct.__main__ import main
from device_direct.logs import command_logging


def test_a_command_logs_json_lines_to_stderr_with_its_extra_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with command_logging("json", "info"):
        logging.getLogger("device_direct.test").info("queued %s", "u-1", extra={"bytes": 812})
        logging.getLogger("device_direct.test").debug("below the level")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert (doc["level"], doc["logger"], doc["msg"], doc["bytes"]) == (
        "info", "device_direct.test", "queued u-1", 812)


def test_main_called_in_process_leaves_the_root_logger_as_it_found_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A handler left on the root logger would keep this test's captured stderr, which
    # pytest closes when the test ends: every later record, in any test, would then
    # fail to write ("I/O operation on closed file") at this command's level.
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    config = tmp_path / "agent.toml"
    config.write_text('[server]\nurl = "https://dd.example.com"\n'
                      f'[device]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["--log-level", "debug", "audit", "--config", str(config)]) == 0
    assert main(["audit", "--config", str(tmp_path / "missing.toml")]) == 2
    assert (root.handlers, root.level) == before
    assert "missing.toml" in capsys.readouterr().err
