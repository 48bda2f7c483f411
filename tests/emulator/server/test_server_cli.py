"""The ``server`` CLI commands that work on a state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.server import ReferenceServer
from emulator.server.cli import main


def test_cli_keys_firmware_devices_and_key_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["server", "--state-dir", str(state), "make-key", "--count", "2"]) == 0
    keys = capsys.readouterr().out.split()
    assert len(keys) == 2 and keys[0] != keys[1]

    image = tmp_path / "fw.bin"
    image.write_bytes(b"image-bytes")
    assert main(["server", "--state-dir", str(state), "publish-firmware", "--model", "M1",
                 "--version", "2.0.1", str(image)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["size"] == len(b"image-bytes") and manifest["version"] == "2.0.1"

    assert main(["server", "--state-dir", str(state), "export-firmware-key"]) == 0
    pem = capsys.readouterr().out
    server = ReferenceServer(state)
    assert pem.encode() == server.firmware_public_key_pem
    server.storage.close()

    assert main(["server", "--state-dir", str(state), "devices"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_errors_are_one_clear_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    assert main(["server", "--state-dir", state, "enqueue", "dd-nobody", "reboot"]) == 2
    assert "unknown device" in capsys.readouterr().err
    image = tmp_path / "fw.bin"
    image.write_bytes(b"x")
    assert main(["server", "--state-dir", state, "publish-firmware", "--model", "M",
                 "--version", "one", str(image)]) == 2
    assert "dotted" in capsys.readouterr().err
