"""The persistent outbox: payload files in the device's data directory.

The decisions (order, budget, drop rule, retries) are made by
:class:`device_direct.core.outbox.Outbox`; this module keeps its state on disk so that a
process kill or a power cut at ANY point loses nothing that was acknowledged as queued,
duplicates nothing, and never exposes a half-written payload.

Layout of ``<data_dir>/outbox/``::

    000000000042-<upload-id>.zip   one payload; sequence and Upload-Id live in the name
    meta.json                      sequence counter, attempts, transfer history; the
                                   generation of the journal that follows it
    journal-<generation>.jsonl     the changes made since meta.json, a line each
    sequence                       the sequence high-water mark alone (survives meta.json)
    *.tmp                          a write in progress (deleted on open)
    quarantine/                    corrupt or unknown files moved aside, never deleted

Payload files, ``meta.json`` and ``sequence`` are written atomically: temp file, write,
``fsync``, ``os.replace``, ``fsync`` of the directory. A change of the metadata (a
payload queued, an attempt begun, an outcome) is one line appended to the journal and
``fsync``ed (:mod:`device_direct.outbox_meta`); every :data:`JOURNAL_LIMIT` changes,
and on open, the whole state goes to a new ``meta.json`` of the next generation, and the
old journal is deleted. On open, ``meta.json``'s own journal is replayed up to its last
whole line (a torn last line is an append a crash cut short; nobody was told it was
done); journals of other generations are left-overs of a crash between writing
``meta.json`` and deleting them, already in it, and are deleted. The order of steps is
what makes a crash harmless:

* ``allocate()`` names the next sequence number and an Upload-Id without taking the
  number; ``add()`` takes it, persisting the advanced counter with the entry. A build
  that fails, a full disk or a crash in between leaves nothing that carries the
  number (the payload was neither stored nor sent), so it is used again: no number is
  ever used by two payloads that left the device, and the server sees no false gap
  for a payload that never existed;
* after each ``meta.json`` the counter is also written to ``sequence``, and every
  journal line carries it: if ``meta.json`` is lost or corrupt, the counter restarts
  from the highest of that file, the counters in the journals left and the payload
  files left, never below a number the server already holds;
* ``add()`` writes the payload file first, then the metadata. A payload file without
  metadata is recovered on open from its file name (attempts start at 0), and the
  counter moves past it;
* ``mark_sent()`` / ``mark_rejected()`` record the outcome in the metadata first and
  delete the file after. A file whose Upload-Id the history already records as final
  (stored, duplicate, rejected, dropped) is deleted on open, not sent again;
* anything unreadable is moved to ``quarantine/`` with a logged error, and recorded as
  a ``dropped`` transfer when it was a payload; the other entries are unaffected. A
  payload file that vanished while the agent was stopped is logged and recorded as
  ``dropped`` on open, as it is when the agent finds it missing while running.

``OSError`` (disk full, read-only file system, I/O error) becomes :class:`StorageError`
at this edge. ``add()`` raises it (the caller must know its payload is not stored); the
send path (``begin_send``, ``mark_*``) logs a failed metadata write and goes on in
memory, so a full disk cannot make the agent resend or spin. Calls are blocking file
I/O on small files; an asyncio caller may run them in a thread, but never two at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from device_direct.clock import Clock
from device_direct.core.outbox import (
    DEFAULT_MAX_ENTRIES,
    Allocation,
    Outbox,
    OutboxEntry,
    RandomBits,
)
from device_direct.core.payload import (
    PayloadMeta,
    TransferRecord,
    read_payload_head_id,
    read_payload_id,
)
from device_direct.durable import (
    TMP_SUFFIX,
    append_durably,
    atomic_write,
    fsync_dir,
    read_at_most,
    settle,
)
from device_direct.errors import PayloadError, StorageError
from device_direct.outbox_meta import (
    JOURNAL_LIMIT,
    MetaState,
    RecordTexts,
    change_line,
    journal_lines,
    meta_bytes,
)

log = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"
META_NAME = "meta.json"
SEQUENCE_NAME = "sequence"
QUARANTINE_DIR = "quarantine"
_JOURNAL_NAME = re.compile(r"^journal-(\d{1,18})\.jsonl$")
_PAYLOAD_NAME = re.compile(
    r"^(\d{12})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.zip$"
)
_FINAL_RESULTS = frozenset({"stored", "duplicate", "rejected", "dropped"})


def payload_name(sequence: int, upload_id: str) -> str:
    """File name of a payload: sorts by sequence and carries both ids."""
    return f"{sequence:012d}-{upload_id}.zip"


def journal_name(generation: int) -> str:
    """File name of the journal that follows the meta.json of ``generation``."""
    return f"journal-{generation}.jsonl"


@contextlib.contextmanager
def _storage_errors(what: str, path: str | Path) -> Iterator[None]:
    """Translate OSError into StorageError, once, at this edge."""
    try:
        yield
    except OSError as exc:
        hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
        reason = exc.strerror or str(exc)
        raise StorageError(f"cannot {what} {path}: {reason}{hint}") from exc


# -- the store ---------------------------------------------------------------------------


class OutboxStore:
    """The device's outbox on disk. Create with :meth:`open`."""

    # Slots: a fleet holds one store per simulated device (the idle-memory goal).
    __slots__ = ("_box", "_clock", "_dir", "_generation", "_journal_broken", "_journal_lines",
                 "_record_texts", "_rng", "directory")

    def __init__(self, directory: Path, box: Outbox, clock: Clock, rng: RandomBits,
                 generation: int = 0) -> None:
        self.directory = directory
        self._dir = str(directory)  # the hot paths join strings, not Paths
        self._box = box
        self._clock = clock
        self._rng = rng
        # meta_bytes' cache of record texts, made at the first meta.json written.
        self._record_texts: RecordTexts | None = None
        self._generation = generation  # of meta.json on disk, and of the journal after it
        self._journal_lines = 0  # in that journal
        self._journal_broken = False  # an append failed: its tail may be torn

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        budget_bytes: int,
        clock: Clock,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        rng: RandomBits | None = None,
    ) -> OutboxStore:
        """Open (or create) the outbox under ``data_dir``, repairing what a crash left.

        ``rng`` supplies the randomness of Upload-Ids: a seeded generator in the fleet,
        ``random.SystemRandom()`` (the default) on a real device.
        """
        directory = Path(data_dir) / OUTBOX_DIR
        settle()  # a stopped agent's last write first (the same files)
        with _storage_errors("create the outbox directory", directory):
            (directory / QUARANTINE_DIR).mkdir(parents=True, exist_ok=True)
        with _storage_errors("open the outbox in", directory):
            box, generation, journals, changed = _recover(
                directory, budget_bytes, max_entries, clock.now())
        store = cls(directory, box, clock, rng if rng is not None else random.SystemRandom(),
                    generation)
        if changed or journals:
            try:
                store._snapshot(store._box)  # a new generation: every journal found is old
            except StorageError as exc:
                # A full disk must not stop the device at boot. Nothing is deleted; the
                # next change tries meta.json again before it touches any journal.
                log.error("outbox: %s; going on from what was read", exc)
                store._journal_broken = True
                journals = []
        with _storage_errors("clean up", directory):
            for path in journals:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            store._delete_finished_files()
        return store

    # -- reading -------------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        return self._box.budget_bytes

    def entries(self) -> tuple[OutboxEntry, ...]:
        """Queued entries, oldest first."""
        return self._box.entries

    def history(self) -> tuple[TransferRecord, ...]:
        """The transfer history for the next payload, oldest first."""
        return self._box.history

    def undelivered(self) -> tuple[TransferRecord, ...]:
        """Drops and rejections the server has not been told of yet."""
        return self._box.undelivered()

    def next_due(self, now: datetime) -> OutboxEntry | None:
        """The entry to send at ``now``, if any (oldest first, after its backoff)."""
        return self._box.next_due(now)

    def next_wakeup(self) -> datetime | None:
        """When the head of the queue becomes due (None when the outbox is empty)."""
        return self._box.next_wakeup()

    def path_of(self, entry: OutboxEntry) -> Path:
        """Where ``entry``'s payload file lives."""
        return Path(self._file(entry.sequence, entry.upload_id))

    def _file(self, sequence: int, upload_id: str) -> str:
        return f"{self._dir}/{payload_name(sequence, upload_id)}"

    def read(self, entry: OutboxEntry) -> bytes:
        """The zip bytes of ``entry``."""
        path = self.path_of(self._box.get(entry.upload_id))
        with _storage_errors("read the payload", path):
            return path.read_bytes()

    # -- changing ------------------------------------------------------------------------

    def allocate(self) -> Allocation:
        """The next payload's Upload-Id and sequence number (taken by :meth:`add`)."""
        return self._box.allocate(self._rng)

    def add(self, zip_bytes: bytes, meta: PayloadMeta) -> OutboxEntry:
        """Store a built payload durably and queue it.

        Applies the drop rule (oldest queued payloads go first). Raises
        :class:`PayloadError` if ``zip_bytes`` is not a payload for ``meta.upload_id``,
        and :class:`StorageError` if the disk failed or the payload cannot fit at all (it
        is then recorded as dropped).
        """
        if read_payload_head_id(zip_bytes) != meta.upload_id:
            raise PayloadError(f"payload's uploadId does not match {meta.upload_id}")
        now = self._clock.now()
        work = self._box.copy()
        result = work.add(meta.upload_id, meta.sequence, len(zip_bytes), now)
        path = self._file(meta.sequence, meta.upload_id)
        if result.entry is not None:
            with _storage_errors("write the payload", path):
                atomic_write(path, zip_bytes)
        try:
            self._save(work)
        except StorageError:
            if result.entry is not None:
                # Not queued after all; if this unlink fails too, the file is recovered
                # on the next open, which is safe (same Upload-Id).
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        self._box = work
        for gone in result.dropped:
            log.warning(
                "outbox over budget: dropped payload %s (seq %d)", gone.upload_id, gone.sequence
            )
            self._unlink_quietly(self._file(gone.sequence, gone.upload_id))
        if result.entry is None:
            raise StorageError(
                f"payload {meta.upload_id} ({len(zip_bytes)} bytes) does not fit in the outbox "
                f"budget of {self._box.budget_bytes} bytes; recorded as dropped"
            )
        return result.entry

    def begin_send(self, entry: OutboxEntry, at: datetime) -> bytes:
        """Mark ``entry`` as being sent (one more attempt) and return its bytes.

        A payload file that vanished, cannot be read or changed behind our back is
        quarantined and dropped (recorded), and StorageError raised: one bad file must
        not block the queue, and the caller simply asks :meth:`next_due` again.
        """
        live = self._box.get(entry.upload_id)
        problem = ""
        data = b""
        try:
            # One byte more than recorded, to tell a file that grew.
            data = read_at_most(self._file(live.sequence, live.upload_id), live.size + 1)
        except FileNotFoundError:
            problem = "payload file is missing"
        except OSError as exc:
            problem = f"payload file cannot be read ({exc.strerror or exc})"
        if not problem and len(data) != live.size:
            problem = f"payload file changed on disk ({len(data)} != {live.size} bytes)"
        if problem:
            path = self.path_of(live)
            with contextlib.suppress(OSError):
                if path.exists():
                    _quarantine(self.directory, path, problem)
            work = self._box.copy()
            work.drop(entry.upload_id, at, f"{problem}; dropped")
            self._commit(work, raise_errors=False)
            raise StorageError(f"payload {entry.upload_id}: {problem}; recorded as dropped")
        work = self._box.copy()
        work.start(entry.upload_id, at)
        self._commit(work, raise_errors=False)
        return data

    def mark_sent(
        self, entry: OutboxEntry, result: Literal["stored", "duplicate"], at: datetime
    ) -> TransferRecord:
        """The server answered 201 (stored) or 200 (duplicate): record, then delete."""
        work = self._box.copy()
        record = work.acknowledge(entry.upload_id, result, at)
        self._commit(work, raise_errors=False)
        self._unlink_quietly(self._file(entry.sequence, entry.upload_id))
        return record

    def mark_failed(
        self, entry: OutboxEntry, error: str, at: datetime, delay: float
    ) -> OutboxEntry:
        """A retryable failure: queued again, due ``delay`` seconds after ``at``."""
        work = self._box.copy()
        updated = work.fail(entry.upload_id, at, delay, error)
        self._commit(work, raise_errors=False)
        return updated

    def mark_rejected(
        self, entry: OutboxEntry, status: int, detail: str, at: datetime
    ) -> TransferRecord:
        """The server refused the payload (4xx): recorded as rejected, then deleted."""
        work = self._box.copy()
        record = work.reject(entry.upload_id, at, status, detail)
        self._commit(work, raise_errors=False)
        self._unlink_quietly(self._file(entry.sequence, entry.upload_id))
        return record

    # -- internals -----------------------------------------------------------------------

    def _commit(self, work: Outbox, *, raise_errors: bool) -> None:
        """Persist ``work`` and make it the current state.

        With ``raise_errors=False`` (the send path) the state moves on in memory even
        when the metadata cannot be written (disk full): the outcome of a send is a fact,
        and refusing it would hand the same entry out again and again. The failure is
        logged; after a restart the entry's attempts or backoff may be forgotten, or an
        acknowledged payload's history line lost, but its file is deleted all the same,
        so it is never sent twice.
        """
        try:
            self._save(work)
        except StorageError as exc:
            if raise_errors:
                raise
            log.error("outbox metadata not saved, going on in memory: %s", exc)
        self._box = work

    def _save(self, work: Outbox) -> None:
        """Make ``work`` (the current state changed) durable: a journal line, or a new
        meta.json when the journal is long or its end may be torn. Generation 0 (no
        meta.json yet, or one of an agent before journals) is never followed by a
        journal: its first change writes meta.json."""
        if (self._generation == 0 or self._journal_lines >= JOURNAL_LIMIT
                or self._journal_broken):
            self._snapshot(work)
            return
        change = work.change_from(self._box)
        path = f"{self._dir}/{journal_name(self._generation)}"
        try:
            with _storage_errors("write the outbox journal", path):
                append_durably(path, change_line(change), new_file=self._journal_lines == 0)
        except StorageError:
            self._journal_broken = True  # a torn line must not end up inside the journal
            raise
        self._journal_lines += 1

    def _snapshot(self, box: Outbox) -> None:
        """``box`` to a new meta.json (the next generation), then the spare counter; the
        old journal is then in it, and deleted (one left over is deleted on open)."""
        generation = self._generation + 1
        path = self.directory / META_NAME
        with _storage_errors("write the outbox metadata", path):
            if self._record_texts is None:
                self._record_texts = {}
            atomic_write(path, meta_bytes(box, self._record_texts, generation))
        old = self.directory / journal_name(self._generation)
        self._generation, self._journal_lines, self._journal_broken = generation, 0, False
        self._save_sequence(box.next_sequence)
        self._unlink_quietly(old, "old journal")

    def _save_sequence(self, next_sequence: int) -> None:
        # A second copy of the counter, for when meta.json is lost. The payload is
        # already stored and queued: failing here only loses the spare copy.
        path = self.directory / SEQUENCE_NAME
        try:
            atomic_write(path, f"{next_sequence}\n".encode())
        except OSError as exc:
            log.error("outbox: spare sequence counter %s not saved: %s", path, exc)

    def _unlink_quietly(self, path: str | Path, what: str = "finished payload") -> None:
        # What it held is already recorded elsewhere; a file left behind is deleted on
        # the next open. No fsync of the directory: if a power cut undoes the deletion
        # of a sent payload, the history still names its outcome on open (it keeps the
        # last 50), and the next payload written (its rename is fsync'd in the same
        # directory) makes the deletion last; an old journal left is ignored, then
        # deleted, on open.
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("outbox: could not delete %s %s: %s", what, path, exc)

    def _delete_finished_files(self) -> None:
        live = {payload_name(e.sequence, e.upload_id) for e in self._box.entries}
        removed = False
        for path in self.directory.iterdir():
            if _PAYLOAD_NAME.match(path.name) and path.name not in live:
                os.unlink(path)
                removed = True
        if removed:
            fsync_dir(self.directory)


