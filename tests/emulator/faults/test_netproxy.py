"""The fault-injecting TCP proxy: byte rules, and a real agent upload through it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from emulator.clock import VirtualClock
from emulator.faults.netplan import NetFaults, plan_chunk
from emulator.faults.netproxy import FaultProxy
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device


@given(
    limit=st.integers(0, 10_000),
    chunks=st.lists(st.integers(1, 3000), min_size=1, max_size=30),
)
def test_reset_never_lets_more_than_the_limit_through(limit: int, chunks: list[int]) -> None:
    faults = NetFaults(reset_after_bytes=limit)
    sent = 0
    for size in chunks:
        d = plan_chunk(faults, size=size, upstream=True, sent_upstream=sent)
        assert 0 <= d.forward <= size
        sent += d.forward
        if d.reset:
            break
    assert sent <= limit
    assert d.reset or sent < limit or sum(chunks) == sent


@given(size=st.integers(1, 1 << 20), bps=st.integers(1, 1 << 24), lat=st.floats(0, 5))
def test_delay_is_latency_plus_transfer_time(size: int, bps: int, lat: float) -> None:
    d = plan_chunk(NetFaults(latency_s=lat, bandwidth_bps=bps), size=size, upstream=False,
                   sent_upstream=0)
    assert d.forward == size and not d.reset
    assert abs(d.delay_s - (lat + size / bps)) < 1e-9




async def test_upload_reset_mid_stream_is_retried_and_stored_once(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:  # noqa: SIM117
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            model = make_device(clock, None)
            agent, _ = make_agent(tmp_path, server, model, clock)
            # The agent talks to the proxy; TLS still ends at the server (name: localhost).
            agent.config = _via(agent.config, proxy.port)
            clock.register()  # this test never parks: time moves only when it says so
            clock.register()
            task = asyncio.create_task(agent.run())
            try:
                proxy.faults = NetFaults(cut=True)
                agent.send_now()
                await _until(lambda: agent.stats.last_error != "")
                assert "ConnectError" in agent.stats.last_error or "register" in \
                    agent.stats.last_error
                assert server.storage.uploads_count() == 0

                # Registration goes through; the upload is cut after 3 KiB went up.
                proxy.faults = NetFaults(reset_after_bytes=3 * 1024)
                agent._register_not_before = None
                agent.send_now()
                await _until(lambda: agent.stats.send_failures >= 1)
                assert agent.identity.is_registered
                assert proxy.counters.resets >= 1
                assert len(agent.outbox.entries()) >= 1

                # The network heals; let virtual time move so the retry timer fires.
                proxy.faults = NetFaults(latency_s=0.01)
                agent.send_now()
                clock.unregister()
                await _until(lambda: not agent.outbox.entries())
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            uploads = server.storage.uploads(agent.identity.device_id or "")
            ids = [u["upload_id"] for u in uploads]
            # Once time runs free the agent may make more daily payloads; every one built
            # is stored exactly once, the one cut mid-upload included.
            assert len(ids) == len(set(ids)) == agent.stats.payloads_built >= 3


def _via(config: object, port: int) -> object:
    from dataclasses import replace

    from device_direct.config import AgentConfig

    assert isinstance(config, AgentConfig)
    return replace(config, server=replace(config.server, url=f"https://127.0.0.1:{port}/"))


async def _until(cond: object, timeout: float = 20.0) -> None:
    assert callable(cond)
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")
