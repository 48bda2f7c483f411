"""SQLite storage of the reference server: devices, certificates, uploads, actions.

One connection, used from the event loop thread only (each call is a short write or
read; heavy payload checks happen before, in a worker thread). WAL mode so readers
(tests, the admin API) never block the writer, ``synchronous=NORMAL`` because WAL makes
that durable against process crashes, which is what a test server needs.

Every ``sqlite3`` exception is translated here into :class:`StateStorageError`.
Times are stored as ISO 8601 UTC strings, which sort in time order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emulator.errors import StateStorageError
from emulator.server.payload_check import PayloadFacts

SCHEMA = """
CREATE TABLE IF NOT EXISTS registration_keys (
    key_hash TEXT PRIMARY KEY, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    used_at TEXT, used_by TEXT);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, serial TEXT UNIQUE NOT NULL, model TEXT NOT NULL,
    mac TEXT NOT NULL, firmware TEXT NOT NULL, registered_at TEXT NOT NULL,
    last_contact TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    cert_serial TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices,
    issued_at TEXT NOT NULL, not_after TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS uploads (
    n INTEGER PRIMARY KEY, upload_id TEXT UNIQUE NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices, sequence INTEGER NOT NULL,
    serial TEXT NOT NULL, generated_at TEXT NOT NULL, trigger TEXT NOT NULL,
    received_at TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    zip BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_device ON uploads (device_id, sequence);
CREATE TABLE IF NOT EXISTS meters (
    upload_n INTEGER NOT NULL REFERENCES uploads, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (upload_n, name));
CREATE TABLE IF NOT EXISTS supplies (
    upload_n INTEGER NOT NULL REFERENCES uploads, idx INTEGER NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, unit TEXT NOT NULL, capacity INTEGER NOT NULL,
    level INTEGER NOT NULL, status TEXT NOT NULL, PRIMARY KEY (upload_n, idx));
CREATE TABLE IF NOT EXISTS faults (
    upload_n INTEGER NOT NULL REFERENCES uploads, code TEXT NOT NULL, subsystem TEXT NOT NULL,
    at TEXT NOT NULL, impressions INTEGER NOT NULL, stops_machine INTEGER NOT NULL,
    description TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequence_gaps (
    device_id TEXT NOT NULL, first_missing INTEGER NOT NULL, last_missing INTEGER NOT NULL,
    detected_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    n INTEGER PRIMARY KEY, id TEXT UNIQUE, device_id TEXT NOT NULL, type TEXT NOT NULL,
    params TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    result_status TEXT, result_detail TEXT, result_at TEXT);
CREATE TABLE IF NOT EXISTS firmware (
    model TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    manifest TEXT NOT NULL, signature TEXT NOT NULL, published_at TEXT NOT NULL,
    PRIMARY KEY (model, version));
CREATE INDEX IF NOT EXISTS faults_upload ON faults (upload_n);
CREATE INDEX IF NOT EXISTS gaps_device ON sequence_gaps (device_id);
CREATE INDEX IF NOT EXISTS actions_device ON actions (device_id, result_status);
-- Re-registration and renewal revoke a device's current certificates: without this
-- index each one read the whole table (a fleet's registrations, quadratic).
CREATE INDEX IF NOT EXISTS certificates_device ON certificates (device_id);
CREATE TABLE IF NOT EXISTS engineering_logs (
    n INTEGER PRIMARY KEY, device_id TEXT NOT NULL, received_at TEXT NOT NULL,
    content_type TEXT NOT NULL, content_encoding TEXT NOT NULL, size INTEGER NOT NULL,
    body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS logs_device ON engineering_logs (device_id, n);
"""


_UPLOAD_COLUMNS = ("upload_id, device_id, sequence, serial, generated_at, trigger, received_at, "
                   "size, sha256")


def hash_key(key: str) -> str:
    """Registration keys are stored hashed: the database alone does not give them away."""
    return hashlib.sha256(key.encode()).hexdigest()


def iso(dt: datetime) -> str:
    """How times are stored and sent: ISO 8601, UTC, seconds precision."""
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyRefused(Exception):
    """A registration key cannot be used; ``reason`` is unknown, used or expired."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"registration key {reason}")


# A device's last contact is written at most once a minute: a daily session makes three
# calls, and one UPDATE + COMMIT each was a fifth of the server's time per request.
CONTACT_RESOLUTION = timedelta(seconds=60)


class Storage:
    """The server's SQLite database (``<state_dir>/server.sqlite3``).

    When one process owns the file, two read-mostly facts are kept in memory as well:
    certificate rows by serial (dropped whenever a certificate is issued or revoked,
    the only writes to that table), and when each device's last contact was written.
    With ``shared=True`` (several server processes on one database: ``server run
    --workers N``) certificates are read from the database every time, since another
    process may have revoked one; the last-contact memory stays (at worst each process
    writes a device's contact once a minute).
    """

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._certificates: dict[str, dict[str, Any]] = {}
        self._contact_written: dict[str, datetime] = {}
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateStorageError(f"cannot open server database {path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateStorageError(f"server database {self.path}: {exc}") from exc

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            return [dict(r) for r in self._db.execute(sql, args)]
        except sqlite3.Error as exc:
            raise StateStorageError(f"server database {self.path}: {exc}") from exc

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of a read-only SELECT, for reports (the dashboard's queries)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise ValueError("Storage.query runs SELECT statements only")
        return self._rows(sql, *args)

    # -- registration keys ----------------------------------------------------------------

    def add_registration_key(self, key_hash: str, *, now: datetime, expires_at: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO registration_keys VALUES (?,?,?,NULL,NULL)",
                       (key_hash, iso(now), iso(expires_at)))

    def consume_registration_key(self, key_hash: str, *, now: datetime, serial: str) -> None:
        """Mark a key used by ``serial``, or raise :class:`KeyRefused` saying why not."""
        with self._tx() as db:
            row = db.execute("SELECT expires_at, used_at, used_by FROM registration_keys "
                             "WHERE key_hash=?", (key_hash,)).fetchone()
            if row is None:
                raise KeyRefused("unknown")
            if row["used_at"] is not None and not self._may_retry(db, row, serial):
                raise KeyRefused("used")
            if row["expires_at"] <= iso(now):
                raise KeyRefused("expired")
            db.execute("UPDATE registration_keys SET used_at=?, used_by=? WHERE key_hash=?",
                       (iso(now), serial, key_hash))

    @staticmethod
    def _may_retry(db: sqlite3.Connection, row: sqlite3.Row, serial: str) -> bool:
        """A device that lost power after the server consumed its key, but before it
        stored the certificate, presents the same key again. Allow that for the same
        serial until the device's first authenticated call (then the key is spent)."""
        if row["used_by"] != serial:
            return False
        dev = db.execute("SELECT last_contact FROM devices WHERE serial=?", (serial,)).fetchone()
        return dev is None or dev["last_contact"] is None

    # -- devices and certificates ---------------------------------------------------------

    def register_device(
        self, *, device_id: str, serial: str, model: str, mac: str,
        firmware: dict[str, str], cert_serial: str, not_after: datetime, now: datetime,
    ) -> None:
        """Create or update a device and make ``cert_serial`` its only valid certificate."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO devices VALUES (?,?,?,?,?,?,NULL) ON CONFLICT(device_id) DO UPDATE "
                "SET model=excluded.model, mac=excluded.mac, firmware=excluded.firmware, "
                "registered_at=excluded.registered_at",
                (device_id, serial, model, mac, json.dumps(firmware), iso(now)),
            )
            db.execute("UPDATE certificates SET revoked_at=? WHERE device_id=? "
                       "AND revoked_at IS NULL", (iso(now), device_id))
            db.execute("INSERT INTO certificates VALUES (?,?,?,?,NULL)",
                       (cert_serial, device_id, iso(now), iso(not_after)))
        self._certificates.clear()

    def replace_certificate(self, device_id: str, *, cert_serial: str, not_after: datetime,
                            now: datetime) -> None:
        """Make ``cert_serial`` the device's only valid certificate (renewal)."""
        with self._tx() as db:
            db.execute("UPDATE certificates SET revoked_at=? WHERE device_id=? "
                       "AND revoked_at IS NULL", (iso(now), device_id))
            db.execute("INSERT INTO certificates VALUES (?,?,?,?,NULL)",
                       (cert_serial, device_id, iso(now), iso(not_after)))
        self._certificates.clear()

    def certificate(self, cert_serial: str) -> dict[str, Any] | None:
        """The certificate row (device_id, revoked_at, ...) for a peer serial, if issued."""
        row = self._certificates.get(cert_serial)
        if row is None:
            rows = self._rows("SELECT * FROM certificates WHERE cert_serial=?", cert_serial)
            if not rows:
                return None
            row = rows[0]
            if not self.shared:
                self._certificates[cert_serial] = row
        return dict(row)

    def touch_device(self, device_id: str, now: datetime) -> None:
        """Record a contact from the device (to the minute: see CONTACT_RESOLUTION)."""
        written = self._contact_written.get(device_id)
        if written is not None and written <= now < written + CONTACT_RESOLUTION:
            return
        with self._tx() as db:
            db.execute("UPDATE devices SET last_contact=? WHERE device_id=?",
                       (iso(now), device_id))
        self._contact_written[device_id] = now

    def device(self, device_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM devices WHERE device_id=?", device_id)
        return _device_row(rows[0]) if rows else None

    def devices(self) -> list[dict[str, Any]]:
        """All devices with serial, model, registered_at, last_contact and upload count."""
        rows = self._rows(
            "SELECT d.*, (SELECT COUNT(*) FROM uploads u WHERE u.device_id=d.device_id) "
            "AS uploads FROM devices d ORDER BY d.serial")
        return [_device_row(r) for r in rows]

    # -- uploads --------------------------------------------------------------------------

    def upload_owner(self, upload_id: str) -> str | None:
        """The device that stored ``upload_id``, or None when it is new."""
        rows = self._rows("SELECT device_id FROM uploads WHERE upload_id=?", upload_id)
        return str(rows[0]["device_id"]) if rows else None

    def store_upload(
        self, device_id: str, facts: PayloadFacts, *, body: bytes, sha256: str,
        now: datetime,
    ) -> bool:
        """Store an upload and its facts; False when the Upload-Id was already stored."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM uploads WHERE upload_id=?",
                          (facts.upload_id,)).fetchone():
                return False
            prev = db.execute("SELECT MAX(sequence) FROM uploads WHERE device_id=?",
                              (device_id,)).fetchone()[0]
            if prev is not None and facts.sequence > prev + 1:
                db.execute("INSERT INTO sequence_gaps VALUES (?,?,?,?)",
                           (device_id, prev + 1, facts.sequence - 1, iso(now)))
            cur = db.execute(
                "INSERT INTO uploads (upload_id, device_id, sequence, serial, generated_at, "
                "trigger, received_at, size, sha256, zip) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (facts.upload_id, device_id, facts.sequence, facts.serial, facts.generated_at,
                 facts.trigger, iso(now), len(body), sha256, body),
            )
            n = cur.lastrowid
            db.executemany("INSERT INTO meters VALUES (?,?,?)",
                           [(n, k, v) for k, v in facts.meters.items()])
            db.executemany(
                "INSERT INTO supplies VALUES (?,?,?,?,?,?,?,?)",
                [(n, s.index, s.name, s.type, s.unit, s.capacity, s.level, s.status)
                 for s in facts.supplies],
            )
            db.executemany(
                "INSERT INTO faults VALUES (?,?,?,?,?,?,?)",
                [(n, f.code, f.subsystem, f.at, f.impressions, int(f.stops_machine),
                  f.description) for f in facts.faults],
            )
            return True

    def uploads_count(self, device_id: str | None = None) -> int:
        """How many uploads are stored (for one device, or in all)."""
        if device_id is None:
            rows = self._rows("SELECT COUNT(*) AS c FROM uploads")
        else:
            rows = self._rows("SELECT COUNT(*) AS c FROM uploads WHERE device_id=?", device_id)
        return int(rows[0]["c"])

    def uploads(self, device_id: str) -> list[dict[str, Any]]:
        """A device's uploads in sequence order, with meters, supplies and faults."""
        rows = self._rows(
            "SELECT n, upload_id, sequence, serial, generated_at, trigger, received_at, size, "
            "sha256 FROM uploads WHERE device_id=? ORDER BY sequence, n", device_id)
        for r in rows:
            n = r.pop("n")
            r["meters"] = {m["name"]: m["value"] for m in self._rows(
                "SELECT name, value FROM meters WHERE upload_n=?", n)}
            r["supplies"] = self._rows(
                "SELECT idx AS 'index', name, type, unit, capacity, level, status "
                "FROM supplies WHERE upload_n=? ORDER BY idx", n)
            r["faults"] = self._rows(
                "SELECT code, subsystem, at, impressions, stops_machine, description "
                "FROM faults WHERE upload_n=?", n)
        return rows

    def upload_zip(self, upload_id: str) -> bytes | None:
        """The raw zip as received."""
        rows = self._rows("SELECT zip FROM uploads WHERE upload_id=?", upload_id)
        return bytes(rows[0]["zip"]) if rows else None

    def upload_record(self, upload_id: str) -> dict[str, Any] | None:
        """One upload's facts as stored (no zip, no meters), or None when unknown."""
        rows = self._rows(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id=?",
                          upload_id)
        return rows[0] if rows else None

    def iter_upload_zips(self, *, device_id: str | None = None, since: datetime | None = None
                         ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """``(record, zip)`` of every upload (of ``device_id``; received at or after
        ``since``) in the order the server stored them, read one at a time so an export
        of a large store never holds more than one zip."""
        where, args = ["n>?"], []
        if device_id is not None:
            where.append("device_id=?")
            args.append(device_id)
        if since is not None:
            where.append("received_at>=?")
            args.append(iso(since.astimezone(UTC)))
        sql = (f"SELECT n, {_UPLOAD_COLUMNS}, zip FROM uploads WHERE {' AND '.join(where)} "
               "ORDER BY n LIMIT 1")
        last = 0
        while True:  # one row at a time by rowid: no cursor stays open between zips
            try:
                row = self._db.execute(sql, (last, *args)).fetchone()
            except sqlite3.Error as exc:
                raise StateStorageError(f"server database {self.path}: {exc}") from exc
            if row is None:
                return
            record = dict(row)
            last = record.pop("n")
            yield record, bytes(record.pop("zip"))

    def meter_history(self, device_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Meter reads in sequence order: sequence, generated_at, name, value."""
        sql = ("SELECT u.sequence, u.generated_at, m.name, m.value FROM meters m "
               "JOIN uploads u ON u.n = m.upload_n WHERE u.device_id=?")
        args: tuple[Any, ...] = (device_id,)
        if name is not None:
            sql += " AND m.name=?"
            args += (name,)
        return self._rows(sql + " ORDER BY u.sequence, m.name", *args)

    def sequence_gaps(self, device_id: str) -> list[dict[str, Any]]:
        """Gaps seen when uploads arrived: first_missing, last_missing, detected_at,
        and whether later uploads filled them (``filled``)."""
        gaps = self._rows("SELECT first_missing, last_missing, detected_at FROM sequence_gaps "
                          "WHERE device_id=? ORDER BY first_missing", device_id)
        for g in gaps:
            have = self._rows(
                "SELECT COUNT(DISTINCT sequence) AS c FROM uploads WHERE device_id=? "
                "AND sequence BETWEEN ? AND ?", device_id, g["first_missing"], g["last_missing"])
            g["filled"] = have[0]["c"] == g["last_missing"] - g["first_missing"] + 1
        return gaps

    # -- actions --------------------------------------------------------------------------

    def add_action(self, device_id: str, type: str, params: dict[str, Any], *,
                   now: datetime, expires_at: datetime) -> str:
        """Queue an action; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO actions (device_id, type, params, issued_at, expires_at) "
                "VALUES (?,?,?,?,?)",
                (device_id, type, json.dumps(params), iso(now), iso(expires_at)))
            action_id = f"act-{cur.lastrowid:06d}"
            db.execute("UPDATE actions SET id=? WHERE n=?", (action_id, cur.lastrowid))
            return action_id

    def pending_actions(self, device_id: str, now: datetime) -> list[dict[str, Any]]:
        """Actions with no result yet that have not expired, oldest first."""
        rows = self._rows(
            "SELECT id, type, params, issued_at, expires_at FROM actions WHERE device_id=? "
            "AND result_status IS NULL AND expires_at > ? ORDER BY n", device_id, iso(now))
        for r in rows:
            r["params"] = json.loads(r["params"])
        return rows

    def action(self, action_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM actions WHERE id=?", action_id)
        return _action_row(rows[0]) if rows else None

    def record_result(self, action_id: str, status: str, detail: dict[str, Any], *,
                      now: datetime) -> bool:
        """Keep the first result of an action; False when it already had one."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE actions SET result_status=?, result_detail=?, result_at=? "
                "WHERE id=? AND result_status IS NULL",
                (status, json.dumps(detail), iso(now), action_id))
            return cur.rowcount == 1

    def actions(self, device_id: str) -> list[dict[str, Any]]:
        """All actions of a device with their results (None while pending)."""
        rows = self._rows("SELECT * FROM actions WHERE device_id=? ORDER BY n", device_id)
        return [_action_row(r) for r in rows]

    def action_results(self, device_id: str) -> list[dict[str, Any]]:
        """The actions of a device that have a result."""
        return [a for a in self.actions(device_id) if a["result_status"] is not None]

    # -- firmware -------------------------------------------------------------------------

    def add_firmware(self, manifest: dict[str, Any], signature: str, *, now: datetime) -> None:
        """Publish a signed manifest (replacing the same model+version)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO firmware VALUES (?,?,?,?,?,?,?)",
                (manifest["model"], manifest["version"], manifest["sha256"], manifest["size"],
                 json.dumps(manifest), signature, iso(now)))

    def firmware(self, model: str | None = None) -> list[dict[str, Any]]:
        """Published firmware (manifest dicts plus signature), for one model or all."""
        sql = "SELECT manifest, signature, published_at FROM firmware"
        rows = (self._rows(sql + " WHERE model=?", model) if model is not None
                else self._rows(sql))
        return [{"manifest": json.loads(r["manifest"]), "signature": r["signature"],
                 "published_at": r["published_at"]} for r in rows]

    def firmware_sha_known(self, sha256: str) -> bool:
        return bool(self._rows("SELECT 1 FROM firmware WHERE sha256=?", sha256))

    # -- engineering logs -----------------------------------------------------------------

    def add_log(self, device_id: str, body: bytes, *, content_type: str,
                content_encoding: str, now: datetime) -> int:
        """Store an engineering log apart from device data; returns its number."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO engineering_logs (device_id, received_at, content_type, "
                "content_encoding, size, body) VALUES (?,?,?,?,?,?)",
                (device_id, iso(now), content_type, content_encoding, len(body), body))
            return int(cur.lastrowid or 0)

    def logs(self, device_id: str) -> list[dict[str, Any]]:
        """A device's engineering logs (with the body as received)."""
        rows = self._rows("SELECT * FROM engineering_logs WHERE device_id=? ORDER BY n",
                          device_id)
        for r in rows:
            r["body"] = bytes(r["body"])
        return rows


def _device_row(r: dict[str, Any]) -> dict[str, Any]:
    r["firmware"] = json.loads(r["firmware"])
    return r


def _action_row(r: dict[str, Any]) -> dict[str, Any]:
    r.pop("n", None)
    r["params"] = json.loads(r["params"])
    r["result_detail"] = json.loads(r["result_detail"]) if r["result_detail"] else None
    return r
