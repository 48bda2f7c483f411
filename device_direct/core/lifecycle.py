"""The agent's lifecycle: the states of the process itself, as a sans-I/O state machine.

Theory of operation
-------------------
A printer's agent is started once per boot and must stay up whatever happens: a
supervisor restarts a process that exits non-zero, but one that exits 0 (or hangs in a
dead end) leaves the device silent until someone notices. So the agent never ends on
its own; every failure of a step is caught, logged, and followed by a backoff::

    STARTING --booted--------> RUNNING --step-done--> RUNNING
    STARTING --services-off--> IDLE    --wake-------> IDLE      (send-now is answered,
    STARTING --failed--------> BOOT_BACKOFF                      nothing is sent)
    BOOT_BACKOFF --retry-----> STARTING
    RUNNING  --failed--------> STEP_BACKOFF --retry--> RUNNING

STARTING settles what a restart cut off (a trial boot, a reboot action's result) and
starts the side tasks; RUNNING is the agent's loop (one ``step`` per turn: wait, build,
flush, background work); IDLE is a device whose remote services are switched off: the
process stays, and answers status and send-now requests, but talks to no server.
The two backoff states wait a capped, fully jittered exponential delay
(:class:`~device_direct.core.retry.Backoff`), reset by the next success.

Every transition is in :data:`TRANSITIONS`; a pair missing from it is a bug and raises
:class:`LocalProtocolError`. There is no final state.
"""

from __future__ import annotations

import enum
import random
from datetime import datetime, timedelta

from device_direct.core.retry import Backoff
from device_direct.errors import LocalProtocolError


class AgentState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    BOOT_BACKOFF = "boot-backoff"
    STEP_BACKOFF = "step-backoff"


class AgentEvent(enum.Enum):
    BOOTED = "booted"
    SERVICES_OFF = "services-off"
    STEP_DONE = "step-done"
    FAILED = "failed"
    RETRY = "retry"
    WAKE = "wake"


TRANSITIONS: dict[tuple[AgentState, AgentEvent], AgentState] = {
    (AgentState.STARTING, AgentEvent.BOOTED): AgentState.RUNNING,
    (AgentState.STARTING, AgentEvent.SERVICES_OFF): AgentState.IDLE,
    (AgentState.STARTING, AgentEvent.FAILED): AgentState.BOOT_BACKOFF,
    (AgentState.BOOT_BACKOFF, AgentEvent.RETRY): AgentState.STARTING,
    (AgentState.RUNNING, AgentEvent.STEP_DONE): AgentState.RUNNING,
    (AgentState.RUNNING, AgentEvent.FAILED): AgentState.STEP_BACKOFF,
    (AgentState.STEP_BACKOFF, AgentEvent.RETRY): AgentState.RUNNING,
    (AgentState.IDLE, AgentEvent.WAKE): AgentState.IDLE,
}
BACKOFF_STATES = frozenset({AgentState.BOOT_BACKOFF, AgentState.STEP_BACKOFF})


def transition(state: AgentState, event: AgentEvent) -> AgentState:
    """The state after ``event``; LocalProtocolError if the table has no such pair."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"agent lifecycle cannot take event {event.value!r} in state {state.value!r}"
        ) from None


class Lifecycle:
    """The current state, and when a backoff state may retry."""

    __slots__ = ("backoff", "retry_at", "state")

    def __init__(self, backoff: Backoff) -> None:
        self.state = AgentState.STARTING
        self.backoff = backoff.reset()
        self.retry_at: datetime | None = None

    def handle(self, event: AgentEvent, now: datetime, rng: random.Random) -> AgentState:
        """Apply ``event`` at ``now``; a failure sets :attr:`retry_at` from the backoff."""
        new = transition(self.state, event)
        if event is AgentEvent.FAILED:
            delay = self.backoff.next_delay(rng)
            self.backoff = self.backoff.increment()
            self.retry_at = now + timedelta(seconds=delay)
        elif event in (AgentEvent.BOOTED, AgentEvent.STEP_DONE):
            self.backoff = self.backoff.reset()
            self.retry_at = None
        elif event is AgentEvent.RETRY:
            self.retry_at = None
        self.state = new
        return new
