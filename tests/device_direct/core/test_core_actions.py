"""The action journal state machine and admission rules (sans-I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from device_direct.core.actions import (
    ACTION_TYPES,
    TRANSITIONS,
    Action,
    ActionEvent,
    ActionJournal,
    ActionPolicy,
    ActionState,
    JournalEntry,
    Result,
    admit,
    entry_from_json,
    entry_to_json,
    params_problem,
    transition,
)
from device_direct.errors import LocalProtocolError, RemoteProtocolError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def action(aid: str = "act-1", type_: str = "get_status", params: dict[str, Any] | None = None,
           expires: timedelta = timedelta(days=1)) -> Action:
    return Action(aid, type_, params or {}, T0 - timedelta(minutes=5), T0 + expires)


@given(st.sampled_from(list(ActionState)), st.sampled_from(list(ActionEvent)))
def test_every_pair_has_a_transition_or_raises(state: ActionState, event: ActionEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(LocalProtocolError, match=event.value):
            transition(state, event)


def test_reported_is_left_only_by_a_redelivery() -> None:
    outs = {e for (s, e) in TRANSITIONS if s is ActionState.REPORTED}
    assert outs == {ActionEvent.REDELIVERED}
    # Nothing leads back to RUNNING from a result: an action never runs twice.
    assert all(after is not ActionState.RUNNING for (s, _), after in TRANSITIONS.items()
               if s in (ActionState.RESULT_PENDING, ActionState.REPORTED))


@pytest.mark.parametrize("policy, act, message", [
    (ActionPolicy(), action(expires=timedelta(0)), None),  # expired wins
    (ActionPolicy(locked_down=True), action(), "locked-down"),
    (ActionPolicy(), action(type_="format_disk"), "unsupported"),
    (ActionPolicy(disabled=frozenset({"get_status"})), action(), "disabled"),
    (ActionPolicy(), action(params={"x": 1}), "invalid-params"),
    (ActionPolicy(), action(type_="upload_logs"), "no-consent"),
])
def test_admission_reasons(policy: ActionPolicy, act: Action, message: str | None) -> None:
    refusal = admit(act, T0, policy)
    assert refusal is not None
    if message is None:
        assert refusal.status == "expired"
    else:
        assert (refusal.status, refusal.detail["message"]) == ("rejected", message)


@pytest.mark.parametrize("type_", ACTION_TYPES)
def test_every_type_is_admitted_with_no_params_when_allowed(type_: str) -> None:
    policy = ActionPolicy(consent_engineering=True)
    assert admit(action(type_=type_), T0, policy) is None


@pytest.mark.parametrize("type_, params, ok", [
    ("upgrade_firmware", {"install": "now"}, True),
    ("upgrade_firmware", {"install": "later"}, False),
    ("start_managed", {"interval_s": 3600, "enabled": True}, True),
    ("start_managed", {"interval_s": 3599}, False),
    ("start_managed", {"interval_s": True}, False),
    ("start_managed", {"enabled": "yes"}, False),
    ("reboot", {"delay": 5}, False),
])
def test_params_are_validated(type_: str, params: dict[str, Any], ok: bool) -> None:
    assert (params_problem(type_, params) is None) is ok


@given(st.dictionaries(st.sampled_from(["id", "type", "params", "issued_at", "expires_at"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                 st.just("2026-03-02T09:00:00+00:00"))))
@settings(max_examples=150)
def test_wire_parsing_accepts_or_names_the_field(doc: dict[str, Any]) -> None:
    try:
        Action.from_wire(doc)
    except RemoteProtocolError as exc:
        assert "actions" in str(exc)


ids = st.sampled_from([f"act-{i}" for i in range(4)])
types = st.sampled_from([*ACTION_TYPES, "bogus"])


class JournalMachine(RuleBasedStateMachine):
    """Random polls, runs, restarts and reports; a run happens at most once per id."""

    seen = Bundle("seen")

    @initialize()
    def setup(self) -> None:
        self.journal = ActionJournal()
        self.now = T0
        self.runs: dict[str, int] = {}

    @rule(target=seen, aid=ids, type_=types)
    def deliver(self, aid: str, type_: str) -> str:
        before = self.journal.get(aid)
        new = self.journal.receive(action(aid, type_), self.now)
        if before is None:
            assert new is not None and new.state is ActionState.RECEIVED
        else:
            assert new is None
            after = self.journal.get(aid)
            assert after is not None
            if before.state is ActionState.REPORTED:
                assert after.state is ActionState.RESULT_PENDING
                assert after.result == before.result
            else:
                assert after.state is before.state
        return aid

    @rule(aid=seen)
    def run(self, aid: str) -> None:
        entry = self.journal.get(aid)
        assert entry is not None
        if entry.state is not ActionState.RECEIVED:
            with pytest.raises(LocalProtocolError):
                self.journal.start(aid)
            return
        refusal = admit(entry.action, self.now, ActionPolicy())
        if refusal is not None:
            self.journal.decide(aid, refusal, self.now)
            return
        self.journal.start(aid)
        self.runs[aid] = self.runs.get(aid, 0) + 1

    @rule(aid=seen, ok=st.booleans())
    def finish(self, aid: str, ok: bool) -> None:
        entry = self.journal.get(aid)
        assert entry is not None
        res = Result("succeeded" if ok else "failed")
        if entry.state is ActionState.RUNNING:
            assert self.journal.finish(aid, res, self.now).state is ActionState.RESULT_PENDING
        else:
            with pytest.raises(LocalProtocolError):
                self.journal.finish(aid, res, self.now)

    @rule(resumes=st.booleans())
    def restart(self, resumes: bool) -> None:
        # Through the persisted form, as a reboot would.
        self.journal = ActionJournal(
            {e.action.id: entry_from_json(entry_to_json(e)) for e in self.journal.entries()})
        for entry in self.journal.entries():
            if entry.state is ActionState.RUNNING:
                after = self.journal.restart(entry.action.id, self.now, resumes=resumes)
                assert after.state is (ActionState.RUNNING if resumes
                                       else ActionState.RESULT_PENDING)

    @rule(delivered=st.booleans())
    def report(self, delivered: bool) -> None:
        for entry in self.journal.to_report(self.now):
            if delivered:
                assert self.journal.reported(entry.action.id, self.now).state is \
                    ActionState.REPORTED
            else:
                self.journal.send_failed(entry.action.id, self.now, 30.0)

    @rule(seconds=st.integers(0, 3 * 86400))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @invariant()
    def runs_at_most_once(self) -> None:
        if hasattr(self, "runs"):
            assert all(n == 1 for n in self.runs.values())

    @invariant()
    def results_only_when_due(self) -> None:
        if not hasattr(self, "journal"):
            return
        for entry in self.journal.entries():
            has = entry.state in (ActionState.RESULT_PENDING, ActionState.REPORTED)
            assert has == (entry.result is not None)
        nxt = self.journal.next_report_at()
        pending = [e for e in self.journal.entries() if e.state is ActionState.RESULT_PENDING]
        assert (nxt is None) == (not pending)


TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_entry_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="result"):
        JournalEntry(action(), ActionState.REPORTED, received_at=T0)
    with pytest.raises(ValueError, match="action id"):
        Action("../etc", "get_status", {}, T0, T0)
    with pytest.raises(ValueError, match="state"):
        entry_from_json({**entry_to_json(JournalEntry(action(), ActionState.RECEIVED, T0)),
                         "state": "lost"})
