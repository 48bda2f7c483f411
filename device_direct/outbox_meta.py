"""What the outbox's metadata files say: ``meta.json`` and the journal beside it.

``meta.json`` is the whole state the outbox keeps besides its payload files: the
sequence counter, each queued entry's attempts and backoff, the transfer history. The
journal holds the changes made since that file was written, one JSON line each, so
that a change costs one short append instead of the whole file rewritten (three times
per payload). ``meta.json`` names its journal by a generation number; the store writes a
new ``meta.json`` (the next generation) every :data:`JOURNAL_LIMIT` changes, and on open.

A journal line is an :class:`~device_direct.core.outbox.OutboxChange` in JSON::

    {"b": delivered_before or null, "d": [positions of history records that left],
     "e": {upload_id: entry, ...}, "n": next_sequence, "x": [upload ids removed],
     "r": [records appended]}

Replayed in order on the state ``meta.json`` holds, the lines give the state after the
last change whose line is whole. This module only encodes and decodes; the store
(:mod:`device_direct.outbox_store`) writes, reads and recovers.
"""

from __future__ import annotations

import json
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quote  # json.dumps' own, in C
from typing import Any

from device_direct.core.outbox import Outbox, OutboxChange, OutboxEntry
from device_direct.core.payload import TransferRecord, is_upload_id

META_VERSION = 1
# Changes journalled between two meta.json files: a journal line is about 300 bytes, a
# meta.json up to ~10 KB (50 history records), so the file is rewritten about as often
# as it would be read back whole. Replaying this many lines on open costs next to nothing.
JOURNAL_LIMIT = 48


def record_to_json(r: TransferRecord) -> dict[str, Any]:
    return {
        "at": r.at.isoformat(),
        "result": r.result,
        "bytes": r.bytes,
        "upload_id": r.upload_id,
        "detail": r.detail,
    }


def record_from_json(d: dict[str, Any]) -> TransferRecord:
    return TransferRecord(
        at=datetime.fromisoformat(d["at"]),
        result=d["result"],
        bytes=d["bytes"],
        upload_id=d.get("upload_id"),
        detail=d.get("detail", ""),
    )


def record_text(r: TransferRecord) -> str:
    """The same text as ``json.dumps(record_to_json(r), sort_keys=True,
    separators=(",", ":"))``, written out (a record is made a payload, and its text
    goes into a journal line)."""
    upload_id = "null" if r.upload_id is None else _quote(r.upload_id)
    return (f'{{"at":{_quote(r.at.isoformat())},"bytes":{r.bytes},"detail":{_quote(r.detail)},'
            f'"result":{_quote(r.result)},"upload_id":{upload_id}}}')


def entry_to_json(e: OutboxEntry) -> dict[str, Any]:
    return {
        "attempts": e.attempts,
        "size": e.size,
        "created_at": e.created_at.isoformat(),
        "next_attempt_at": e.next_attempt_at.isoformat(),
        "last_error": e.last_error,
    }


def _check_entries(entries: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, dict):
        raise ValueError("entries is not an object")
    for upload_id, e in entries.items():
        if not is_upload_id(upload_id) or not isinstance(e, dict):
            raise ValueError(f"bad entry {upload_id!r}")
        if not isinstance(e.get("attempts"), int) or e["attempts"] < 0:
            raise ValueError(f"bad attempts for {upload_id}")
        for key in ("created_at", "next_attempt_at"):
            when = datetime.fromisoformat(e[key])
            if when.tzinfo is None:
                raise ValueError(f"naive {key} for {upload_id}")
    return entries


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"bad {what} {value!r}")
    return value


def _delivered(value: Any) -> datetime | None:
    if value is None:
        return None
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError("naive delivered_before")
    return when


