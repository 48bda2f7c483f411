"""The alert planner without I/O: selection, rate limit, digest, backoff, state table."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from device_direct.core.alerts import (
    TRANSITIONS,
    AlertPlanner,
    AlertPolicy,
    MailerEvent,
    MailerState,
    MailPlan,
    alert_key,
    transition,
)
from device_direct.core.retry import Backoff
from device_direct.model import Alert, Severity

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def alert(
    code: int, severity: Severity = Severity.CRITICAL, index: int = 1, group: int = 11
) -> Alert:
    return Alert(index, severity, code, group, 1, 0, f"alert {code}", T0)


TONER_EMPTY = alert(1101)
JAM = alert(8, group=13)
TONER_LOW = alert(1104, Severity.WARNING)


def planner(**kwargs: object) -> AlertPlanner:
    policy = AlertPolicy(
        severities=frozenset({Severity.CRITICAL}),
        min_interval=HOUR,
        min_gap=MINUTE,
        **kwargs,  # type: ignore[arg-type]
    )
    return AlertPlanner(policy, random.Random(7))


def test_only_chosen_severities_are_mailed_once_when_raised() -> None:
    p = planner()
    assert p.observe(T0, [TONER_LOW]) == 0
    assert p.due(T0) is None
    assert p.observe(T0, [TONER_LOW, TONER_EMPTY]) == 1
    plan = p.due(T0)
    assert plan is not None and plan.alerts == (TONER_EMPTY,) and not plan.digest
    p.sent(T0, plan)
    # Still active: not mailed again, however long it stays.
    for hours in range(1, 5):
        assert p.observe(T0 + hours * HOUR, [TONER_EMPTY]) == 0
    assert p.state is MailerState.IDLE


def test_same_alert_again_within_interval_is_suppressed() -> None:
    p = planner()
    p.observe(T0, [JAM])
    plan = p.due(T0)
    assert plan is not None
    p.sent(T0, plan)
    p.observe(T0 + MINUTE, [])  # cleared
    again = alert(8, group=13, index=2)  # the printer gives it a new index
    assert p.observe(T0 + 2 * MINUTE, [again]) == 0
    assert p.suppressed == 1
    p.observe(T0 + 3 * MINUTE, [])
    assert p.observe(T0 + HOUR + MINUTE, [again]) == 1


def test_a_burst_becomes_one_digest_after_the_gap() -> None:
    p = planner()
    p.observe(T0, [JAM])
    first = p.due(T0)
    assert first is not None
    p.sent(T0, first)
    burst = [alert(1000 + i) for i in range(5)]
    for i in range(5):
        p.observe(T0 + timedelta(seconds=10 * (i + 1)), [JAM, *burst[: i + 1]])
        assert p.due(T0 + timedelta(seconds=10 * (i + 1))) is None  # inside the gap
    assert p.next_wakeup() == T0 + MINUTE
    digest = p.due(T0 + MINUTE)
    assert digest is not None and digest.digest and digest.alerts == tuple(burst)


def test_failure_backs_off_and_keeps_what_came_in_meanwhile() -> None:
    p = planner(backoff=Backoff(base_s=30.0, cap_s=600.0))
    p.observe(T0, [JAM])
    plan = p.due(T0)
    assert plan is not None
    p.observe(T0, [JAM, TONER_EMPTY])  # raised while the mail is out
    delay = p.failed(T0, plan)
    assert timedelta(seconds=1) <= delay <= timedelta(seconds=30)
    assert p.due(T0 + delay - timedelta(microseconds=1)) is None
    retry = p.due(T0 + delay)
    assert retry is not None and retry.attempt == 1 and retry.alerts == (JAM, TONER_EMPTY)
    p.sent(T0 + delay, retry)
    assert p.state is MailerState.IDLE and p.queued == ()


def test_full_queue_counts_what_it_drops() -> None:
    p = planner(max_queued=3)
    p.observe(T0, [alert(i) for i in range(5)])
    plan = p.due(T0)
    assert plan is not None and len(plan.alerts) == 3 and plan.left_out == 2 and plan.digest
    assert [a.code for a in plan.alerts] == [2, 3, 4]


def test_reports_for_a_mail_that_is_not_out_are_bugs() -> None:
    p = planner()
    with pytest.raises(ValueError, match="not out"):
        p.sent(T0, MailPlan((JAM,)))
    with pytest.raises(ValueError, match="no transition from idle on due"):
        transition(MailerState.IDLE, MailerEvent.DUE)


def test_policy_from_config_names() -> None:
    policy = AlertPolicy.from_names(["critical", "warning"], 600)
    assert policy.severities == {Severity.CRITICAL, Severity.WARNING}
    assert policy.min_interval == timedelta(minutes=10)
    with pytest.raises(ValueError, match="'urgent'"):
        AlertPolicy.from_names(["urgent"], 600)


@settings(max_examples=100)
@given(st.sampled_from(MailerState), st.sampled_from(MailerEvent))
def test_every_pair_is_in_the_table_or_refused(state: MailerState, event: MailerEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) in MailerState
    else:
        with pytest.raises(ValueError):
            transition(state, event)


POOL = [alert(c, s) for c in (8, 1101, 1104, 501) for s in (Severity.CRITICAL, Severity.WARNING)]


class PlannerMachine(RuleBasedStateMachine):
    """Alerts come and go, mails succeed or fail; the rate limit and gap always hold."""

    def __init__(self) -> None:
        super().__init__()
        self.p = AlertPlanner(
            AlertPolicy(frozenset({Severity.CRITICAL}), min_interval=HOUR, min_gap=MINUTE),
            random.Random(1),
        )
        self.now = T0
        self.plan: MailPlan | None = None
        self.mailed: dict[tuple[int, ...], list[datetime]] = {}
        self.last_mail: datetime | None = None

    @rule(seconds=st.integers(0, 4000))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(active=st.lists(st.sampled_from(POOL), max_size=5))
    def observe(self, active: list[Alert]) -> None:
        self.p.observe(self.now, active)

    @precondition(lambda self: self.plan is None)
    @rule()
    def ask(self) -> None:
        self.plan = self.p.due(self.now)
        if self.plan is not None:
            assert self.p.state is MailerState.SENDING
            assert all(a.severity is Severity.CRITICAL for a in self.plan.alerts)

    @precondition(lambda self: self.plan is not None)
    @rule(ok=st.booleans())
    def report(self, ok: bool) -> None:
        assert self.plan is not None
        if ok:
            if self.last_mail is not None:
                assert self.now - self.last_mail >= MINUTE
            self.last_mail = self.now
            for a in self.plan.alerts:
                times = self.mailed.setdefault(alert_key(a), [])
                if times:
                    assert self.now - times[-1] >= HOUR
                times.append(self.now)
            self.p.sent(self.now, self.plan)
        else:
            self.p.failed(self.now, self.plan)
        self.plan = None

    @invariant()
    def state_matches_queue(self) -> None:
        if self.p.state is MailerState.IDLE:
            assert self.p.queued == ()
        if self.p.state is MailerState.WAITING:
            assert self.p.queued and self.p.next_wakeup() is not None


PlannerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
TestPlannerMachine = PlannerMachine.TestCase
