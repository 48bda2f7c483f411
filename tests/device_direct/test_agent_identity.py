"""The agent when the server stops taking its client certificate (issue 16, item 1).

Over real mutual TLS against the reference server: the device's certificate is revoked
(its serial was registered again elsewhere) or expires while the device is off. The
agent must renew, or register again with its key, or say that it needs registering,
and keep every payload meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from device_direct.__main__ import _offline_status
from device_direct.agent import NEEDS_REGISTRATION, REGISTERED, Agent
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def revoke(server: ReferenceServer, agent: Agent, clock: VirtualClock) -> None:
    """What the server does when the serial registers again: the certificate is void."""
    device_id = agent.identity.device_id
    assert device_id is not None
    server.storage.replace_certificate(device_id, cert_serial="00dead", now=clock.now(),
                                       not_after=clock.now() + timedelta(days=365))


def with_key(agent: Agent, key: str | None) -> None:
    agent.config = dataclasses.replace(
        agent.config, server=dataclasses.replace(agent.config.server, registration_key=key))


def sequences(server: ReferenceServer) -> list[int]:
    return sorted(u["sequence"] for d in server.storage.devices()
                  for u in server.storage.uploads(d["device_id"]))


async def test_a_revoked_certificate_is_replaced_by_registering_again(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)
        # Time stands still while the test polls: the test and the agent are both
        # participants and the test never parks (with the test alone registered, the
        # agent parked between its steps let the clock run on by days, past the new
        # certificate's end: a flaky failure).
        clock.register()
        clock.register()
        async with running(agent) as task:
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 1)
            first = agent.identity.registration
            revoke(server, agent, clock)
            with_key(agent, server.create_registration_key())
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 2)
            assert not task.done()
        assert agent.stats.certificate_refusals == 1
        assert agent.stats.registrations == 2 and agent.stats.uploads_rejected == 0
        reg = agent.identity.registration
        assert reg is not None and first is not None
        assert reg.fingerprint_sha256 != first.fingerprint_sha256
        assert agent.status()["identity"] == REGISTERED
        stored = sequences(server)  # (a daily sync may have added one meanwhile)
        assert stored == list(range(len(stored))) and len(stored) >= 2


async def test_without_a_key_the_device_says_it_needs_registering_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, config = make_agent(tmp_path, server, make_device(clock, None), clock)
        clock.register()  # the test (never parks): time stands still while it polls
        clock.register()  # the agent, which parks between its steps
        async with running(agent):
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 1)
            revoke(server, agent, clock)
            with_key(agent, None)
            agent.send_now()
            await _until(lambda: agent.status()["identity"] == NEEDS_REGISTRATION)
            assert "refused the client certificate" in (agent.needs_registration or "")
            # Three days pass: every day's payload is kept, none is rejected or dropped.
            clock.unregister()
            start = clock.now()
            await _until(lambda: clock.now() > start + timedelta(days=3), timeout=60)
            clock.register()
            queued = len(agent.outbox.entries())
            assert queued >= 3
            assert agent.stats.uploads_rejected == 0
            assert [r for r in agent.outbox.history() if r.result == "dropped"] == []
            # Stopped, the status says the same (read from the data directory).
            offline = _offline_status(config)
            assert offline["identity"] == NEEDS_REGISTRATION and len(offline["queued"]) == queued
            # A person gives the device a new key: it registers and delivers everything.
            with_key(agent, server.create_registration_key())
            clock.unregister()
            await _until(lambda: not agent.outbox.entries(), timeout=60)
            clock.register()
        assert agent.status()["identity"] == REGISTERED and agent.needs_registration is None
        stored = sequences(server)  # every payload, in order, none lost on the way
        assert stored == list(range(len(stored))) and len(stored) >= queued + 1


async def test_a_certificate_expired_while_the_device_was_off_is_replaced(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        model = make_device(clock, None)
        agent, config = make_agent(tmp_path, server, model, clock)
        clock.register()  # the test (never parks but below): time stands still
        clock.register()  # the agent, then the reborn agent
        async with running(agent):
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 1)
        reg = agent.identity.registration
        assert reg is not None
        # Off for longer than the certificate lives; back on with a fresh key. (The
        # server signs in wall time: its next certificate must outlive the virtual jump.)
        # The agent is stopped: one participant less, and the test's sleep moves time.
        server.cert_days = 1000
        clock.unregister()
        await clock.sleep((reg.not_after - clock.now()).total_seconds() + 86400)
        clock.register()
        reborn = Agent(config, model, clock=clock)
        with_key(reborn, server.create_registration_key())
        async with running(reborn):
            reborn.send_now()
            await _until(lambda: reborn.stats.uploads_stored >= 1)
        assert reborn.stats.registrations == 1 and reborn.stats.renewals == 0
        new = reborn.identity.registration
        assert new is not None and new.fingerprint_sha256 != reg.fingerprint_sha256


async def test_a_server_refusing_the_certificate_it_just_issued_is_not_hammered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that does not take its own certificates (its CA changed under it, a
    # broken database): the agent registered, was refused, registered again at once,
    # and so on as fast as the server answered, spending no virtual time at all.
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, _ = make_agent(tmp_path, server, make_device(clock, None), clock)
        broken = [True]
        voided = itertools.count()
        register_device = server.storage.register_device

        def issue_then_void(**kw: Any) -> None:
            register_device(**kw)
            if broken[0]:
                server.storage.replace_certificate(
                    kw["device_id"], cert_serial=f"dead{next(voided):04x}", now=kw["now"],
                    not_after=kw["not_after"])

        monkeypatch.setattr(server.storage, "register_device", issue_then_void)
        clock.register()  # the test (never parks but below): time stands still
        clock.register()  # the agent
        async with running(agent):
            agent.send_now()
            await _until(lambda: agent.stats.certificate_refusals >= 1)
            await asyncio.sleep(0.5)
            assert agent.stats.registrations == 1
            assert agent.stats.certificate_refusals == 1
            # The server is mended; time runs: after a backoff the device registers
            # again and delivers its payload.
            broken[0] = False
            clock.unregister()
            await _until(lambda: agent.stats.uploads_stored == 1, timeout=60)
            clock.register()
        assert agent.stats.registrations == 2
        assert agent.status()["identity"] == REGISTERED
