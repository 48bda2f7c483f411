"""The fleet's connection slots: a device's turn runs from building its payload to the end
of the sync that sends it (emulator/fleet/fleet_agent.py), against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from device_direct.agent import Agent
from device_direct.core.payload import Trigger
from emulator.fleet.fleet_agent import FleetAgent
from emulator.fleet.report import FleetReport
from emulator.fleet.runner import run_fleet
from emulator.fleet.spec import FleetSpec, UploadWindow
from emulator.server.app import ReferenceServer
from tests.emulator.fleet.test_fleet_shards import _target

ALL_AT_TWO = UploadWindow.parse("02:00-02:01")  # every device uploads at 02:00


class Turns:
    """Which devices are between the start of a build (or of a sync) and its sync's end."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active: set[int] = set()
        self.peak = 0
        self.builds = 0
        original = Agent.sync

        async def watched_sync(agent: Agent, trigger: Trigger | None) -> bool:
            self.enter(agent)
            try:
                return await original(agent, trigger)
            finally:
                self.active.discard(id(agent))

        monkeypatch.setattr(Agent, "sync", watched_sync)

    def enter(self, agent: Agent) -> None:
        self.active.add(id(agent))
        self.peak = max(self.peak, len(self.active))

    def checkpoint(self, agent: Agent, name: str) -> None:
        if name == "build":
            self.builds += 1
            self.enter(agent)


async def _run(tmp: Path, spec: FleetSpec, concurrency: int) -> FleetReport:
    async with ReferenceServer(tmp / "server") as server:
        keys = tuple(server.create_registration_key() for _ in range(spec.devices))
        # A slot that is never given back stops virtual time (the device waiting for it
        # is busy, not parked): the run would hang, so it gets a deadline of its own.
        return await asyncio.wait_for(
            run_fleet(spec, tmp / "fleet", target=_target(server, keys),
                      concurrency=concurrency), timeout=60)


async def test_a_device_builds_its_payload_in_its_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Six devices wake at the same 02:00. Built outside the turn, all six payloads would
    # be built before the first sync began (six devices at work at once).
    spec = FleetSpec(devices=6, days=2, seed=5, zones=("UTC",), upload_window=ALL_AT_TWO)
    turns = Turns(monkeypatch)
    # A function on the class: each agent calls it with itself (Agent._reach).
    monkeypatch.setattr(FleetAgent, "checkpoint",
                        lambda agent, name: turns.checkpoint(agent, name), raising=False)
    report = await _run(tmp_path, spec, concurrency=2)
    assert report.ok
    assert turns.builds == spec.device_days
    assert turns.peak == 2
    assert not turns.active


async def test_a_device_that_dies_in_its_turn_gives_its_slot_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FleetSpec(devices=3, days=2, seed=6, zones=("UTC",), upload_window=ALL_AT_TWO)
    killed: list[Any] = []

    def checkpoint(agent: Agent, name: str) -> None:
        # The first device to queue a payload dies between its build and its sync.
        if name == "write" and not killed:
            killed.append(agent)
            raise RuntimeError("killed in its turn")

    monkeypatch.setattr(FleetAgent, "checkpoint", checkpoint, raising=False)
    report = await _run(tmp_path, spec, concurrency=1)
    [dead] = [o for o in report.outcomes if "killed in its turn" in o.last_error]
    assert dead.uploads_stored == 0
    others = [o for o in report.outcomes if o is not dead]
    assert [o.uploads_stored for o in others] == [spec.days] * 2
    assert all(o.finished for o in others)
