"""The outbox: payloads waiting for the server, as a sans-I/O state machine.

Theory of operation
-------------------
Every payload gets an Upload-Id and a sequence number when it is built
(:meth:`Outbox.allocate`); both stay with it through retries and reboots, so a resend of
something the server already stored is answered 200 (duplicate), never stored twice.

An entry moves through::

    QUEUED --start--> SENDING --ack 201/200--> DONE       (removed; "stored"/"duplicate")
                      SENDING --fail--------> QUEUED     (retry after a backoff delay)
                      SENDING --reject 4xx--> REJECTED   (removed; "rejected", not resent)
                      SENDING --restart-----> QUEUED     (crash or reboot mid-send)
    QUEUED --drop---> DROPPED                            (removed; "dropped")

Every transition is in :data:`TRANSITIONS`; a pair missing from it is a bug on our side
and raises :class:`LocalProtocolError`. DONE, REJECTED and DROPPED are terminal: the
entry leaves the outbox and a :class:`TransferRecord` in the transfer history says what
happened to it. The history goes into the next payloads.

Transfer history: final outcomes (stored, duplicate, rejected, dropped) and failed
attempts are kept apart. Failed attempts keep only the last ``FAILURE_LIMIT``, so a
week of retries can never push a final outcome out. The last ``history_limit`` final
outcomes are kept, and a drop or a rejection is kept beyond that until a payload that
carried it was acknowledged (``delivered_before``: records made before the acknowledged
payload was built reached the server in it), so the server learns of every drop.

Sequence numbers: :meth:`Outbox.allocate` names the number the next payload will
carry without taking it; :meth:`Outbox.add` takes it. A payload that was never added
(its build failed, the disk was full) leaves the number for the next one, so the
server never sees a gap for a payload that did not exist. A payload added but dropped
at once (bigger than the budget) takes its number: the gap is real and recorded.

Order and pacing: oldest (lowest sequence) first, one upload at a time. Only the head
of the queue is considered; while it waits out its backoff the others wait behind it,
so the server sees sequences in order.

Disk budget (the drop rule): the outbox holds at most ``budget_bytes`` of payloads and
``max_entries`` entries. When adding a payload would go over either, the OLDEST QUEUED
payloads are dropped first, one by one, until the new one fits; the payload being sent
is never dropped. If the new payload could not fit even then (it is bigger than the
budget, or than what the in-flight upload leaves), only the new payload is dropped and
the queue is left as it was.
Every drop is recorded as a ``dropped`` transfer, so the server learns of the gap from
the next payload's transfer history and the sequence numbers.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from device_direct.core.payload import MAX_TRANSFERS, TransferRecord, is_upload_id, new_upload_id
from device_direct.errors import LocalProtocolError

HISTORY_LIMIT = 50
# Failed attempts kept for the transfer history (the newest ones).
FAILURE_LIMIT = 20
DEFAULT_MAX_ENTRIES = 500
_UNDELIVERED = frozenset({"dropped", "rejected"})


class EntryState(enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    DONE = "done"
    REJECTED = "rejected"
    DROPPED = "dropped"


class OutboxEvent(enum.Enum):
    START = "start"
    ACK_STORED = "ack-stored"  # 201
    ACK_DUPLICATE = "ack-duplicate"  # 200: the server had it already
    FAIL = "fail"  # network error, timeout, 5xx: retried
    REJECT = "reject"  # 4xx: final
    RESTART = "restart"  # the process died or the device rebooted mid-send
    DROP = "drop"  # pushed out by the disk budget


TRANSITIONS: dict[tuple[EntryState, OutboxEvent], EntryState] = {
    (EntryState.QUEUED, OutboxEvent.START): EntryState.SENDING,
    (EntryState.QUEUED, OutboxEvent.DROP): EntryState.DROPPED,
    (EntryState.SENDING, OutboxEvent.ACK_STORED): EntryState.DONE,
    (EntryState.SENDING, OutboxEvent.ACK_DUPLICATE): EntryState.DONE,
    (EntryState.SENDING, OutboxEvent.FAIL): EntryState.QUEUED,
    (EntryState.SENDING, OutboxEvent.REJECT): EntryState.REJECTED,
    (EntryState.SENDING, OutboxEvent.RESTART): EntryState.QUEUED,
}
LIVE_STATES = frozenset({EntryState.QUEUED, EntryState.SENDING})


def transition(state: EntryState, event: OutboxEvent) -> EntryState:
    """The state after ``event``; raises LocalProtocolError if the table has no such pair."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"outbox entry cannot take event {event.value!r} in state {state.value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class Allocation:
    """An Upload-Id and sequence number reserved for a payload about to be built."""

    upload_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One payload in the outbox (the bytes live in storage, not here)."""

    upload_id: str
    sequence: int
    size: int
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    state: EntryState = EntryState.QUEUED
    last_error: str = ""

    def __post_init__(self) -> None:
        if not is_upload_id(self.upload_id):
            raise ValueError(f"upload_id must be a lower-case UUID, got {self.upload_id!r}")
        for name in ("sequence", "size", "attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"OutboxEntry.{name} must be an integer >= 0, got {value!r}")
        for name in ("created_at", "next_attempt_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"OutboxEntry.{name} must be an aware datetime, got {value!r}")
        if not isinstance(self.state, EntryState):
            raise ValueError(f"OutboxEntry.state must be an EntryState, got {self.state!r}")


@dataclass(frozen=True, slots=True)
class OutboxChange:
    """What one change did to the state an outbox persists (see :meth:`Outbox.change_from`).

    Applied to the state before, in this order, it gives the state after: ``entries``
    are set (added or changed, by Upload-Id), ``removed`` leave, the records at
    ``records_dropped`` (positions in the history before) leave it, ``records_added``
    are appended, and the counter and ``delivered_before`` take their new values."""

    entries: tuple[OutboxEntry, ...]
    removed: tuple[str, ...]
    records_dropped: tuple[int, ...]
    records_added: tuple[TransferRecord, ...]
    next_sequence: int
    delivered_before: datetime | None


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`Outbox.add` decided: the new entry (None if it was dropped) and drops."""

    entry: OutboxEntry | None
    dropped: tuple[OutboxEntry, ...]


class RandomBits(Protocol):
    """Where Upload-Ids get their randomness: ``random.SystemRandom()`` on a device, any
    seeded source in an emulator (a ``random.Random`` or something smaller)."""

    def getrandbits(self, k: int, /) -> int: ...


class Outbox:
    """The outbox state: live entries, transfer history and the sequence counter."""

    __slots__ = (
        "_entries",
        "_records",
        "budget_bytes",
        "delivered_before",
        "history_limit",
        "max_entries",
        "next_sequence",
    )

    def __init__(
        self,
        *,
        budget_bytes: int,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        history_limit: int = HISTORY_LIMIT,
        next_sequence: int = 0,
        entries: Iterable[OutboxEntry] = (),
        history: Iterable[TransferRecord] = (),
        delivered_before: datetime | None = None,
    ) -> None:
        for name, value, minimum in (
            ("budget_bytes", budget_bytes, 1),
            ("max_entries", max_entries, 1),
            ("history_limit", history_limit, 1),
            ("next_sequence", next_sequence, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"Outbox {name} must be an integer >= {minimum}, got {value!r}")
        self.budget_bytes = budget_bytes
        self.max_entries = max_entries
        self.history_limit = history_limit
        self._entries: dict[str, OutboxEntry] = {}
        for entry in sorted(entries, key=lambda e: e.sequence):
            if entry.state not in LIVE_STATES:
                raise ValueError(f"entry {entry.upload_id} is {entry.state.value}, not live")
            if entry.upload_id in self._entries:
                raise ValueError(f"entry {entry.upload_id} appears twice")
            self._entries[entry.upload_id] = entry
        sequences = [e.sequence for e in self._entries.values()]
        if len(set(sequences)) != len(sequences):
            raise ValueError("two outbox entries share a sequence number")
        # The counter must stay ahead of everything on record, whatever was persisted.
        self.next_sequence = max([next_sequence, *(s + 1 for s in sequences)])
        if delivered_before is not None and delivered_before.tzinfo is None:
            raise ValueError("Outbox delivered_before must be an aware datetime")
        self.delivered_before = delivered_before
        self._records: list[TransferRecord] = []
        for record in history:
            self._record(record)

    # -- reading ---------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[OutboxEntry, ...]:
        """Live entries, oldest (lowest sequence) first."""
        return tuple(sorted(self._entries.values(), key=lambda e: e.sequence))

    @property
    def history(self) -> tuple[TransferRecord, ...]:
        """The transfer history for the next payload, oldest first.

        Final outcomes and the last failed attempts, merged by time; at most
        MAX_TRANSFERS records (what a payload carries), failed attempts and delivered
        outcomes giving way first."""
        records = list(self._records)
        while len(records) > MAX_TRANSFERS:
            gone = next((i for i, r in enumerate(records) if r.result == "failed"), None)
            if gone is None:
                gone = next((i for i, r in enumerate(records) if not self._undelivered(r)), 0)
            del records[gone]
        return tuple(records)

    def records(self) -> tuple[TransferRecord, ...]:
        """Every record kept (for persistence), oldest first."""
        return tuple(self._records)

    def undelivered(self) -> tuple[TransferRecord, ...]:
        """Drops and rejections no acknowledged payload has carried to the server yet."""
        return tuple(r for r in self._records if self._undelivered(r))

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def get(self, upload_id: str) -> OutboxEntry:
        """The live entry with this Upload-Id; LocalProtocolError if there is none."""
        try:
            return self._entries[upload_id]
        except KeyError:
            raise LocalProtocolError(f"no live outbox entry with upload id {upload_id}") from None

    def __contains__(self, upload_id: object) -> bool:
        return upload_id in self._entries

    def sending(self) -> OutboxEntry | None:
        """The entry being sent, if any."""
        return next((e for e in self._entries.values() if e.state is EntryState.SENDING), None)

    def next_due(self, now: datetime) -> OutboxEntry | None:
        """The entry to send at ``now``: the head of the queue once its backoff is over."""
        if self.sending() is not None:
            return None
        head = self._head()
        return head if head is not None and head.next_attempt_at <= now else None

    def next_wakeup(self) -> datetime | None:
        """When the head of the queue becomes due (None if nothing is queued)."""
        head = self._head()
        return head.next_attempt_at if head is not None else None

    def _head(self) -> OutboxEntry | None:
        queued = [e for e in self._entries.values() if e.state is EntryState.QUEUED]
        return min(queued, key=lambda e: e.sequence, default=None)

    def copy(self) -> Outbox:
        """An independent copy (entries and records are immutable, so this is cheap).

        The state was validated when it was made and every change since kept it valid,
        so the copy takes it as it is: going through ``__init__`` would check it again
        and re-apply the history limits record by record (quadratic in the history,
        three times per device-day: a tenth of a fleet's outbox work at 30 records)."""
        twin = Outbox.__new__(Outbox)
        twin.budget_bytes = self.budget_bytes
        twin.max_entries = self.max_entries
        twin.history_limit = self.history_limit
        twin.next_sequence = self.next_sequence
        twin.delivered_before = self.delivered_before
        twin._entries = dict(self._entries)
        twin._records = list(self._records)
        return twin

    def change_from(self, before: Outbox) -> OutboxChange:
        """What turned ``before`` into this outbox, for a journal of small changes.

        Entries and records are immutable, so identity tells what changed. The history
        only ever loses records and gains new ones at its end, so the records of
        ``before`` found in order at the start of this history are the ones kept."""
        old, new = before._entries, self._entries
        entries = tuple(e for k, e in new.items() if old.get(k) is not e)
        removed = tuple(k for k in old if k not in new)
        was, now = before._records, self._records
        kept = len(was)
        dropped: list[int] = []
        if now[:kept] != was:  # (equal when identical: the comparison runs in C)
            kept = 0
            for i, record in enumerate(was):
                if kept < len(now) and now[kept] is record:
                    kept += 1
                else:
                    dropped.append(i)
        return OutboxChange(entries, removed, tuple(dropped), tuple(now[kept:]),
                            self.next_sequence, self.delivered_before)

    # -- changing --------------------------------------------------------------------------

    def allocate(self, rng: RandomBits) -> Allocation:
        """The sequence number the next payload will carry, and a fresh Upload-Id.

        The number is taken only by :meth:`add`: until then, allocating again gives
        the same number (with a new Upload-Id).

        The id mixes ``rng`` with the sequence number, so even a device whose generator
        restarts from the same seed after a reboot never repeats the id of a payload it
        stored (a sequence number is reused only when its payload was never stored).
        Real devices pass ``random.SystemRandom()``.
        """
        sequence = self.next_sequence
        digest = hashlib.sha256(f"{rng.getrandbits(128)}:{sequence}".encode()).digest()
        return Allocation(new_upload_id(int.from_bytes(digest[:16], "big")), sequence)

    def add(self, upload_id: str, sequence: int, size: int, now: datetime) -> AddResult:
        """Queue a built payload, applying the drop rule (see the module docstring)."""
        if upload_id in self._entries:
            raise LocalProtocolError(f"upload id {upload_id} is already in the outbox")
        if sequence != self.next_sequence:
            raise LocalProtocolError(
                f"sequence {sequence} was not allocated by this outbox (next is "
                f"{self.next_sequence})")
        self.next_sequence = sequence + 1
        entry = OutboxEntry(upload_id, sequence, size, created_at=now, next_attempt_at=now)
        in_flight = self.sending()
        # Decide before dropping anything: a payload that could not fit even in an
        # otherwise empty outbox must not cost the queue its older payloads.
        room = self.budget_bytes - (in_flight.size if in_flight else 0)
        if size > room or (in_flight is not None and self.max_entries < 2):
            detail = "payload does not fit in the outbox budget"
            self._record(TransferRecord(now, "dropped", size, upload_id, detail))
            return AddResult(None, ())
        dropped: list[OutboxEntry] = []
        while not self._fits(entry):
            victim = self._head()  # oldest queued; the one being sent is never a victim
            assert victim is not None, "room was checked above"
            dropped.append(self._drop(victim, now, "outbox over budget: oldest dropped"))
        self._entries[upload_id] = entry
        return AddResult(entry, tuple(dropped))

    def _fits(self, entry: OutboxEntry) -> bool:
        return (
            self.used_bytes + entry.size <= self.budget_bytes
            and len(self._entries) + 1 <= self.max_entries
        )

    def enforce_budget(self, now: datetime) -> tuple[OutboxEntry, ...]:
        """Drop oldest queued entries until the outbox is within budget (after a reopen
        with a smaller budget, say). Returns what was dropped."""
        dropped: list[OutboxEntry] = []
        while self.used_bytes > self.budget_bytes or len(self._entries) > self.max_entries:
            victim = self._head()
            if victim is None:
                break
            dropped.append(self._drop(victim, now, "outbox over budget: oldest dropped"))
        return tuple(dropped)

    def drop(self, upload_id: str, now: datetime, detail: str) -> OutboxEntry:
        """Drop a queued entry on purpose (for example a payload found corrupt)."""
        return self._drop(self.get(upload_id), now, detail)

    def _drop(self, entry: OutboxEntry, now: datetime, detail: str) -> OutboxEntry:
        gone = self._apply(entry, OutboxEvent.DROP)
        self._record(TransferRecord(now, "dropped", entry.size, entry.upload_id, detail))
        return gone

    def start(self, upload_id: str, now: datetime) -> OutboxEntry:
        """The upload of ``upload_id`` begins: QUEUED -> SENDING, one more attempt."""
        entry = self.get(upload_id)
        if entry.state is EntryState.QUEUED and self.sending() is not None:
            raise LocalProtocolError("another upload is already in flight")
        return self._apply(entry, OutboxEvent.START, attempts=entry.attempts + 1)

    def acknowledge(
        self, upload_id: str, result: Literal["stored", "duplicate"], now: datetime
    ) -> TransferRecord:
        """The server answered 201 (``"stored"``) or 200 (``"duplicate"``)."""
        if result not in ("stored", "duplicate"):
            raise LocalProtocolError(f"acknowledge needs 'stored' or 'duplicate', got {result!r}")
        event = OutboxEvent.ACK_STORED if result == "stored" else OutboxEvent.ACK_DUPLICATE
        entry = self.get(upload_id)
        self._apply(entry, event)
        # The payload carried the history as it was when it was built: what was
        # recorded before then has reached the server.
        if self.delivered_before is None or entry.created_at > self.delivered_before:
            self.delivered_before = entry.created_at
        return self._record(TransferRecord(now, result, entry.size, upload_id))

    def fail(self, upload_id: str, now: datetime, delay_s: float, error: str) -> OutboxEntry:
        """A retryable failure: back to QUEUED, next attempt after ``delay_s`` seconds."""
        if not delay_s >= 0:
            raise LocalProtocolError(f"retry delay must be >= 0, got {delay_s!r}")
        entry = self.get(upload_id)
        updated = self._apply(
            entry,
            OutboxEvent.FAIL,
            next_attempt_at=now + timedelta(seconds=delay_s),
            last_error=error,
        )
        self._record(TransferRecord(now, "failed", entry.size, upload_id, error))
        return updated

    def reject(self, upload_id: str, now: datetime, status: int, detail: str) -> TransferRecord:
        """The server refused the payload (4xx): removed, recorded, never resent."""
        entry = self.get(upload_id)
        self._apply(entry, OutboxEvent.REJECT)
        text = f"{status} {detail}".strip()
        return self._record(TransferRecord(now, "rejected", entry.size, upload_id, text))

    def restart(self) -> tuple[OutboxEntry, ...]:
        """After a crash or reboot: any upload in flight goes back to the queue.

        It may or may not have reached the server; resending it with the same Upload-Id
        is safe (the server answers 200 duplicate).
        """
        sending = [e for e in self._entries.values() if e.state is EntryState.SENDING]
        return tuple(self._apply(e, OutboxEvent.RESTART) for e in sending)

    def _apply(self, entry: OutboxEntry, event: OutboxEvent, *, attempts: int | None = None,
               next_attempt_at: datetime | None = None, last_error: str | None = None
               ) -> OutboxEntry:
        state = transition(entry.state, event)
        # Made directly, not by dataclasses.replace (which looks up the fields each time):
        # two or three of these a device-day.
        updated = OutboxEntry(
            entry.upload_id, entry.sequence, entry.size, entry.created_at,
            entry.next_attempt_at if next_attempt_at is None else next_attempt_at,
            entry.attempts if attempts is None else attempts, state,
            entry.last_error if last_error is None else last_error)
        if state in LIVE_STATES:
            self._entries[entry.upload_id] = updated
        else:
            del self._entries[entry.upload_id]
        return updated

    def _undelivered(self, record: TransferRecord) -> bool:
        return record.result in _UNDELIVERED and (
            self.delivered_before is None or record.at >= self.delivered_before)

    def _record(self, record: TransferRecord) -> TransferRecord:
        records = self._records
        records.append(record)
        failures = [i for i, r in enumerate(records) if r.result == "failed"]
        if len(failures) > FAILURE_LIMIT:
            del records[failures[0]]
        finals = [i for i, r in enumerate(records) if r.result != "failed"]
        if len(finals) > self.history_limit:
            # The oldest delivered outcome goes; undelivered drops and rejections stay
            # (up to what one payload can carry beside the failed attempts).
            delivered = [i for i in finals if not self._undelivered(records[i])]
            if delivered:
                del records[delivered[0]]
            elif len(finals) > max(self.history_limit, MAX_TRANSFERS - FAILURE_LIMIT):
                del records[finals[0]]
        return record
