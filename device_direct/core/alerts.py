"""Which printer alerts to e-mail, and when: selection, rate limit, digest, retry.

Sans-I/O: :class:`AlertPlanner` is fed the active alerts (``observe(now, alerts)``) and
asked for the next mail (``due(now)``); the shell sends it and reports back with
``sent(now, plan)`` or ``failed(now, plan)``. Nothing here touches a socket or a clock.

Rules:

* an alert is mailed when it is *raised* (it was not active at the previous
  observation) and its severity is one the customer chose;
* the same alert (severity, code, group, group index, location) is mailed at most once
  per ``min_interval``: a jam that clears and comes back every minute makes one mail;
* two mails are at least ``min_gap`` apart; whatever is raised in between waits and goes
  out together as one digest, so a burst of alerts makes one mail, not twenty;
* a mail that could not be sent is retried after a backoff (full jitter, from the
  seeded ``rng``) with everything that came in meanwhile; the queue is bounded.

Theory of operation (the mailer's states; a pair missing from :data:`TRANSITIONS` is a
bug and raises)::

    IDLE --raised--> WAITING --due--> SENDING --sent-all--> IDLE
                        ^                |  \\--sent-some--> WAITING (raised while sending)
                        +----failed------+
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from device_direct.core.retry import Backoff
from device_direct.model import Alert, Severity

SEVERITY_NAMES: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warning-binary-change": Severity.WARNING_BINARY_CHANGE,
    "other": Severity.OTHER,
}
AlertKey = tuple[int, int, int, int, int]


def alert_key(alert: Alert) -> AlertKey:
    """What makes two alert rows "the same alert" for the rate limit (not the index,
    which grows every time the printer raises it again)."""
    return (alert.severity.value, alert.code, alert.group, alert.group_index, alert.location)


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """What to mail and how often."""

    severities: frozenset[Severity] = frozenset({Severity.CRITICAL})
    min_interval: timedelta = timedelta(hours=1)  # per alert
    min_gap: timedelta = timedelta(minutes=1)  # between two mails
    max_queued: int = 100  # alerts waiting for a mail; beyond it the oldest are counted only
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=30.0, cap_s=3600.0))

    def __post_init__(self) -> None:
        if not all(isinstance(s, Severity) for s in self.severities):
            raise ValueError("AlertPolicy.severities must hold Severity values")
        if self.min_interval < timedelta(0) or self.min_gap < timedelta(0):
            raise ValueError("AlertPolicy min_interval and min_gap must be >= 0")
        if self.max_queued < 1:
            raise ValueError(f"AlertPolicy.max_queued must be >= 1, got {self.max_queued}")

    @classmethod
    def from_names(
        cls,
        severities: Iterable[str],
        min_interval_s: float,
        *,
        min_gap: timedelta = timedelta(minutes=1),
    ) -> AlertPolicy:
        """From the config's names (``critical``, ``warning``, ...); unknown names raise."""
        chosen = set()
        for name in severities:
            if name not in SEVERITY_NAMES:
                raise ValueError(
                    f"unknown alert severity {name!r}; one of {', '.join(SEVERITY_NAMES)}"
                )
            chosen.add(SEVERITY_NAMES[name])
        return cls(frozenset(chosen), timedelta(seconds=min_interval_s), min_gap=min_gap)


@dataclass(frozen=True, slots=True)
class MailPlan:
    """One mail to send: the alerts in it (oldest first) and how many were left out."""

    alerts: tuple[Alert, ...]
    attempt: int = 0  # 0 the first time; retries count up
    left_out: int = 0  # alerts dropped from a full queue

    def __post_init__(self) -> None:
        if not self.alerts:
            raise ValueError("a mail needs at least one alert")

    @property
    def digest(self) -> bool:
        return len(self.alerts) > 1 or self.left_out > 0


class MailerState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    SENDING = "sending"


class MailerEvent(enum.Enum):
    RAISED = "raised"
    DUE = "due"
    SENT_ALL = "sent-all"
    SENT_SOME = "sent-some"
    FAILED = "failed"


TRANSITIONS: dict[tuple[MailerState, MailerEvent], MailerState] = {
    (MailerState.IDLE, MailerEvent.RAISED): MailerState.WAITING,
    (MailerState.WAITING, MailerEvent.RAISED): MailerState.WAITING,
    (MailerState.WAITING, MailerEvent.DUE): MailerState.SENDING,
    (MailerState.SENDING, MailerEvent.RAISED): MailerState.SENDING,
    (MailerState.SENDING, MailerEvent.SENT_ALL): MailerState.IDLE,
    (MailerState.SENDING, MailerEvent.SENT_SOME): MailerState.WAITING,
    (MailerState.SENDING, MailerEvent.FAILED): MailerState.WAITING,
}