def _quarantine(directory: Path, path: Path, reason: str) -> None:
    """Move ``path`` to quarantine/ (never overwriting) and log why."""
    target_dir = directory / QUARANTINE_DIR
    target = target_dir / path.name
    n = 1
    while target.exists():
        target = target_dir / f"{path.name}.{n}"
        n += 1
    log.error("outbox: moved %s to %s: %s", path.name, target, reason)
    os.replace(path, target)
    fsync_dir(directory)


def _read_sequence(path: Path) -> int:
    """The spare counter; 0 if it is absent or unreadable (meta.json and files remain)."""
    try:
        value = int(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.error("outbox: spare sequence counter %s unreadable (%s); ignored", path, exc)
        return 0
    return max(value, 0)


def _replay(directory: Path, meta: MetaState, journal: Path) -> int:
    """Apply ``journal``'s whole lines to ``meta`` (it follows meta's own generation).

    A line that cannot be read or applied stops the replay: the journal is moved to
    quarantine, with a logged error, and the payload files settle the rest as when
    meta.json is lost. Returns the highest counter the journal names, read or not."""
    lines, problem, torn = journal_lines(journal.read_bytes())
    if torn:
        log.warning("outbox: %s ends in a change a crash cut short; it was never "
                    "acknowledged and is left out", journal.name)
    applied = 0
    if meta.generation == _journal_generation(journal):
        for line in lines:
            try:
                meta.apply(line)
            except (ValueError, KeyError, TypeError, PayloadError) as exc:
                problem = f"line {applied + 1} cannot be applied ({exc})"
                break
            applied += 1
    if problem:
        _quarantine(directory, journal, f"corrupt outbox journal: {problem}")
    return max((line["n"] for line in lines if isinstance(line, dict)
                and type(line.get("n")) is int), default=0)


def _journal_generation(path: Path) -> int:
    match = _JOURNAL_NAME.match(path.name)
    return int(match.group(1)) if match else -1


def _recover(
    directory: Path, budget_bytes: int, max_entries: int, now: datetime
) -> tuple[Outbox, int, list[Path], bool]:
    """Rebuild the outbox from the directory. Returns it, the highest generation of
    metadata found, the journals still there (to delete once the state is saved) and
    whether meta.json must be rewritten."""
    changed = False
    for path in directory.glob(f"*{TMP_SUFFIX}"):
        os.unlink(path)  # a write that never finished: its target is still intact
    meta_path = directory / META_NAME
    meta = MetaState()
    if meta_path.exists():
        try:
            meta = MetaState.parse(meta_path.read_bytes())
        except (ValueError, KeyError, TypeError, PayloadError) as exc:
            _quarantine(directory, meta_path, f"corrupt outbox metadata ({exc})")
            changed = True
    generation = meta.generation
    journaled = 0  # the highest counter any journal names
    journals = sorted(p for p in directory.iterdir() if _JOURNAL_NAME.match(p.name))
    for journal in journals:
        generation = max(generation, _journal_generation(journal))
        journaled = max(journaled, _replay(directory, meta, journal))
    kept = [p for p in journals if p.exists()]
    if len(kept) != len(journals):
        changed = True  # one was quarantined
    journals = kept
    finished = {r.upload_id for r in meta.history if r.result in _FINAL_RESULTS}
    entries: list[OutboxEntry] = []
    corrupt: list[TransferRecord] = []
    for path in sorted(directory.iterdir()):
        if path.name in (META_NAME, QUARANTINE_DIR, SEQUENCE_NAME) or path in journals:
            continue
        match = _PAYLOAD_NAME.match(path.name)
        if match is None or not path.is_file():
            _quarantine(directory, path, "not an outbox file")
            continue
        sequence, upload_id = int(match.group(1)), match.group(2)
        if upload_id in finished:
            continue  # its outcome is recorded; the file is deleted after opening
        data = path.read_bytes()
        try:
            if read_payload_id(data)[1] != upload_id:
                raise PayloadError("uploadId inside does not match the file name")
        except PayloadError as exc:
            _quarantine(directory, path, f"corrupt payload ({exc})")
            detail = "corrupt payload quarantined"
            corrupt.append(TransferRecord(now, "dropped", len(data), upload_id, detail))
            changed = True
            continue
        saved = meta.entries.get(upload_id)
        if saved is None:
            log.warning("outbox: recovered payload %s without metadata", path.name)
            changed = True
        entries.append(
            OutboxEntry(
                upload_id=upload_id,
                sequence=sequence,
                size=len(data),
                created_at=datetime.fromisoformat(saved["created_at"]) if saved else now,
                next_attempt_at=datetime.fromisoformat(saved["next_attempt_at"]) if saved else now,
                attempts=saved["attempts"] if saved else 0,
                last_error=str(saved.get("last_error", "")) if saved else "",
            )
        )
    found = {e.upload_id for e in entries} | {r.upload_id for r in corrupt}
    for upload_id, saved in meta.entries.items():
        if upload_id in found or upload_id in finished:
            continue
        # Its file vanished while the agent was stopped: the same as finding it
        # missing while running (begin_send): logged and recorded as dropped.
        log.error("outbox: payload %s is missing; recorded as dropped", upload_id)
        detail = "payload file is missing; dropped"
        corrupt.append(TransferRecord(now, "dropped", int(saved.get("size", 0)), upload_id,
                                      detail))
        changed = True
    spare = max(_read_sequence(directory / SEQUENCE_NAME), journaled)
    box = Outbox(
        budget_bytes=budget_bytes,
        max_entries=max_entries,
        next_sequence=max(meta.next_sequence, spare),
        entries=entries,
        history=[*meta.history, *corrupt],
        delivered_before=meta.delivered_before,
    )
    if box.next_sequence != meta.next_sequence:
        changed = True
    if box.enforce_budget(now):
        changed = True
    return box, generation, journals, changed
