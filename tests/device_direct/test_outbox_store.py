"""The persistent outbox: crash at every write step, corrupt files, budget, disk full."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_direct import outbox_store
from device_direct.core.payload import NAMESPACE, PayloadMeta, pack_zip, read_payload
from device_direct.errors import PayloadError, StorageError
from device_direct.outbox_meta import JOURNAL_LIMIT, meta_bytes
from device_direct.outbox_store import (
    META_NAME,
    OUTBOX_DIR,
    QUARANTINE_DIR,
    SEQUENCE_NAME,
    OutboxStore,
)
from emulator.clock import VirtualClock

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def payload(upload_id: str, pad: int = 0) -> bytes:
    """A minimal payload; ``pad`` adds about that many incompressible bytes."""
    noise = random.Random(pad).randbytes(pad // 2).hex()
    xml = (
        f"<?xml version='1.0' encoding='UTF-8'?>"
        f'<DeviceData xmlns="{NAMESPACE}" uploadId="{upload_id}" pad="{noise}"/>'
    ).encode()
    return pack_zip(xml)


def open_store(path: Path, budget: int = 1 << 20, seed: int = 1) -> OutboxStore:
    return OutboxStore.open(
        path, budget_bytes=budget, clock=VirtualClock(T0), rng=random.Random(seed)
    )


def add_one(store: OutboxStore, pad: int = 0) -> tuple[PayloadMeta, int]:
    alloc = store.allocate()
    meta = PayloadMeta(alloc.upload_id, alloc.sequence, T0)
    data = payload(alloc.upload_id, pad)
    store.add(data, meta)
    return meta, len(data)


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None and entry.upload_id == a.upload_id
    data = store.begin_send(entry, T0)
    assert read_payload(data)
    store.mark_sent(entry, "stored", T0)
    again = open_store(tmp_path)
    assert [e.upload_id for e in again.entries()] == [b.upload_id]
    assert [r.result for r in again.history()] == ["stored"]
    assert again.allocate().sequence == 2
    files = sorted(p.name for p in (tmp_path / OUTBOX_DIR).iterdir())
    assert files == sorted([META_NAME, QUARANTINE_DIR, SEQUENCE_NAME,
                            f"{1:012d}-{b.upload_id}.zip"])


def test_failed_attempts_and_backoff_survive_a_restart(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    store.begin_send(entry, T0)
    store.mark_failed(entry, "503", T0, 600.0)
    again = open_store(tmp_path)
    (back,) = again.entries()
    assert back.attempts == 1 and back.next_attempt_at == T0 + timedelta(seconds=600)
    assert again.next_due(T0 + timedelta(seconds=599)) is None
    # A crash while sending: the entry comes back queued, its attempt counted.
    due = again.next_due(T0 + timedelta(seconds=600))
    assert due is not None
    again.begin_send(due, T0 + timedelta(seconds=600))
    third = open_store(tmp_path)
    assert third.entries()[0].attempts == 2
    assert third.entries()[0].upload_id == a.upload_id


def test_rejected_is_removed_and_recorded(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    store.begin_send(entry, T0)
    store.mark_rejected(entry, 400, "invalid-payload", T0)
    again = open_store(tmp_path)
    assert again.entries() == ()
    assert again.history()[-1].result == "rejected"


def test_budget_drops_oldest_and_deletes_their_files(tmp_path: Path) -> None:
    size = len(payload("12345678-1234-4234-8234-123456789abc", 0))
    store = open_store(tmp_path, budget=size * 2 + size // 2)
    first, _ = add_one(store)
    second, _ = add_one(store)
    third, _ = add_one(store)
    assert [e.upload_id for e in store.entries()] == [second.upload_id, third.upload_id]
    dropped = [r for r in store.history() if r.result == "dropped"]
    assert [r.upload_id for r in dropped] == [first.upload_id]
    assert not any(first.upload_id in p.name for p in (tmp_path / OUTBOX_DIR).iterdir())
    with pytest.raises(StorageError, match="does not fit"):
        add_one(store, pad=size * 4)
    assert store.history()[-1].result == "dropped"
    # Reopening with a smaller budget applies the same rule.
    smaller = open_store(tmp_path, budget=size + size // 2)
    assert [e.upload_id for e in smaller.entries()] == [third.upload_id]


def test_add_refuses_a_payload_that_is_not_the_one_announced(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    alloc = store.allocate()
    meta = PayloadMeta(alloc.upload_id, alloc.sequence, T0)
    with pytest.raises(PayloadError, match="uploadId"):
        store.add(payload("12345678-1234-4234-8234-123456789abc"), meta)
    with pytest.raises(PayloadError, match="not a zip"):
        store.add(b"junk", meta)


def test_corrupt_and_unknown_files_are_quarantined_not_fatal(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    c, _ = add_one(store)
    outbox = tmp_path / OUTBOX_DIR
    bad = outbox / f"{1:012d}-{b.upload_id}.zip"
    bad.write_bytes(bad.read_bytes()[:20])  # torn by a broken flash sector
    (outbox / "notes.txt").write_text("hello")
    again = open_store(tmp_path)
    assert [e.upload_id for e in again.entries()] == [a.upload_id, c.upload_id]
    record = again.history()[-1]
    assert record.result == "dropped" and record.upload_id == b.upload_id
    quarantined = sorted(p.name for p in (outbox / QUARANTINE_DIR).iterdir())
    assert quarantined == sorted([bad.name, "notes.txt"])


def test_a_number_whose_payload_never_got_stored_is_used_again(tmp_path: Path) -> None:
    # No payload carried it out of the device, so reusing it leaves the server no false
    # gap in the sequence; a payload that did get stored always moves the counter on.
    store = open_store(tmp_path)
    first, _ = add_one(store)
    lost = store.allocate()  # then the power goes, before the payload is stored
    again = open_store(tmp_path)
    reused = again.allocate()
    assert reused.sequence == lost.sequence == first.sequence + 1
    again.add(payload(reused.upload_id), PayloadMeta(reused.upload_id, reused.sequence, T0))
    assert open_store(tmp_path).allocate().sequence == reused.sequence + 1


def test_corrupt_metadata_is_quarantined_and_entries_recovered(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    store.allocate()  # sequence 2 reserved, never stored
    (tmp_path / OUTBOX_DIR / META_NAME).write_text("{not json")
    again = open_store(tmp_path)
    assert [e.upload_id for e in again.entries()] == [a.upload_id, b.upload_id]
    assert again.allocate().sequence >= 2
    assert (tmp_path / OUTBOX_DIR / QUARANTINE_DIR / META_NAME).exists()
    # The repaired metadata is valid JSON again.
    json.loads((tmp_path / OUTBOX_DIR / META_NAME).read_text())


def test_missing_payload_file_does_not_block_the_queue(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    os.unlink(store.path_of(entry))
    with pytest.raises(StorageError, match="missing"):
        store.begin_send(entry, T0)
    nxt = store.next_due(T0)
    assert nxt is not None and nxt.upload_id == b.upload_id
    del a


def test_disk_full_is_a_storage_error_and_the_store_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="disk is full"):
        add_one(store)
    monkeypatch.setattr(os, "write", real_write)
    b, _ = add_one(store)
    assert [e.upload_id for e in store.entries()] == [a.upload_id, b.upload_id]
    assert [e.upload_id for e in open_store(tmp_path).entries()] == [a.upload_id, b.upload_id]


def test_disk_full_on_the_send_path_neither_spins_nor_resends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    entry = store.next_due(T0)
    assert entry is not None
    store.begin_send(entry, T0)  # metadata not saved, the send goes ahead
    assert store.next_due(T0) is None  # in flight: not handed out twice
    store.mark_failed(entry, "503", T0, 60)
    assert store.next_due(T0) is None  # the backoff holds in memory
    again = store.next_due(T0 + timedelta(seconds=60))
    assert again is not None
    store.begin_send(again, T0)
    store.mark_sent(again, "stored", T0)
    assert store.entries() == ()
    monkeypatch.undo()
    assert open_store(tmp_path).entries() == ()  # the file is gone: never resent
    del a


def test_unreadable_payload_is_dropped_not_retried_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    add_one(store)
    b, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    # A payload "file" that cannot be read: a directory in its place (EISDIR).
    path = store.path_of(entry)
    path.unlink()
    path.mkdir()
    with pytest.raises(StorageError, match="cannot be read"):
        store.begin_send(entry, T0)
    nxt = store.next_due(T0)
    assert nxt is not None and nxt.upload_id == b.upload_id
    assert store.history()[-1].result == "dropped"


@pytest.mark.parametrize("change", [b"extra", None], ids=["grew", "shrank"])
def test_a_payload_changed_on_disk_is_quarantined_and_dropped(
    tmp_path: Path, change: bytes | None
) -> None:
    store = open_store(tmp_path)
    add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    path = store.path_of(entry)
    data = path.read_bytes()
    path.write_bytes(data + change if change is not None else data[:-1])
    with pytest.raises(StorageError, match="changed on disk"):
        store.begin_send(entry, T0)
    assert store.history()[-1].result == "dropped"
    assert [p.name for p in (store.directory / QUARANTINE_DIR).iterdir()] == [path.name]
    assert store.entries() == ()


# -- crash at every step ------------------------------------------------------------------


class Killed(BaseException):
    """A process kill: not an OSError, so no error handling of the store runs."""


class StepCounter:
    """Wraps the os calls the store writes with; raises at step ``kill_at``."""

    def __init__(self, kill_at: int | None, error: Callable[[], BaseException]) -> None:
        self.kill_at = kill_at
        self.error = error
        self.steps = 0

    def wrap(self, real: Callable[..., object], name: str) -> Callable[..., object]:
        def step(*args: object) -> object:
            self.steps += 1
            if self.steps == self.kill_at:
                if name == "write":  # a torn write: half the bytes reach the file
                    fd, data = args
                    real(fd, bytes(data)[: len(data) // 2])  # type: ignore[arg-type]
                raise self.error()
            return real(*args)

        return step


def scenario(path: Path, log: dict[str, set[str]]) -> None:
    """A day of outbox use; ``log`` says what each call returned before any crash."""
    # Zips of different ids differ by a few bytes: leave room for exactly three.
    size = len(payload("12345678-1234-4234-8234-123456789abc"))
    store = open_store(path, budget=size * 3 + size // 2)
    for _ in range(4):  # the 4th add drops the oldest
        alloc = store.allocate()
        log["allocated"].add(f"{alloc.sequence}:{alloc.upload_id}")
        log["adding"] = {alloc.upload_id}
        store.add(payload(alloc.upload_id), PayloadMeta(alloc.upload_id, alloc.sequence, T0))
        log["added"].add(alloc.upload_id)
        log["adding"] = set()
    for outcome in ("stored", "failed", "rejected", "duplicate"):
        entry = store.next_due(T0 + timedelta(hours=2))
        assert entry is not None
        log["in_flight"] = {entry.upload_id}
        store.begin_send(entry, T0)
        if outcome in ("stored", "duplicate"):
            store.mark_sent(entry, outcome, T0)  # type: ignore[arg-type]
            log["acked"].add(entry.upload_id)
        elif outcome == "rejected":
            store.mark_rejected(entry, 400, "bad", T0)
            log["rejected"].add(entry.upload_id)
        else:
            store.mark_failed(entry, "503", T0, 60)
        log["in_flight"] = set()


def new_log() -> dict[str, set[str]]:
    return {k: set() for k in ("allocated", "adding", "added", "acked", "rejected", "in_flight")}


def run_scenario(
    path: Path, monkeypatch: pytest.MonkeyPatch, counter: StepCounter
) -> dict[str, set[str]]:
    log = new_log()
    with monkeypatch.context() as m:
        for name in ("replace", "fsync", "write", "unlink"):
            m.setattr(os, name, counter.wrap(getattr(os, name), name))
        with contextlib.suppress(Killed, StorageError):
            scenario(path, log)
    return log


def check_after_crash(path: Path, log: dict[str, set[str]], *, strict: bool) -> None:
    store = open_store(path, budget=1 << 20, seed=99)
    outbox = path / OUTBOX_DIR
    assert not list(outbox.glob("*.tmp")), "temp files survive a reopen"
    live = [e.upload_id for e in store.entries()]
    assert len(live) == len(set(live))
    for entry in store.entries():  # no partial payload is visible
        read_payload(store.read(entry))
    history = {r.upload_id: r.result for r in store.history()}
    final = {u for u, result in history.items() if result != "failed"}
    answered = log["acked"] | log["rejected"]
    for upload_id in log["added"]:
        # After a kill the outcome is on disk; after a failed metadata write on the send
        # path (OSError) the answer may be missing from the history, never resent.
        accounted = final if strict else final | answered
        assert upload_id in live or upload_id in accounted, f"lost {upload_id}"
        assert not (upload_id in live and upload_id in final), f"{upload_id} both live and done"
    for upload_id in answered:
        assert upload_id not in live, f"{upload_id} would be sent again after its answer"
    for upload_id in set(live) - log["added"]:
        assert upload_id in log["adding"], f"{upload_id} appeared from nowhere"
    # A number may be used again only if its payload never reached the disk: the next
    # one is past every payload that was queued, and every one found on disk.
    kept = log["added"] | set(live)
    stored = {int(a.split(":")[0]) for a in log["allocated"] if a.split(":")[1] in kept}
    if stored:
        assert store.allocate().sequence > max(stored), "a sequence number was reused"


@pytest.mark.parametrize("error", ["kill", "oserror"])
def test_crash_at_every_write_step_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    make: Callable[[], BaseException] = (
        Killed if error == "kill" else (lambda: OSError(errno.EIO, "I/O error"))
    )
    # A process-level simulation cannot tell whether data reached the platter, so the
    # real fsync (slow on a busy disk) is skipped; each call still counts as a step.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    dry = StepCounter(None, make)
    run_scenario(tmp_path / "dry", monkeypatch, dry)
    assert dry.steps > 40  # the scenario really does write
    for k in range(1, dry.steps + 1):
        path = tmp_path / f"k{k}"
        counter = StepCounter(k, make)
        log = run_scenario(path, monkeypatch, counter)
        check_after_crash(path, log, strict=error == "kill")


def test_metadata_round_trips_and_keeps_outcomes_apart_from_failures(tmp_path: Path) -> None:
    import json

    from device_direct.core.outbox import FAILURE_LIMIT
    from device_direct.outbox_meta import META_VERSION

    store = open_store(tmp_path)
    for i in range(60):  # more than the history keeps
        add_one(store)
        entry = store.next_due(T0)
        assert entry is not None
        store.begin_send(entry, T0)
        if i % 3:
            store.mark_sent(entry, "stored", T0)
        else:
            store.mark_failed(entry, 'timeout "x"\n', T0, delay=0)
    open_store(tmp_path)  # opening writes the whole state to meta.json
    raw = (tmp_path / OUTBOX_DIR / META_NAME).read_bytes()
    doc = json.loads(raw)
    # Built from cached record texts, yet exactly the canonical compact form.
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["version"] == META_VERSION
    results = [r["result"] for r in doc["history"]]
    assert results.count("stored") == 40 and results.count("failed") == FAILURE_LIMIT
    assert doc["next_sequence"] == 60
    again = open_store(tmp_path)
    assert again.history() == store.history()
    assert again.entries() == store.entries()


# -- sequence numbers and drops under field failures (issue 16 item 3, issue 17 11/12) ------


def test_losing_meta_json_does_not_restart_the_counter(tmp_path: Path) -> None:
    # Everything sent and deleted, then meta.json is lost: the server already holds
    # numbers 0..2, so the next payload must carry 3, not 0.
    store = open_store(tmp_path)
    for _ in range(3):
        add_one(store)
        entry = store.next_due(T0)
        assert entry is not None
        store.begin_send(entry, T0)
        store.mark_sent(entry, "stored", T0)
    (tmp_path / OUTBOX_DIR / META_NAME).unlink()
    assert open_store(tmp_path).allocate().sequence == 3
    # Corrupt rather than missing: quarantined, and still no number reused.
    (tmp_path / OUTBOX_DIR / META_NAME).write_text("{torn")
    assert open_store(tmp_path).allocate().sequence == 3


def test_a_full_disk_takes_no_sequence_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    add_one(store)
    real = outbox_store.atomic_write

    def full(path: object, data: bytes, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outbox_store, "atomic_write", full)
    for _ in range(3):  # three days of a full disk
        with pytest.raises(StorageError, match="disk is full"):
            add_one(store)
    monkeypatch.setattr(outbox_store, "atomic_write", real)
    meta, _ = add_one(store)
    assert meta.sequence == 1, "payloads never stored took sequence numbers (false gaps)"
    assert [e.sequence for e in open_store(tmp_path).entries()] == [0, 1]


def test_a_payload_deleted_while_stopped_is_logged_and_recorded_as_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path)
    a, size = add_one(store)
    b, _ = add_one(store)
    store.path_of(store.entries()[0]).unlink()  # the agent is stopped
    with caplog.at_level("ERROR", logger="device_direct.outbox_store"):
        again = open_store(tmp_path)
    assert [e.upload_id for e in again.entries()] == [b.upload_id]
    (record,) = [r for r in again.history() if r.upload_id == a.upload_id]
    assert record.result == "dropped" and record.bytes == size
    assert a.upload_id in caplog.text and "missing" in caplog.text
    # It stays recorded (meta.json was rewritten), not re-discovered at every open.
    assert [r.result for r in open_store(tmp_path).history()] == ["dropped"]


def test_failed_attempts_never_push_a_drop_out_of_the_history(tmp_path: Path) -> None:
    # A week-long outage with a 10-minute retry cap: ~1000 failed attempts after a drop.
    size = len(payload(str(uuid.UUID(int=0))))
    store = open_store(tmp_path, budget=size * 2 + size // 2)
    first, _ = add_one(store)
    add_one(store)
    add_one(store)  # over budget: the first is dropped
    assert [r.result for r in store.history()] == ["dropped"]
    for i in range(1000):
        entry = store.next_due(T0 + timedelta(days=8))
        assert entry is not None
        store.begin_send(entry, T0 + timedelta(minutes=10 * i))
        store.mark_failed(entry, "503", T0 + timedelta(minutes=10 * i), delay=0)
    history = open_store(tmp_path).history()
    assert [r.upload_id for r in history if r.result == "dropped"] == [first.upload_id]
    # Once a payload built after the drop is acknowledged, the drop has reached the
    # server and may age out like any other outcome.
    later = T0 + timedelta(days=9)
    store = OutboxStore.open(tmp_path, budget_bytes=1 << 20, clock=VirtualClock(later),
                             rng=random.Random(5))
    add_one(store)
    while (entry := store.next_due(later)) is not None:
        store.begin_send(entry, later)
        assert store.undelivered() != ()  # built before the drop, or not acknowledged yet
        store.mark_sent(entry, "stored", later)
    assert store.undelivered() == ()


def test_cached_record_texts_never_go_stale(tmp_path: Path) -> None:
    """meta.json reuses each history record's JSON between writes, found by the record's
    identity: after every write, through records dropped off the history and new ones
    made (which may land where a freed one was), the file says what a build from
    scratch says."""
    store = open_store(tmp_path)
    meta = tmp_path / OUTBOX_DIR / META_NAME
    written = 0

    def check(generation: int) -> None:
        nonlocal written
        if store._generation != generation:  # that call wrote meta.json
            written += 1
            assert meta.read_bytes() == meta_bytes(store._box, None, store._generation)

    for i in range(130):  # the history keeps 50: records leave and arrive all along
        before = store._generation
        add_one(store)
        check(before)
        entry = store.next_due(T0)
        assert entry is not None
        before = store._generation
        store.begin_send(entry, T0 + timedelta(seconds=i))
        check(before)
        before = store._generation
        if i % 4:
            store.mark_sent(entry, "stored", T0 + timedelta(seconds=i))
        else:
            store.mark_rejected(entry, 422, f"bad payload {i}", T0 + timedelta(seconds=i))
        check(before)
    assert written >= 5


def _state(store: OutboxStore) -> tuple[object, ...]:
    """What a store would say after a power cut: entries (their state aside), history,
    the next sequence number."""
    entries = [(e.upload_id, e.sequence, e.size, e.created_at, e.next_attempt_at,
                e.attempts, e.last_error) for e in store.entries()]
    return entries, store.history(), store.undelivered(), store._box.next_sequence


def test_a_power_cut_after_any_change_reopens_to_the_same_state(tmp_path: Path) -> None:
    """Changes go to the journal, a line each, and meta.json is rewritten every
    JOURNAL_LIMIT changes: at every instant between two calls, the files (copied, as a
    power cut would leave them) open to the state the live store holds, through queued
    and failed payloads, drops over budget, rejections and snapshots."""
    size = len(payload(str(uuid.UUID(int=0))))
    store = open_store(tmp_path / "live", budget=size * 3)
    rng = random.Random(7)
    checked = 0

    def same_after_power_cut() -> None:
        nonlocal checked
        copy = tmp_path / f"cut{checked}"
        shutil.copytree(tmp_path / "live", copy)
        assert _state(open_store(copy, budget=size * 3)) == _state(store)
        shutil.rmtree(copy)
        checked += 1

    now = T0
    for _ in range(120):
        now += timedelta(hours=rng.choice([1, 7, 24]))
        for _ in range(rng.choice([0, 1, 1, 2])):  # sometimes more than the budget holds
            add_one(store)
            same_after_power_cut()
        entry = store.next_due(now)
        if entry is None:
            continue
        store.begin_send(entry, now)
        same_after_power_cut()
        roll = rng.random()
        if roll < 0.6:
            store.mark_sent(entry, "stored", now)
        elif roll < 0.9:
            store.mark_failed(entry, f"503 try {rng.randrange(99)}", now, delay=600.5)
        else:
            store.mark_rejected(entry, 422, "bad payload", now)
        same_after_power_cut()
    assert checked > 2 * JOURNAL_LIMIT
    assert any(r.result == "dropped" for r in store._box.records())


def test_a_torn_last_journal_line_is_left_out(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    store.begin_send(entry, T0)
    (journal,) = (tmp_path / OUTBOX_DIR).glob("journal-*.jsonl")
    whole = journal.read_bytes()
    line = store_line = whole.splitlines(keepends=True)[-1]
    journal.write_bytes(whole[: -len(line)] + store_line[: len(line) // 2])  # cut mid-append
    with caplog.at_level("WARNING", logger="device_direct.outbox_store"):
        again = open_store(tmp_path)
    (back,) = again.entries()
    assert back.upload_id == a.upload_id and back.attempts == 0  # the attempt never was
    assert "cut short" in caplog.text
    assert not list((tmp_path / OUTBOX_DIR / QUARANTINE_DIR).iterdir())


def test_a_corrupt_journal_is_quarantined_and_the_files_settle_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    entry = store.next_due(T0)
    assert entry is not None
    store.begin_send(entry, T0)
    store.mark_sent(entry, "stored", T0)
    (journal,) = (tmp_path / OUTBOX_DIR).glob("journal-*.jsonl")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b'{"e": "not entries"}\n' + b"".join(lines[1:]))
    with caplog.at_level("ERROR", logger="device_direct.outbox_store"):
        again = open_store(tmp_path)
    assert "corrupt outbox journal: line 2" in caplog.text
    assert (tmp_path / OUTBOX_DIR / QUARANTINE_DIR / journal.name).exists()
    # b's file is there: queued again; a's outcome was in the lines never applied and
    # its file is gone: recorded as missing. No number is used twice.
    assert [e.upload_id for e in again.entries()] == [b.upload_id]
    assert [(r.upload_id, r.result) for r in again.history()] == [(a.upload_id, "dropped")]
    assert again.allocate().sequence == 2


def test_a_journal_left_by_a_cut_after_its_snapshot_is_not_replayed(tmp_path: Path) -> None:
    """Cut between writing meta.json (the next generation) and deleting the old
    journal: that journal is already in meta.json; replaying it would apply its
    changes twice."""
    store = open_store(tmp_path)
    directory = tmp_path / OUTBOX_DIR
    for _ in range(JOURNAL_LIMIT // 3 + 1):  # past one snapshot
        add_one(store)
        entry = store.next_due(T0)
        assert entry is not None
        store.begin_send(entry, T0)
        store.mark_sent(entry, "stored", T0)
        (journal,) = directory.glob("journal-*.jsonl")
        if store._generation > 1:
            break
        kept = journal.read_bytes()
    assert store._generation == 2
    (directory / "journal-1.jsonl").write_bytes(kept)  # as the cut left it
    assert _state(open_store(tmp_path)) == _state(store)
    assert len(list(directory.glob("journal-*.jsonl"))) == 0


def test_losing_meta_json_keeps_the_counter_of_the_journal(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for _ in range(3):
        add_one(store)
    (tmp_path / OUTBOX_DIR / META_NAME).unlink()
    (tmp_path / OUTBOX_DIR / SEQUENCE_NAME).unlink()
    for path in (tmp_path / OUTBOX_DIR).glob("*.zip"):
        path.unlink()  # nothing left but the journal names the numbers taken
    assert open_store(tmp_path).allocate().sequence == 3


def test_a_full_disk_at_open_does_not_stop_the_outbox(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening writes the state replayed from the journal to a new meta.json; on a full
    disk that fails, and the outbox opens all the same from what it read, deleting
    nothing. The first change after the disk has room writes meta.json."""
    store = open_store(tmp_path)
    a, _ = add_one(store)
    b, _ = add_one(store)
    real = outbox_store.atomic_write

    def full(path: object, data: bytes, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outbox_store, "atomic_write", full)
    again = open_store(tmp_path)
    assert [e.upload_id for e in again.entries()] == [a.upload_id, b.upload_id]
    assert list((tmp_path / OUTBOX_DIR).glob("journal-*.jsonl")), "nothing is deleted"
    monkeypatch.setattr(outbox_store, "atomic_write", real)
    entry = again.next_due(T0)
    assert entry is not None
    again.begin_send(entry, T0)
    again.mark_sent(entry, "stored", T0)
    assert _state(open_store(tmp_path)) == _state(again)