def transition(state: MailerState, event: MailerEvent) -> MailerState:
    """The next state; a pair not in :data:`TRANSITIONS` raises ValueError."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(
            f"alert mailer: no transition from {state.value} on {event.value}"
        ) from None


class AlertPlanner:
    """Decides which alerts to mail and when (see the module text)."""

    def __init__(self, policy: AlertPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self.state = MailerState.IDLE
        self._active: set[AlertKey] = set()
        self._last_mailed: dict[AlertKey, datetime] = {}
        self._queue: dict[AlertKey, Alert] = {}  # insertion order = oldest first
        self._left_out = 0
        self._not_before: datetime | None = None
        self._backoff = policy.backoff.reset()
        self._plan: MailPlan | None = None
        self.suppressed = 0  # raised again within min_interval: not mailed

    def _go(self, event: MailerEvent) -> None:
        self.state = transition(self.state, event)

    @property
    def queued(self) -> tuple[Alert, ...]:
        return tuple(self._queue.values())

    def observe(self, now: datetime, alerts: Iterable[Alert]) -> int:
        """Take the alerts active at ``now``; returns how many were newly queued."""
        current: dict[AlertKey, Alert] = {}
        for alert in alerts:
            if alert.severity in self.policy.severities:
                current.setdefault(alert_key(alert), alert)
        queued = 0
        for key, alert in current.items():
            if key in self._active or key in self._queue:
                continue
            last = self._last_mailed.get(key)
            if last is not None and now - last < self.policy.min_interval:
                self.suppressed += 1
                continue
            self._queue[key] = alert
            queued += 1
            if len(self._queue) > self.policy.max_queued:
                oldest = next(iter(self._queue))
                if self._plan is not None and oldest in {alert_key(a) for a in self._plan.alerts}:
                    # being sent right now: drop the next one instead
                    oldest = list(self._queue)[len(self._plan.alerts)]
                del self._queue[oldest]
                self._left_out += 1
        self._active = set(current)
        if queued:
            if self.state is MailerState.IDLE and self._not_before is None:
                self._not_before = now
            self._go(MailerEvent.RAISED)
        return queued

    def next_wakeup(self) -> datetime | None:
        """When :meth:`due` may next return a mail (None: nothing waiting)."""
        if self.state is not MailerState.WAITING:
            return None
        return self._not_before

    def due(self, now: datetime) -> MailPlan | None:
        """The mail to send now, if any; the planner then waits for sent/failed."""
        if self.state is not MailerState.WAITING:
            return None
        if self._not_before is not None and now < self._not_before:
            return None
        self._plan = MailPlan(tuple(self._queue.values()), self._backoff.attempt, self._left_out)
        self._go(MailerEvent.DUE)
        return self._plan

    def sent(self, now: datetime, plan: MailPlan) -> None:
        """The mail went out: its alerts are done, the next mail waits ``min_gap``."""
        self._check_plan(plan)
        for alert in plan.alerts:
            key = alert_key(alert)
            self._last_mailed[key] = now
            self._queue.pop(key, None)
        self._left_out = max(0, self._left_out - plan.left_out)
        self._backoff = self._backoff.reset()
        self._not_before = now + self.policy.min_gap
        self._plan = None
        self._go(MailerEvent.SENT_SOME if self._queue else MailerEvent.SENT_ALL)
        # Forget old rate-limit entries so the table does not grow for ever.
        horizon = now - self.policy.min_interval
        self._last_mailed = {k: t for k, t in self._last_mailed.items() if t > horizon}

    def failed(self, now: datetime, plan: MailPlan) -> timedelta:
        """The mail could not be sent: retry after a backoff; returns the delay."""
        self._check_plan(plan)
        delay = timedelta(seconds=self._backoff.next_delay(self._rng))
        self._backoff = self._backoff.increment()
        self._not_before = now + delay
        self._plan = None
        self._go(MailerEvent.FAILED)
        return delay

    def _check_plan(self, plan: MailPlan) -> None:
        if self.state is not MailerState.SENDING or plan is not self._plan:
            raise ValueError("alert mailer: sent/failed reported for a mail that is not out")
