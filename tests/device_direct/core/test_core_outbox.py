"""The outbox state machine: transition table, drop rule, stateful property test."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from device_direct.core.outbox import (
    TRANSITIONS,
    EntryState,
    Outbox,
    OutboxEvent,
    transition,
)
from device_direct.errors import LocalProtocolError

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def test_every_state_event_pair_is_in_the_table_or_refused() -> None:
    for state, event in itertools.product(EntryState, OutboxEvent):
        if (state, event) in TRANSITIONS:
            assert transition(state, event) is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(LocalProtocolError, match=event.value):
                transition(state, event)
    # Terminal states take no event at all.
    for state in (EntryState.DONE, EntryState.REJECTED, EntryState.DROPPED):
        assert not any(s is state for s, _ in TRANSITIONS)


def _add(box: Outbox, size: int, now: datetime = T0, seed: int = 0):  # type: ignore[no-untyped-def]
    alloc = box.allocate(random.Random(seed))
    return alloc, box.add(alloc.upload_id, alloc.sequence, size, now)


def test_happy_path_and_history() -> None:
    box = Outbox(budget_bytes=10_000)
    alloc, result = _add(box, 100)
    assert result.entry is not None and result.dropped == ()
    assert box.next_due(T0) == result.entry
    box.start(alloc.upload_id, T0)
    assert box.next_due(T0) is None  # one at a time
    box.acknowledge(alloc.upload_id, "stored", T0)
    assert box.entries == ()
    assert [r.result for r in box.history] == ["stored"]
    with pytest.raises(LocalProtocolError):
        box.start(alloc.upload_id, T0)  # acknowledged: never sent again


def test_a_copy_is_independent_and_equal_to_a_rebuilt_box() -> None:
    box = Outbox(budget_bytes=10_000, history_limit=3)
    for seed in range(6):  # more acknowledged payloads than the history keeps
        alloc, _ = _add(box, 100, seed=seed)
        box.start(alloc.upload_id, T0)
        box.acknowledge(alloc.upload_id, "stored", T0 + timedelta(minutes=seed))
    queued, _ = _add(box, 50, seed=9)
    twin = box.copy()
    rebuilt = Outbox(budget_bytes=box.budget_bytes, history_limit=3,
                     next_sequence=box.next_sequence, entries=box.entries,
                     history=box.records())
    assert (twin.entries, twin.records(), twin.next_sequence) == (
        rebuilt.entries, rebuilt.records(), rebuilt.next_sequence)
    twin.start(queued.upload_id, T0)
    twin.acknowledge(queued.upload_id, "stored", T0 + timedelta(hours=1))
    assert [e.upload_id for e in box.entries] == [queued.upload_id]  # untouched
    assert len(box.records()) == 3 and len(twin.records()) == 3
    assert twin.records()[-1].upload_id == queued.upload_id != box.records()[-1].upload_id


def test_failure_backs_off_and_blocks_the_queue_in_order() -> None:
    box = Outbox(budget_bytes=10_000)
    first, _ = _add(box, 100, seed=1)
    second, _ = _add(box, 100, seed=2)
    box.start(first.upload_id, T0)
    box.fail(first.upload_id, T0, 30.0, "503")
    assert box.next_due(T0 + timedelta(seconds=29)) is None
    assert box.next_wakeup() == T0 + timedelta(seconds=30)
    due = box.next_due(T0 + timedelta(seconds=30))
    assert due is not None and due.upload_id == first.upload_id and due.attempts == 1
    assert box.history[-1].result == "failed" and box.history[-1].detail == "503"
    del second


def test_reject_is_final_and_recorded() -> None:
    box = Outbox(budget_bytes=10_000)
    alloc, _ = _add(box, 100)
    box.start(alloc.upload_id, T0)
    record = box.reject(alloc.upload_id, T0, 400, "invalid-payload")
    assert record.result == "rejected" and "400" in record.detail
    assert alloc.upload_id not in box


def test_ack_of_a_queued_entry_is_a_local_protocol_error() -> None:
    box = Outbox(budget_bytes=10_000)
    alloc, _ = _add(box, 100)
    with pytest.raises(LocalProtocolError, match="ack-stored"):
        box.acknowledge(alloc.upload_id, "stored", T0)
    with pytest.raises(LocalProtocolError, match="not allocated"):
        box.add("12345678-1234-4234-8234-123456789abc", 99, 10, T0)


def test_drop_rule_oldest_queued_first_never_the_one_in_flight() -> None:
    box = Outbox(budget_bytes=1000)
    a, _ = _add(box, 400, seed=1)
    b, _ = _add(box, 400, seed=2)
    box.start(a.upload_id, T0)
    c, result = _add(box, 400, seed=3)
    # a is in flight, so b (the oldest queued) goes.
    assert [d.upload_id for d in result.dropped] == [b.upload_id]
    assert result.entry is not None
    assert box.history[-1].result == "dropped" and box.history[-1].upload_id == b.upload_id
    d, result = _add(box, 400, seed=4)
    assert [x.upload_id for x in result.dropped] == [c.upload_id]
    assert result.entry is not None
    # Too big to fit next to the in-flight one: only the new payload is dropped.
    big, result = _add(box, 700, seed=5)
    assert result.entry is None and result.dropped == ()
    assert [e.upload_id for e in box.entries] == [a.upload_id, d.upload_id]
    assert box.history[-1].upload_id == big.upload_id
    assert box.used_bytes <= 1000
    del d


def test_max_entries_is_a_budget_too() -> None:
    box = Outbox(budget_bytes=10_000, max_entries=2)
    ids = [_add(box, 1, seed=i)[0].upload_id for i in range(3)]
    assert [e.upload_id for e in box.entries] == ids[1:]


def test_restart_puts_the_in_flight_upload_back() -> None:
    box = Outbox(budget_bytes=10_000)
    alloc, _ = _add(box, 100)
    box.start(alloc.upload_id, T0)
    reopened = Outbox(budget_bytes=10_000, entries=box.entries, next_sequence=0)
    assert reopened.next_sequence == 1  # never behind what is on record
    (back,) = reopened.restart()
    assert back.state is EntryState.QUEUED and back.attempts == 1


def test_upload_ids_differ_even_with_a_restarted_generator() -> None:
    box = Outbox(budget_bytes=10_000)
    a = box.allocate(random.Random(1))
    box.add(a.upload_id, a.sequence, 10, T0)
    b = box.allocate(random.Random(1))
    assert a.upload_id != b.upload_id and a.sequence + 1 == b.sequence


def test_a_number_is_taken_only_when_its_payload_is_added() -> None:
    # A build that failed after allocate() must not leave the server a false gap.
    box = Outbox(budget_bytes=10_000)
    lost = box.allocate(random.Random(1))  # the build fails: never added
    again = box.allocate(random.Random(2))
    assert again.sequence == lost.sequence == 0
    box.add(again.upload_id, again.sequence, 10, T0)
    assert box.allocate(random.Random(3)).sequence == 1
    with pytest.raises(LocalProtocolError, match="not allocated"):
        box.add(lost.upload_id, lost.sequence, 10, T0)


# -- stateful --------------------------------------------------------------------------------


class OutboxMachine(RuleBasedStateMachine):
    """Random adds, failed builds, sends, answers, crashes and lost metadata against a
    model of what must hold: no payload lost without a drop record that reaches the
    server, no sequence number used twice, no gap the server cannot explain."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = 5000
        # A short history, so that outcomes age out of it during a run.
        self.box = Outbox(budget_bytes=self.budget, max_entries=6, history_limit=3)
        self.rng = random.Random(0)
        self.now = T0
        self.added: dict[str, int] = {}  # upload id -> sequence
        self.acked: set[str] = set()
        self.rejected: set[str] = set()
        self.dropped: set[str] = set()
        self.sequences: list[int] = []
        self.in_flight: str | None = None
        self.carried: dict[str, set[str]] = {}  # payload -> drops in its history
        self.server_knows: set[str] = set()  # drops the server learned of
        self.lost_with_meta: set[str] = set()  # drops whose record went with meta.json

    @rule(size=st.integers(1, 3000))
    def add(self, size: int) -> None:
        alloc = self.box.allocate(self.rng)
        self.sequences.append(alloc.sequence)
        # The payload carries the history as it is when it is built.
        self.carried[alloc.upload_id] = {
            r.upload_id for r in self.box.history if r.result == "dropped" and r.upload_id}
        result = self.box.add(alloc.upload_id, alloc.sequence, size, self.now)
        self.added[alloc.upload_id] = alloc.sequence
        for gone in result.dropped:
            assert gone.upload_id != self.in_flight, "dropped the upload in flight"
            self.dropped.add(gone.upload_id)
        if result.entry is None:
            self.dropped.add(alloc.upload_id)

    @rule(seconds=st.integers(0, 7200))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.in_flight is None)
    @rule()
    def start(self) -> None:
        entry = self.box.next_due(self.now)
        if entry is None:
            return
        assert entry.upload_id not in self.acked | self.rejected | self.dropped
        assert entry.sequence == min(e.sequence for e in self.box.entries)
        self.box.start(entry.upload_id, self.now)
        self.in_flight = entry.upload_id

    @precondition(lambda self: self.in_flight is not None)
    @rule(duplicate=st.booleans())
    def ack(self, duplicate: bool) -> None:
        assert self.in_flight is not None
        self.box.acknowledge(self.in_flight, "duplicate" if duplicate else "stored", self.now)
        self.server_knows |= self.carried[self.in_flight]
        self.acked.add(self.in_flight)
        self.in_flight = None

    @precondition(lambda self: self.in_flight is not None)
    @rule(delay=st.floats(1.0, 3600.0))
    def fail_5xx(self, delay: float) -> None:
        assert self.in_flight is not None
        self.box.fail(self.in_flight, self.now, delay, "503 unavailable")
        self.in_flight = None

    @precondition(lambda self: self.in_flight is not None)
    @rule()
    def reject_4xx(self) -> None:
        assert self.in_flight is not None
        self.box.reject(self.in_flight, self.now, 400, "invalid")
        self.rejected.add(self.in_flight)
        self.in_flight = None

    @rule()
    def crash_restart(self) -> None:
        self.box = Outbox(
            budget_bytes=self.budget,
            max_entries=6,
            history_limit=3,
            next_sequence=self.box.next_sequence,
            entries=self.box.entries,
            history=self.box.records(),
            delivered_before=self.box.delivered_before,
        )
        self.box.restart()
        self.in_flight = None

    @rule()
    def build_fails(self) -> None:
        # allocate() and then the build (model, XML, zip) or the disk fails.
        before = self.box.next_sequence
        self.box.allocate(self.rng)
        assert self.box.next_sequence == before, "a payload never stored took a number"

    @rule(times=st.integers(1, 60))
    def outage(self, times: int) -> None:
        # Many failed attempts in a row (a long outage with a short retry cap).
        for _ in range(times):
            entry = self.box.next_due(self.now)
            if entry is None or self.in_flight is not None:
                return
            self.box.start(entry.upload_id, self.now)
            self.box.fail(entry.upload_id, self.now, 0, "timeout")

    @rule()
    def lose_meta_json(self) -> None:
        # meta.json is lost: the store rebuilds the entries from the payload files and
        # the counter from its spare copy; the history is gone with the file.
        undelivered = {r.upload_id for r in self.box.undelivered() if r.upload_id}
        self.lost_with_meta |= undelivered - self.server_knows
        self.box = Outbox(
            budget_bytes=self.budget, max_entries=6, history_limit=3,
            next_sequence=self.box.next_sequence,
            entries=[replace(e, attempts=0) for e in self.box.entries],
        )
        self.box.restart()
        self.in_flight = None

    @rule(data=st.data())
    def illegal_event_is_refused(self, data: st.DataObject) -> None:
        queued = [e for e in self.box.entries if e.state is EntryState.QUEUED]
        if queued:
            target = data.draw(st.sampled_from(queued))
            with pytest.raises(LocalProtocolError):
                self.box.acknowledge(target.upload_id, "stored", self.now)
        for done in list(self.acked)[:1]:
            with pytest.raises(LocalProtocolError):
                self.box.start(done, self.now)

    @invariant()
    def every_payload_is_accounted_for_exactly_once(self) -> None:
        live = {e.upload_id for e in self.box.entries}
        fates = [live, self.acked, self.rejected, self.dropped]
        for upload_id in self.added:
            assert sum(upload_id in fate for fate in fates) == 1, upload_id
        # Every drop has reached the server, or will with the next payload.
        recorded = {r.upload_id for r in self.box.history if r.result == "dropped"}
        for upload_id in self.dropped - self.lost_with_meta:
            assert upload_id in self.server_knows or upload_id in recorded, upload_id

    @invariant()
    def no_false_gap(self) -> None:
        # Every number below the counter was taken by a payload that was stored or
        # recorded as dropped: a gap the server sees is one it is told of.
        assert sorted(self.added.values()) == list(range(self.box.next_sequence))

    @invariant()
    def sequences_strictly_increase(self) -> None:
        assert all(a < b for a, b in itertools.pairwise(self.sequences))
        live = [e.sequence for e in self.box.entries]
        assert live == sorted(set(live))

    @invariant()
    def within_budget(self) -> None:
        assert self.box.used_bytes <= self.budget
        assert len(self.box.entries) <= 6
        assert sum(e.state is EntryState.SENDING for e in self.box.entries) <= 1


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