def test_journal_and_record_texts_are_the_json_the_library_writes() -> None:
    """record_text and change_line write their JSON out by hand: the same text as
    json.dumps for the records (meta.json must stay canonical), and lines that decode to
    what json.dumps would have said, whatever the strings hold."""
    from device_direct.core.outbox import OutboxChange, OutboxEntry
    from device_direct.core.payload import TransferRecord
    from device_direct.outbox_meta import change_line, entry_to_json, record_text, record_to_json

    odd = ['plain', 'quote " back \\ slash', "new\nline\ttab\x01", "ünï ☃ \u2028", ""]
    uid = str(uuid.UUID(int=7))
    for i, text in enumerate(odd):
        at = T0 + timedelta(seconds=i, microseconds=i * 7)
        record = TransferRecord(at, "rejected", i, uid if i % 2 else None, text)
        assert record_text(record) == json.dumps(record_to_json(record), sort_keys=True,
                                                 separators=(",", ":"))
        entry = OutboxEntry(uid, i, 10 + i, at, at + timedelta(hours=1), i, last_error=text)
        change = OutboxChange((entry,), (str(uuid.UUID(int=8)),), (0, 3), (record,), i + 1,
                              at if i % 2 else None)
        line = change_line(change)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == {
            "b": at.isoformat() if i % 2 else None, "d": [0, 3],
            "e": {uid: entry_to_json(entry)}, "n": i + 1,
            "x": [str(uuid.UUID(int=8))], "r": [record_to_json(record)]}
