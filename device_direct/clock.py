"""Time, injected.

Every component reads time only from a :class:`Clock`: ``now()`` (aware UTC datetime),
``monotonic()`` (seconds, for durations) and ``sleep_until()``. Real deployments use
:class:`SystemClock`; the emulator's fleet uses a virtual clock
(``emulator.clock.VirtualClock``) that jumps to the next wake-up when every device is
parked, so 30 simulated days pass in seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

# A sleeping SystemClock re-reads the wall clock at least this often, so an NTP step
# or a suspend/resume does not make a daily upload fire hours late.
_MAX_SLEEP_SLICE_S = 60.0
# A step of the wall clock back by more than this (NTP correcting a clock that was set
# ahead) ends a SystemClock's sleep early: its caller re-plans on the corrected time,
# instead of sleeping until the old time comes round again (days, or years).
_STEP_BACK_S = 300.0


# Set in a task that sleeps on the clock but is not one of the participants a virtual
# clock waits for (an alert mailer polling beside the agent): its sleeps never hold
# virtual time back nor make it jump. Real clocks ignore it.
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("clock_background",
                                                                  default=False)


def run_in_background(coro: object) -> asyncio.Task[object]:
    """Start ``coro`` as a task marked :data:`BACKGROUND`."""
    ctx = contextvars.copy_context()
    ctx.run(BACKGROUND.set, True)
    return asyncio.get_running_loop().create_task(coro, context=ctx)  # type: ignore[arg-type]


@runtime_checkable
class Clock(Protocol):
    """Where time comes from."""

    def now(self) -> datetime:
        """Current time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when`` (at once if it already is), or earlier when the
        clock was stepped back meanwhile: callers read ``now()`` again and re-plan."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: wall time from the OS, sleeping with asyncio."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, when: datetime) -> None:
        _require_aware(when)
        start = self.now().timestamp() - time.monotonic()  # the wall clock's offset
        while True:
            now = self.now()
            remaining = (when - now).total_seconds()
            if remaining <= 0:
                return
            if now.timestamp() - time.monotonic() < start - _STEP_BACK_S:
                return  # stepped back: ``when`` belongs to a timeline that is gone
            await asyncio.sleep(min(remaining, _MAX_SLEEP_SLICE_S))

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + timedelta(seconds=max(0.0, seconds)))


def _require_aware(when: datetime) -> None:
    if when.tzinfo is None:
        raise ValueError("sleep_until needs an aware datetime (naive times are ambiguous)")
