"""The fleet's event loop: uvloop or asyncio's own, the same fleet on either."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from emulator import loop as fleet_loop
from emulator.fleet.cli import EXIT_USAGE, main
from emulator.fleet.report import FleetReport, merge_reports
from emulator.fleet.runner import run_fleet
from emulator.fleet.spec import FleetSpec
from emulator.server.app import ReferenceServer
from tests.emulator.fleet.test_fleet_shards import _stored, _target

SPEC = FleetSpec(devices=4, days=3, seed=21)
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")


def _no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_loop, "uvloop_installed", lambda: False)


def test_auto_is_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fleet_loop.resolve("asyncio") == "asyncio"
    assert fleet_loop.resolve("auto") == ("uvloop" if HAVE_UVLOOP else "asyncio")
    _no_uvloop(monkeypatch)
    assert fleet_loop.resolve("auto") == "asyncio"
    assert fleet_loop.loop_factory("auto") is None
    with pytest.raises(fleet_loop.LoopUnavailable, match="uvloop is not installed"):
        fleet_loop.resolve("uvloop")


def test_cli_refuses_a_missing_uvloop_as_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _no_uvloop(monkeypatch)
    assert main(["--devices", "2", "--days", "1", "--loop", "uvloop", "--no-progress"]) \
        == EXIT_USAGE
    assert "--loop uvloop: uvloop is not installed" in capsys.readouterr().err


def _run(tmp: Path, name: str, loop: fleet_loop.LoopName) -> tuple[FleetReport, Any]:
    """The fleet on ``loop`` against its own server: the report and what the server stored."""
    async def go() -> tuple[FleetReport, Any]:
        async with ReferenceServer(tmp / f"srv-{name}") as server:
            keys = tuple(server.create_registration_key() for _ in range(SPEC.devices))
            report = await run_fleet(SPEC, tmp / name, target=_target(server, keys))
            return report, _stored(server)

    return fleet_loop.run(go(), loop)


@needs_uvloop
def test_same_fleet_on_either_loop(tmp_path: Path) -> None:
    on_uvloop, stored_uvloop = _run(tmp_path, "uv", "uvloop")
    on_asyncio, stored_asyncio = _run(tmp_path, "aio", "asyncio")
    assert on_uvloop.ok and on_asyncio.ok
    assert (on_uvloop.loop, on_asyncio.loop) == ("uvloop", "asyncio")
    # Same devices, same payloads (sequence, generation time, meters) on both loops.
    assert stored_uvloop == stored_asyncio
    assert len(stored_uvloop[1]) == SPEC.device_days
    assert on_uvloop.totals() == on_asyncio.totals()


def test_report_carries_the_loop_through_json_and_merge() -> None:
    base = FleetReport(devices=2, days=1, seed=1, mix="office-color:1", shards=("1/2",),
                       outcomes=(), wall_s=1.0, loop="uvloop")
    again = FleetReport.from_json(base.to_json())
    assert again.loop == "uvloop"
    other = FleetReport(devices=2, days=1, seed=1, mix="office-color:1", shards=("2/2",),
                        outcomes=(), wall_s=1.0, loop="asyncio")
    assert merge_reports([base, other], wall_s=2.0, server_uploads=None).loop \
        == "asyncio,uvloop"
