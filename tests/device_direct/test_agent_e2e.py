"""End to end over real TLS: emulated MFP + agent + reference server, virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from device_direct.model import Counters
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device

BERLIN = ZoneInfo("Europe/Berlin")


async def test_fourteen_days_fourteen_uploads_meters_match(tmp_path: Path) -> None:
    # 03:00 in Berlin: the first 02:00 upload is the next morning, after a day of use.
    clock = VirtualClock(datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        model = make_device(clock, tmp_path / "model")
        agent, _ = make_agent(tmp_path, server, model, clock)
        meters_after_day: list[Counters] = []

        async def office() -> None:
            # Printing happens during the day; the agent uploads at 02:00 local time.
            try:
                start = clock.now().astimezone(BERLIN).date()
                for i in range(14):
                    day = start + timedelta(days=i)
                    end_of_day = clock.now().replace(
                        year=day.year, month=day.month, day=day.day, hour=17, minute=0
                    )
                    await clock.sleep_until(end_of_day)
                    model.run_day(day)
                    meters_after_day.append(model.counters())
            finally:
                clock.unregister()

        async def agent_run() -> None:
            try:
                await agent.run()
            finally:
                clock.unregister()

        clock.register()
        clock.register()
        agent_task = asyncio.create_task(agent_run())
        office_task = asyncio.create_task(office())
        await asyncio.wait_for(office_task, 120)
        # Let the agent reach the 14th upload (02:00 after the last day), then stop it.
        deadline = clock.now() + timedelta(hours=12)
        while clock.now() < deadline and agent.stats.uploads_stored < 14:
            clock.register()
            try:
                await clock.sleep(600)
            finally:
                clock.unregister()
        agent_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent_task

        device_id = agent.identity.device_id
        assert device_id is not None
        uploads = server.storage.uploads(device_id)
        assert len(uploads) == 14, [u["sequence"] for u in uploads]
        assert len({u["upload_id"] for u in uploads}) == 14
        assert server.storage.uploads_count() == 14
        # Each upload carries the meters the model had when it was built (after the
        # previous day's printing).
        for upload, expected in zip(sorted(uploads, key=lambda u: u["sequence"]),
                                    meters_after_day, strict=True):
            meters = upload["meters"]
            assert meters["total-impressions"] == expected.total_impressions
            assert meters["black-impressions"] == expected.black_impressions
            assert meters["color-impressions"] == expected.color_impressions
        assert meters_after_day[-1].total_impressions > meters_after_day[0].total_impressions
        assert agent.outbox.entries() == ()


async def test_certificate_is_renewed_before_expiry_and_uploads_go_on(tmp_path: Path) -> None:
    # The server signs in real (wall) time; start the virtual clock there too, so the
    # agent's "30 days before expiry" and the certificate agree.
    start = datetime.now(UTC).replace(microsecond=0)
    clock = VirtualClock(start)
    async with ReferenceServer(tmp_path / "server", clock=clock, cert_days=33) as server:
        model = make_device(clock, None)
        agent, _ = make_agent(tmp_path, server, model, clock)
        first_cert = None

        async def agent_run() -> None:
            try:
                await agent.run()
            finally:
                clock.unregister()

        clock.register()
        task = asyncio.create_task(agent_run())
        try:
            for _ in range(2000):
                if first_cert is None and agent.identity.registration is not None:
                    first_cert = agent.identity.registration.fingerprint_sha256
                if agent.stats.renewals >= 1 and agent.stats.uploads_stored >= 6:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert agent.stats.renewals >= 1
        reg = agent.identity.registration
        assert reg is not None and reg.fingerprint_sha256 != first_cert
        device_id = agent.identity.device_id
        assert device_id is not None
        uploads = server.storage.uploads(device_id)
        # Uploads made after the renewal went through on the new certificate.
        assert len(uploads) == agent.stats.uploads_stored >= 6
        assert len({u["upload_id"] for u in uploads}) == len(uploads)


MARCH_5_NOON = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


class _SteppableClock(VirtualClock):
    """A virtual clock that NTP can step back (the agent's own clock was set ahead)."""

    def step_back(self, delta: timedelta) -> None:
        self._now -= delta


async def test_a_clock_stepped_back_days_keeps_one_upload_a_day(tmp_path: Path) -> None:
    # The agent kept the next run of the old timeline: after a step back of 3 days it
    # uploaded nothing until that time came round again (a clock set years ahead and
    # corrected: years without an upload). The next wake re-reads the schedule.
    clock = _SteppableClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        model = make_device(clock, tmp_path / "model")
        agent, _ = make_agent(tmp_path, server, model, clock)

        async def agent_run() -> None:
            try:
                await agent.run()
            finally:
                clock.unregister()

        clock.register()
        clock.register()
        task = asyncio.create_task(agent_run())
        try:
            await asyncio.wait_for(clock.sleep_until(MARCH_5_NOON), 60)
            assert agent.stats.uploads_stored == 4  # 02:00 Berlin on the 2nd to the 5th
            clock.step_back(timedelta(days=3))  # now the 2nd, 12:00 again
            agent.send_now()  # a wake (the real clock's sleep ends at a step back)
            await asyncio.wait_for(clock.sleep_until(MARCH_5_NOON), 60)
            # the send-now, then the 3rd, 4th and 5th of the corrected timeline
            assert agent.stats.uploads_stored == 8
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            clock.unregister()
