"""The agent lifecycle: every (state, event) pair, and no way out of the table."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_direct.core.lifecycle import (
    BACKOFF_STATES,
    TRANSITIONS,
    AgentEvent,
    AgentState,
    Lifecycle,
    transition,
)
from device_direct.core.retry import Backoff
from device_direct.errors import LocalProtocolError

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


@given(st.sampled_from(AgentState), st.sampled_from(AgentEvent))
def test_every_pair_is_in_the_table_or_refused(state: AgentState, event: AgentEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(LocalProtocolError, match=event.value):
            transition(state, event)


def test_there_is_no_final_state() -> None:
    # The agent process never ends on its own: every state has a way on.
    sources = {state for state, _ in TRANSITIONS}
    assert sources == set(AgentState)


@given(st.lists(st.booleans(), max_size=30), st.integers(0, 2**32))
def test_failures_back_off_and_success_resets(outcomes: list[bool], seed: int) -> None:
    rng = random.Random(seed)
    life = Lifecycle(Backoff(base_s=5, cap_s=600))
    life.handle(AgentEvent.BOOTED, T0, rng)
    now = T0
    for ok in outcomes:
        if ok:
            life.handle(AgentEvent.STEP_DONE, now, rng)
            assert life.state is AgentState.RUNNING and life.retry_at is None
            assert life.backoff.attempt == 0
            continue
        attempt = life.backoff.attempt
        life.handle(AgentEvent.FAILED, now, rng)
        assert life.state in BACKOFF_STATES and life.retry_at is not None
        assert now + timedelta(seconds=1) <= life.retry_at <= now + timedelta(seconds=600)
        assert life.backoff.attempt == attempt + 1
        now = life.retry_at
        life.handle(AgentEvent.RETRY, now, rng)
        assert life.state is AgentState.RUNNING
