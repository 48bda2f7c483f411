"""The agent against a full disk and a power cut while the day's payload is built."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import device_direct.outbox_store as outbox_store
from device_direct.agent import Agent
from device_direct.core.payload import read_payload
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device


async def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_a_full_disk_skips_a_payload_but_the_agent_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)
        real_write = outbox_store.atomic_write

        def full(path: Path, data: bytes, **kw: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        # Two participants, this test (never parked) and the agent (make_agent does not
        # register it): counted alone, the agent's parking let virtual time run on to
        # its daily syncs and retries, and a slow run failed. Time stands still now.
        clock.register()
        clock.register()
        task = asyncio.create_task(agent.run())
        try:
            monkeypatch.setattr(outbox_store, "atomic_write", full)
            agent.send_now()
            await _until(lambda: "No space left" in agent.stats.last_error)
            assert not task.done(), "a full disk must not end the agent"
            assert agent.stats.payloads_built == 0

            monkeypatch.setattr(outbox_store, "atomic_write", real_write)
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class PowerCut(Exception):
    pass


async def test_power_cut_while_building_is_caught_up_at_boot(tmp_path: Path) -> None:
    # 01:59 in Berlin on the 4th: a good day first, then the plug is pulled during the
    # build of the 5th's payload.
    clock = VirtualClock(datetime(2026, 1, 4, 0, 59, tzinfo=UTC))
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        model = make_device(clock, None)
        agent, config = make_agent(tmp_path, server, model, clock, missed="catch-up")
        builds: list[datetime] = []

        def cut(name: str) -> None:
            if name == "build":
                builds.append(clock.now())
                if len(builds) == 2:
                    raise PowerCut(name)

        agent.checkpoint = cut
        clock.register()
        with pytest.raises(PowerCut):
            await asyncio.wait_for(agent.run(), 20)
        assert clock.now() == datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
        assert agent.stats.uploads_stored == 1

        # The device comes back ten minutes later: a new agent from the same disk.
        await clock.sleep(600)
        reborn = Agent(config, model, clock=clock)
        clock.register()  # the test itself, polling below: time stands still meanwhile
        task = asyncio.create_task(reborn.run())
        try:
            await _until(lambda: reborn.stats.uploads_stored == 1)
            assert clock.now() < datetime(2026, 1, 5, 2, 0, tzinfo=UTC), "not caught up at boot"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        uploads = server.storage.uploads(reborn.identity.device_id or "")
        assert [u["trigger"] for u in uploads] == ["scheduled", "scheduled"]


async def test_the_payload_build_lets_the_loop_run_between_its_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot, XML, zip and store each run in their own turn of the loop, so a
    process's other connections (a fleet's, the device's web pages) are served in
    between (docs/fleet.md, "Two processes waiting on each other")."""
    import device_direct.agent as agent_module

    order: list[str] = []
    for name in ("collect", "build_xml", "pack_zip"):
        real = getattr(agent_module, name)

        def staged(*args: object, _real: Callable[..., object] = real, _name: str = name,
                   **kwargs: object) -> object:
            order.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(agent_module, name, staged)
    real_off_loop = agent_module.off_loop

    async def storing(*args: Any, **kwargs: Any) -> Any:
        order.append("store")
        return await real_off_loop(*args, **kwargs)

    monkeypatch.setattr(agent_module, "off_loop", storing)
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)

        async def other_work() -> None:
            while True:
                order.append("other")
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        try:
            upload_id = await agent.queue_payload("on-demand")
        finally:
            other.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await other
    assert upload_id is not None
    assert [e.upload_id for e in agent.outbox.entries()] == [upload_id]
    stages = [i for i, what in enumerate(order) if what != "other"]
    assert [order[i] for i in stages] == ["collect", "build_xml", "pack_zip", "store"]
    for this, following in itertools.pairwise(stages):
        assert "other" in order[this + 1:following], order[this:following + 1]


async def test_the_agent_keeps_its_payloads_unchanged_parts_from_its_second_payload(
    tmp_path: Path,
) -> None:
    """A device that builds one payload (a one-day fleet) holds no cache; from the second
    on, the parts that did not change are written again (docs/fleet.md, "The parts of a
    payload that did not change since the day before")."""
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)
        assert await agent.queue_payload("on-demand") is not None
        assert agent._payload_cache is None
        assert await agent.queue_payload("on-demand") is not None
        cache = agent._payload_cache
        assert cache is not None and "identity" in cache._parts
        identity = cache._parts["identity"]
        assert await agent.queue_payload("on-demand") is not None
        assert cache._parts["identity"] is identity  # written again, not rebuilt
        xmls = [read_payload(agent.outbox.read(e)) for e in agent.outbox.entries()]
    identities = {xml[xml.index(b"<Identity>"):xml.index(b"</Identity>")] for xml in xmls}
    assert len(xmls) == 3 and len(identities) == 1  # the same part, built or written again


@pytest.mark.parametrize("text", ["[]", "5", '{"last_run": "2026-01-01T00:00:00"}'])
def test_a_corrupt_agent_state_file_is_set_aside_not_fatal(tmp_path: Path, text: str) -> None:
    # Valid JSON of the wrong shape, or a last_run without a zone (which the catch-up
    # schedule cannot compare), must read as "no state", not end the agent or status.
    from device_direct.agent import STATE_FILE, load_agent_state
    from device_direct.config import AgentConfig, DeviceConfig, ScheduleConfig, ServerConfig

    data = tmp_path / "data"
    data.mkdir()
    (data / STATE_FILE).write_text(text)
    with pytest.raises(ValueError):
        load_agent_state(data / STATE_FILE)
    config = AgentConfig(server=ServerConfig(url="https://dd.example.com"),
                         device=DeviceConfig(data_dir=data),
                         schedule=ScheduleConfig(missed="catch-up"))
    clock = VirtualClock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    agent = Agent(config, make_device(clock, None), clock=clock)
    assert agent.last_run is None
    assert agent.schedule.on_boot(clock.now(), agent.last_run) > clock.now()