class MetaState:
    """What meta.json holds, parsed, with its journal's lines applied."""

    def __init__(
        self,
        next_sequence: int = 0,
        entries: dict[str, dict[str, Any]] | None = None,
        history: list[TransferRecord] | None = None,
        delivered_before: datetime | None = None,
        generation: int = 0,
    ) -> None:
        self.next_sequence = next_sequence
        self.entries = entries or {}
        self.history = history or []
        self.delivered_before = delivered_before
        self.generation = generation

    @classmethod
    def parse(cls, raw: bytes) -> MetaState:
        """Parse meta.json; ValueError/KeyError/TypeError say it is corrupt."""
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != META_VERSION:
            raise ValueError(f"not an outbox metadata file of version {META_VERSION}")
        next_sequence = _check_count(doc["next_sequence"], "next_sequence")
        entries = _check_entries(doc["entries"])
        history = [record_from_json(d) for d in doc["history"]]
        # Both absent in the files of older agents (no journal: generation 0).
        delivered_before = _delivered(doc.get("delivered_before"))
        generation = _check_count(doc.get("journal", 0), "journal generation")
        return cls(next_sequence, entries, history, delivered_before, generation)

    def apply(self, line: Any) -> None:
        """Replay one journal line; ValueError/KeyError/TypeError say it is corrupt (and
        leave this state as it was)."""
        if not isinstance(line, dict):
            raise ValueError("a journal line is not an object")
        entries = _check_entries(line["e"])
        removed = line["x"]
        if not isinstance(removed, list) or any(k not in self.entries for k in removed):
            raise ValueError(f"journal removes entries it does not have: {removed!r}")
        dropped = line["d"]
        if (not isinstance(dropped, list)
                or any(type(i) is not int for i in dropped)
                or dropped != sorted(set(dropped))
                or (dropped and not 0 <= dropped[0] <= dropped[-1] < len(self.history))):
            raise ValueError(f"journal drops history records it does not have: {dropped!r}")
        added = [record_from_json(d) for d in line["r"]]
        next_sequence = _check_count(line["n"], "next_sequence")
        delivered_before = _delivered(line["b"])
        for upload_id in removed:
            del self.entries[upload_id]
        self.entries.update(entries)
        gone = set(dropped)
        self.history = [r for i, r in enumerate(self.history) if i not in gone] + added
        self.next_sequence = next_sequence
        self.delivered_before = delivered_before


# A history record's JSON, by the record's id(): hashing a record (a dataclass of ten
# fields, datetimes among them) for every lookup cost more than the lookups saved. The
# record itself is held beside its text, so its id cannot be reused while cached.
RecordTexts = dict[int, tuple[TransferRecord, str]]


def meta_bytes(box: Outbox, texts: RecordTexts | None = None, generation: int = 0) -> bytes:
    """meta.json: the outbox's state as compact JSON (keys sorted).

    ``texts`` caches each history record's JSON between writes (records never change,
    and the history is most of the file: up to 50 records); it is left holding the
    current records only. ``generation`` names the journal that follows this file."""
    head = {
        "delivered_before": (
            box.delivered_before.isoformat() if box.delivered_before is not None else None),
        "entries": {e.upload_id: entry_to_json(e) for e in box.entries},
    }
    records = box.records()
    if texts is None:
        history = [record_text(r) for r in records]
    else:
        old = dict(texts)
        texts.clear()
        history = []
        for r in records:
            hit = old.get(id(r))
            text = hit[1] if hit is not None and hit[0] is r else record_text(r)
            texts[id(r)] = (r, text)
            history.append(text)
    # The same bytes as json.dumps(doc, sort_keys=True, separators=(",", ":")).
    return (
        json.dumps(head, sort_keys=True, separators=(",", ":"))[:-1]
        + ',"history":[' + ",".join(history) + f'],"journal":{generation}'
        + f',"next_sequence":{box.next_sequence},"version":{json.dumps(META_VERSION)}}}'
    ).encode()


def _entry_text(e: OutboxEntry) -> str:
    """``entry_to_json(e)`` as compact JSON (three of these a payload)."""
    return (f'{{"attempts":{e.attempts},"size":{e.size},'
            f'"created_at":{_quote(e.created_at.isoformat())},'
            f'"next_attempt_at":{_quote(e.next_attempt_at.isoformat())},'
            f'"last_error":{_quote(e.last_error)}}}')


def change_line(change: OutboxChange) -> bytes:
    """The journal line of ``change``, newline included (compact JSON, written out)."""
    when = change.delivered_before
    delivered = "null" if when is None else _quote(when.isoformat())
    dropped = ",".join(map(str, change.records_dropped))
    entries = ",".join(f"{_quote(e.upload_id)}:{_entry_text(e)}" for e in change.entries)
    removed = ",".join(map(_quote, change.removed))
    records = ",".join(record_text(r) for r in change.records_added)
    return (f'{{"b":{delivered},"d":[{dropped}],"e":{{{entries}}},'
            f'"n":{change.next_sequence},"x":[{removed}],"r":[{records}]}}\n').encode()


def journal_lines(raw: bytes) -> tuple[list[Any], str, bool]:
    """The journal's whole lines, decoded; what stopped the reading ("" at its end); and
    whether it ends in a torn line.

    A last line without its newline is an append a crash cut short: it was never
    acknowledged, so it is left out. A line that does not decode stops the reading
    there (what follows cannot be applied after a gap)."""
    *whole, torn = raw.split(b"\n")
    lines: list[Any] = []
    for number, text in enumerate(whole, 1):
        try:
            lines.append(json.loads(text.decode("utf-8")))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            return lines, f"line {number} is not JSON ({exc})", bool(torn)
    return lines, "", bool(torn)
