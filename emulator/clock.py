"""A virtual clock for running many devices in one process.

Theory of operation
-------------------
Participants (one per emulated device, usually) register with the clock. A participant
that calls :meth:`VirtualClock.sleep_until` is *parked*. When every registered
participant is parked, virtual time jumps to the earliest wake-up and the sleepers due
then are woken, in the order (wake-up time, order of parking). Anything else a
participant awaits (real sockets, TLS handshakes, disk) runs in real time while virtual
time stands still, because that participant is not parked.

Determinism: time only advances when all participants are parked, and sleepers due at
the same instant wake in a fixed order, so a run that does the same I/O in the same
order replays exactly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

from device_direct.clock import BACKGROUND, _require_aware

DEFAULT_EPOCH = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday


class VirtualClock:
    """A :class:`device_direct.clock.Clock` whose time jumps when all participants wait."""

    def __init__(self, start: datetime = DEFAULT_EPOCH) -> None:
        _require_aware(start)
        self._now = start.astimezone(UTC)
        self._origin = self._now
        self._participants = 0
        self._parked = 0
        self._seq = itertools.count()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._advance_scheduled = False
        self._background: set[asyncio.Future[None]] = set()  # sleepers that do not count
        self.jumps = 0

    # -- Clock interface ----------------------------------------------------------------

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    async def sleep_until(self, when: datetime) -> None:
        _require_aware(when)
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        counts = not BACKGROUND.get()
        if not counts:
            self._background.add(fut)
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        if counts:
            self._parked += 1
        self._schedule_advance()
        try:
            await fut
        finally:
            # Cancelled while parked: asyncio has usually cancelled ``fut`` already (a
            # task's cancel() cancels the future it waits on), so test for that too.
            # A future we resolved in _wake_due was un-parked there.
            self._background.discard(fut)
            if not fut.done() or fut.cancelled():
                fut.cancel()
                if counts:
                    self._parked -= 1
                self._schedule_advance()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=max(0.0, seconds)))

    # -- participants -------------------------------------------------------------------

    def register(self) -> None:
        """Count one more participant: time will not move while it is busy."""
        self._participants += 1

    def unregister(self) -> None:
        """A participant is done (its task ended); time may move without it."""
        if self._participants <= 0:
            raise RuntimeError("unregister() without register()")
        self._participants -= 1
        self._schedule_advance()

    @property
    def participants(self) -> int:
        return self._participants

    @property
    def parked(self) -> int:
        return self._parked

    def advance_to(self, when: datetime) -> None:
        """Move time forward by hand (tests, or a fleet with no participants yet)."""
        _require_aware(when)
        if when < self._now:
            raise ValueError("virtual time does not go backwards")
        self._now = when
        self._wake_due()

    # -- the jump -----------------------------------------------------------------------

    def _schedule_advance(self) -> None:
        # Deferred by one loop turn: a participant that just parked may have woken
        # another task (a future resolved in the same step) that is about to run.
        if not self._advance_scheduled and self._sleepers:
            self._advance_scheduled = True
            asyncio.get_running_loop().call_soon(self._maybe_advance)

    def _maybe_advance(self) -> None:
        self._advance_scheduled = False
        self._drop_cancelled()
        if not self._sleepers or self._parked < self._participants:
            return
        earliest = self._sleepers[0][0]
        if earliest > self._now:
            self._now = earliest
            self.jumps += 1
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                if fut not in self._background:
                    self._parked -= 1
                fut.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
