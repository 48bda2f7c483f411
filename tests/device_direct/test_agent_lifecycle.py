"""The agent process stays up in every state (issue 16, item 7)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_send_now_does_not_end_an_agent_whose_services_are_off(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock,
                              extra="[services]\nenabled = false\n")
        clock.register()  # the test: time stands still
        clock.register()  # the agent
        task = asyncio.create_task(agent.run())
        try:
            await _until(lambda: agent.status()["state"] == "idle")
            for _ in range(3):  # the panel button, pressed again and again
                agent.send_now()
                await asyncio.sleep(0.05)
                assert not task.done(), "the agent ended: a supervisor would not restart it"
            assert agent.status()["state"] == "idle"
            assert server.storage.uploads_count() == 0
        finally:
            await _stop(task)


async def test_a_config_error_making_the_transport_is_backed_off_not_fatal(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)
        bundle = tmp_path / "bundle.pem"  # the device's CA bundle, lost (bad update)
        agent.config = dataclasses.replace(
            agent.config, server=dataclasses.replace(agent.config.server, ca_bundle=bundle))
        # The test (never parked) and the agent: time stands still while the test
        # polls, so the agent is still in its first backoff wait when it looks.
        clock.register()
        clock.register()
        task = asyncio.create_task(agent.run())
        try:
            agent.send_now()
            await _until(lambda: agent.stats.step_failures >= 1)
            assert "CA bundle" in agent.stats.last_error
            assert not task.done()
            assert agent.stats.step_failures == 1 and agent.lifecycle.backoff.attempt == 1
            shutil.copy(server.ca_cert_path, bundle)  # repaired
            agent.send_now()  # the panel button ends the backoff wait
            await _until(lambda: agent.stats.uploads_stored >= 1)
            assert not task.done()
        finally:
            await _stop(task)
