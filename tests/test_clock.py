"""The system clock and the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import pytest

from device_direct import clock as clock_module
from device_direct.clock import Clock, SystemClock
from emulator.clock import DEFAULT_EPOCH, VirtualClock


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(), Clock)


async def test_system_clock_sleep_until_past_returns_at_once() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    await clock.sleep_until(clock.now() - timedelta(seconds=5))


async def test_system_clock_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        await SystemClock().sleep_until(datetime(2026, 1, 1))


class _SteppedClock(SystemClock):
    """The system's clock, its wall time shifted by ``shift`` (an NTP step)."""

    shift = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.shift


async def test_system_clock_sleep_ends_when_the_wall_clock_is_stepped_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock set days ahead and corrected by NTP: the sleep ran on to the old time,
    # and the agent's daily upload with it (days, or years, of no upload).
    monkeypatch.setattr(clock_module, "_MAX_SLEEP_SLICE_S", 0.05)
    clock = _SteppedClock()
    clock.shift = timedelta(days=3)  # set ahead
    sleeping = asyncio.create_task(clock.sleep_until(clock.now() + timedelta(hours=1)))
    await asyncio.sleep(0.1)
    assert not sleeping.done()
    clock.shift = timedelta(0)  # corrected
    await asyncio.wait_for(sleeping, timeout=5)


async def test_system_clock_sleep_is_not_cut_by_a_small_step_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module, "_MAX_SLEEP_SLICE_S", 0.05)
    clock = _SteppedClock()
    sleeping = asyncio.create_task(clock.sleep_until(clock.now() + timedelta(hours=1)))
    await asyncio.sleep(0.05)
    clock.shift = -timedelta(seconds=30)  # NTP's everyday correction: keep sleeping
    await asyncio.sleep(0.2)
    assert not sleeping.done()
    sleeping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sleeping


async def test_virtual_clock_jumps_only_when_everyone_is_parked() -> None:
    clock = VirtualClock()
    gate = asyncio.Event()
    woke_at: list[datetime] = []

    async def sleeper() -> None:
        await clock.sleep(3600)
        woke_at.append(clock.now())

    async def busy() -> None:
        # Not parked while it waits on something real: time must stand still.
        await gate.wait()
        await clock.sleep(10)

    clock.register()
    clock.register()
    t1 = asyncio.create_task(sleeper())
    t2 = asyncio.create_task(busy())
    for _ in range(20):
        await asyncio.sleep(0)
    assert clock.now() == DEFAULT_EPOCH, "time moved while a participant was busy"
    assert woke_at == []
    gate.set()
    await asyncio.wait_for(t2, 5)
    clock.unregister()
    await asyncio.wait_for(t1, 5)
    clock.unregister()
    assert woke_at == [DEFAULT_EPOCH + timedelta(seconds=3600)]
    assert clock.now() == woke_at[0]


async def test_virtual_clock_cancelled_sleeper_does_not_block_time() -> None:
    clock = VirtualClock()
    clock.register()
    clock.register()
    blocked = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    clock.unregister()
    await asyncio.wait_for(clock.sleep(50), 5)
    assert clock.now() == DEFAULT_EPOCH + timedelta(seconds=50)


async def test_cancelled_sleeper_is_unparked_so_time_waits_for_the_busy() -> None:
    # Two participants: one parks then is cancelled, the other stays busy. Time must
    # not move: the cancelled one no longer counts as parked.
    clock = VirtualClock()
    clock.register()
    clock.register()
    for _ in range(3):
        t = asyncio.create_task(clock.sleep(100))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    assert clock.parked == 0
    parked = asyncio.create_task(clock.sleep(10))
    for _ in range(10):
        await asyncio.sleep(0)
    assert clock.now() == DEFAULT_EPOCH, "time moved while a participant was busy"
    clock.unregister()  # the busy one is done
    await asyncio.wait_for(parked, 5)
    assert clock.now() == DEFAULT_EPOCH + timedelta(seconds=10)


async def test_background_sleepers_neither_hold_nor_push_time() -> None:
    from device_direct.clock import run_in_background

    clock = VirtualClock()
    clock.register()  # a busy participant: time must stand still
    ticks: list[datetime] = []

    async def poller() -> None:
        while True:
            await clock.sleep(30)
            ticks.append(clock.now())

    bg = run_in_background(poller())
    for _ in range(20):
        await asyncio.sleep(0)
    assert clock.now() == DEFAULT_EPOCH and ticks == []
    clock.unregister()
    clock.register()
    done = asyncio.create_task(clock.sleep(100))
    await asyncio.wait_for(done, 5)
    assert clock.now() == DEFAULT_EPOCH + timedelta(seconds=100)
    assert len(ticks) == 3  # woken at 30, 60, 90 on the way
    bg.cancel()
    clock.unregister()


def test_virtual_clock_does_not_go_backwards() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError):
        clock.advance_to(DEFAULT_EPOCH - timedelta(seconds=1))


async def _daily_fleet(n: int, days: int) -> tuple[list[tuple[int, int]], float, VirtualClock]:
    clock = VirtualClock()
    order: list[tuple[int, int]] = []

    async def participant(i: int) -> None:
        try:
            # each participant has its own time of day, spread over 24 h
            first = DEFAULT_EPOCH + timedelta(seconds=(i * 86_400) // n)
            for day in range(days):
                await clock.sleep_until(first + timedelta(days=day))
                order.append((day, i))
                await asyncio.sleep(0)  # a bit of "real work" between sleeps
        finally:
            clock.unregister()

    for _ in range(n):
        clock.register()
    started = time.perf_counter()
    await asyncio.gather(*(participant(i) for i in range(n)))
    return order, time.perf_counter() - started, clock


async def test_thousand_participants_thirty_days_deterministic() -> None:
    order1, wall, clock = await _daily_fleet(1000, 30)
    order2, _, _ = await _daily_fleet(1000, 30)
    assert len(order1) == 30_000
    assert order1 == order2, "wake-up order differs between identical runs"
    # Order is by virtual time: day-major, and within a day by time of day.
    assert order1 == sorted(order1)
    assert clock.now() >= DEFAULT_EPOCH + timedelta(days=29)
    # Not a timing assertion on the code's speed, a sanity bound on the virtual clock:
    # 30 virtual days must not take anything near real time.
    assert wall < 120
