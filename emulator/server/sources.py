"""Where the server's printer data came from: managers, their scope, and the combination view.

The public documents describe two data paths and recommend running both (the
"combination model"): the printer uploads itself (Device Direct, ``device_api.py``) and
a device manager on the customer's network reads it over SNMP and uploads for it
(``manager_api.py``). This module keeps what the second path said, in tables of its own
in the server's database (the device tables are ``storage.py``'s and are only read here):

* ``managers``: one row per registered manager (host name, IP, OS, app version,
  location, contact e-mail, its current client certificate) and its scope mode;
* ``manager_scope``: the printer serials a manager may upload for;
* ``manager_uploads`` / ``manager_meters``: every payload a manager sent, with the
  serial, model and billing meters it carried (the zip byte for byte);
* ``manager_rejections``: the uploads of an authenticated manager the server refused
  (out of scope, not a manager payload, bad hash...), the newest
  :data:`REJECTIONS_KEPT` per manager, for the people who look after it (dashboard).

Scope. A new manager's scope is ``learn``: it may upload for any printer not in
another manager's scope, and each printer it uploads for joins its scope (trust on first
use, so a manager works before anyone configures it, and two managers never both own
one printer). An admin who sets the scope (``PUT /admin/v1/managers/{id}/scope``) fixes
it: from then on only the listed serials are accepted (403 ``out_of_scope`` otherwise).

Combination view. A printer is identified by (serial, model). A printer that reports
itself and is also reported by a manager is ONE printer with two sources. For each
printer and UTC day (of the payload's ``generatedAt``) each source's last payload of
that day is its reading; the day's billing meters come from one source only, Device
Direct when it reported that day, else the manager; never the sum. A *disagreement* is
a manager reading that cannot be reconciled with the device's readings of the same day
taken just before and after it (:func:`conflicts`): lifetime counters only grow, by at
most what a printer can print in the time between, so a value below an earlier device
reading (or above a later one), or grown faster than any printer prints, is flagged
with both values and read times. Pages printed between two readings are not flagged.

One SQLite connection of its own on the server's database file (WAL: the device side's
connection is unaffected), used from the event loop thread. ``sqlite3`` errors become
:class:`~emulator.errors.StateStorageError` here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.errors import StateStorageError
from emulator.server.storage import iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS managers (
    manager_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, ip TEXT NOT NULL, os TEXT NOT NULL,
    app_version TEXT NOT NULL, location TEXT NOT NULL, contact_email TEXT NOT NULL,
    registered_at TEXT NOT NULL, last_contact TEXT, cert_serial TEXT NOT NULL,
    scope_mode TEXT NOT NULL DEFAULT 'learn');
CREATE UNIQUE INDEX IF NOT EXISTS managers_cert ON managers (cert_serial);
CREATE TABLE IF NOT EXISTS manager_scope (
    manager_id TEXT NOT NULL REFERENCES managers, serial TEXT NOT NULL,
    PRIMARY KEY (manager_id, serial));
CREATE INDEX IF NOT EXISTS manager_scope_serial ON manager_scope (serial);
CREATE TABLE IF NOT EXISTS manager_uploads (
    n INTEGER PRIMARY KEY, upload_id TEXT UNIQUE NOT NULL,
    manager_id TEXT NOT NULL REFERENCES managers, serial TEXT NOT NULL, model TEXT NOT NULL,
    sequence INTEGER NOT NULL, generated_at TEXT NOT NULL, received_at TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, zip BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS manager_uploads_serial ON manager_uploads (serial, generated_at);
CREATE INDEX IF NOT EXISTS manager_uploads_mid ON manager_uploads (manager_id, n);
CREATE TABLE IF NOT EXISTS manager_meters (
    upload_n INTEGER NOT NULL REFERENCES manager_uploads, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (upload_n, name));
CREATE TABLE IF NOT EXISTS manager_actions (
    id TEXT PRIMARY KEY, manager_id TEXT NOT NULL REFERENCES managers, serial TEXT NOT NULL,
    type TEXT NOT NULL, params TEXT NOT NULL, issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, result_status TEXT, result_detail TEXT, result_at TEXT);
CREATE TABLE IF NOT EXISTS manager_rejections (
    n INTEGER PRIMARY KEY, manager_id TEXT NOT NULL REFERENCES managers, at TEXT NOT NULL,
    status INTEGER NOT NULL, error TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS manager_rejections_mid ON manager_rejections (manager_id, n);
CREATE INDEX IF NOT EXISTS manager_actions_mid ON manager_actions (manager_id, result_status);
"""

SCOPE_MODES = ("learn", "fixed")
REJECTIONS_KEPT = 200  # per manager: a broken manager retrying must not fill the disk


class OutOfScope(Exception):
    """A manager uploaded for a printer it may not report; ``reason`` says why."""

    def __init__(self, serial: str, reason: str) -> None:
        self.serial = serial
        self.reason = reason
        super().__init__(f"printer {serial}: {reason}")


class Sources:
    """The manager tables and the combination view over the server's database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateStorageError(f"cannot open manager tables in {path}: {exc}") from exc

    def close(self) -> None:
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

    # -- managers -------------------------------------------------------------------------

    def register_manager(self, *, manager_id: str, info: dict[str, str], cert_serial: str,
                         now: datetime) -> None:
        """Create the manager, or give an existing one (same id) its new certificate."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO managers (manager_id, hostname, ip, os, app_version, location, "
                "contact_email, registered_at, cert_serial) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(manager_id) DO UPDATE SET hostname=excluded.hostname, "
                "ip=excluded.ip, os=excluded.os, app_version=excluded.app_version, "
                "location=excluded.location, contact_email=excluded.contact_email, "
                "registered_at=excluded.registered_at, cert_serial=excluded.cert_serial",
                (manager_id, info["hostname"], info["ip"], info["os"], info["app_version"],
                 info["location"], info["contact_email"], iso(now), cert_serial))

    def replace_certificate(self, manager_id: str, cert_serial: str) -> None:
        """Make ``cert_serial`` the manager's only valid certificate (renewal)."""
        with self._tx() as db:
            db.execute("UPDATE managers SET cert_serial=? WHERE manager_id=?",
                       (cert_serial, manager_id))

    def manager_by_cert(self, cert_serial: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM managers WHERE cert_serial=?", cert_serial)
        return rows[0] if rows else None

    def manager(self, manager_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM managers WHERE manager_id=?", manager_id)
        return self._with_scope(rows[0]) if rows else None

    def managers(self) -> list[dict[str, Any]]:
        return [self._with_scope(r) for r in
                self._rows("SELECT * FROM managers ORDER BY hostname, manager_id")]

    def _with_scope(self, row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row.pop("cert_serial", None)
        row["scope"] = {"mode": row.pop("scope_mode"), "serials": [
            r["serial"] for r in self._rows(
                "SELECT serial FROM manager_scope WHERE manager_id=? ORDER BY serial",
                row["manager_id"])]}
        counts = self._rows(
            "SELECT COUNT(*) AS uploads, MAX(received_at) AS last_upload, "
            "COUNT(DISTINCT serial || char(0) || model) AS printers_reported "
            "FROM manager_uploads WHERE manager_id=?", row["manager_id"])[0]
        row.update(counts)
        row["rejected_uploads"] = self._rows(
            "SELECT COUNT(*) AS c FROM manager_rejections WHERE manager_id=?",
            row["manager_id"])[0]["c"]
        return row

    def touch(self, manager_id: str, now: datetime) -> None:
        with self._tx() as db:
            db.execute("UPDATE managers SET last_contact=? WHERE manager_id=?",
                       (iso(now), manager_id))

    def set_scope(self, manager_id: str, serials: list[str]) -> None:
        """Fix the manager's scope to exactly ``serials`` (mode ``fixed``)."""
        with self._tx() as db:
            db.execute("DELETE FROM manager_scope WHERE manager_id=?", (manager_id,))
            db.executemany("INSERT INTO manager_scope VALUES (?,?)",
                           [(manager_id, s) for s in sorted(set(serials))])
            db.execute("UPDATE managers SET scope_mode='fixed' WHERE manager_id=?",
                       (manager_id,))

    def _admit(self, db: sqlite3.Connection, manager_id: str, serial: str) -> None:
        mode = db.execute("SELECT scope_mode FROM managers WHERE manager_id=?",
                          (manager_id,)).fetchone()["scope_mode"]
        mine = db.execute("SELECT 1 FROM manager_scope WHERE manager_id=? AND serial=?",
                          (manager_id, serial)).fetchone()
        if mine:
            return
        if mode == "fixed":
            raise OutOfScope(serial, "not in this manager's scope (set by an administrator)")
        other = db.execute("SELECT manager_id FROM manager_scope WHERE serial=? AND "
                           "manager_id<>?", (serial, manager_id)).fetchone()
        if other:
            raise OutOfScope(serial, f"in the scope of manager {other['manager_id']}")
        db.execute("INSERT INTO manager_scope VALUES (?,?)", (manager_id, serial))

    # -- uploads --------------------------------------------------------------------------

    def upload_owner(self, upload_id: str) -> str | None:
        rows = self._rows("SELECT manager_id FROM manager_uploads WHERE upload_id=?",
                          upload_id)
        return str(rows[0]["manager_id"]) if rows else None

    def store_upload(self, manager_id: str, *, upload_id: str, serial: str, model: str,
                     sequence: int, generated_at: str, meters: dict[str, int], body: bytes,
                     sha256: str, now: datetime) -> bool:
        """Admit the printer to the scope and store the upload; False when a duplicate.

        Raises :class:`OutOfScope` (nothing stored) when the manager may not report it.
        """
        try:
            with self._tx() as db:
                if db.execute("SELECT 1 FROM manager_uploads WHERE upload_id=?",
                              (upload_id,)).fetchone():
                    return False
                self._admit(db, manager_id, serial)
                cur = db.execute(
                    "INSERT INTO manager_uploads (upload_id, manager_id, serial, model, "
                    "sequence, generated_at, received_at, size, sha256, zip) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (upload_id, manager_id, serial, model, sequence, generated_at, iso(now),
                     len(body), sha256, body))
                db.executemany("INSERT INTO manager_meters VALUES (?,?,?)",
                               [(cur.lastrowid, k, v) for k, v in sorted(meters.items())])
        except OutOfScope:
            raise  # nothing stored (the transaction rolled back)
        return True

    def record_rejection(self, manager_id: str, *, status: int, error: str, detail: str,
                         now: datetime) -> None:
        """Keep that the server refused one of ``manager_id``'s uploads (the newest
        :data:`REJECTIONS_KEPT` are kept)."""
        with self._tx() as db:
            db.execute("INSERT INTO manager_rejections (manager_id, at, status, error, "
                       "detail) VALUES (?,?,?,?,?)",
                       (manager_id, iso(now), status, error[:64], detail[:500]))
            db.execute("DELETE FROM manager_rejections WHERE manager_id=? AND n NOT IN "
                       "(SELECT n FROM manager_rejections WHERE manager_id=? "
                       "ORDER BY n DESC LIMIT ?)", (manager_id, manager_id, REJECTIONS_KEPT))

    def rejections(self, manager_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The manager's refused uploads, newest first."""
        return self._rows("SELECT at, status, error, detail FROM manager_rejections "
                          "WHERE manager_id=? ORDER BY n DESC LIMIT ?", manager_id, limit)

    def uploads(self, manager_id: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT upload_id, serial, model, sequence, generated_at, received_at, size, "
            "sha256 FROM manager_uploads WHERE manager_id=? ORDER BY n", manager_id)

    def upload_zip(self, manager_id: str, upload_id: str) -> bytes | None:
        """One of the manager's uploads, byte for byte as stored (None: not its own)."""
        rows = self._rows("SELECT zip FROM manager_uploads WHERE manager_id=? AND "
                          "upload_id=?", manager_id, upload_id)
        return bytes(rows[0]["zip"]) if rows else None

    def iter_upload_zips(self) -> Iterator[dict[str, Any]]:
        """Every manager upload with its zip, oldest first (for exports)."""
        cur = self._db.execute("SELECT upload_id, manager_id, serial, model, sequence, "
                               "generated_at, "
                               "received_at, size, sha256, zip FROM manager_uploads ORDER BY n")
        for row in cur:
            yield dict(row)

    # -- actions --------------------------------------------------------------------------

    def add_action(self, action_id: str, manager_id: str, serial: str, type: str,
                   params: dict[str, Any], *, now: datetime, expires_at: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO manager_actions VALUES (?,?,?,?,?,?,?,NULL,NULL,NULL)",
                       (action_id, manager_id, serial, type, json.dumps(params), iso(now),
                        iso(expires_at)))

    def pending_actions(self, manager_id: str, now: datetime) -> list[dict[str, Any]]:
        return [_action(r) for r in self._rows(
            "SELECT * FROM manager_actions WHERE manager_id=? AND result_status IS NULL "
            "AND expires_at>? ORDER BY issued_at, id", manager_id, iso(now))]

    def actions(self, manager_id: str) -> list[dict[str, Any]]:
        return [_action(r) for r in self._rows(
            "SELECT * FROM manager_actions WHERE manager_id=? ORDER BY issued_at, id",
            manager_id)]

    def action(self, action_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM manager_actions WHERE id=?", action_id)
        return _action(rows[0]) if rows else None

    def record_result(self, action_id: str, status: str, detail: dict[str, Any], *,
                      now: datetime) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE manager_actions SET result_status=?, result_detail=?, "
                             "result_at=? WHERE id=? AND result_status IS NULL",
                             (status, json.dumps(detail), iso(now), action_id))
            return cur.rowcount == 1

    # -- the combination view -------------------------------------------------------------

    def printers(self) -> list[dict[str, Any]]:
        """Every printer known from either path, by (serial, model), with its sources."""
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for d in self._rows(
                "SELECT d.device_id, d.serial, d.model, d.last_contact, "
                "(SELECT MAX(generated_at) FROM uploads u WHERE u.device_id=d.device_id) "
                "AS last_reading FROM devices d"):
            found.setdefault((d["serial"], d["model"]), []).append({
                "kind": "device", "id": d["device_id"], "last_contact": d["last_contact"],
                "last_reading": d["last_reading"]})
        for m in self._rows(
                "SELECT u.manager_id, u.serial, u.model, MAX(u.generated_at) AS last_reading, "
                "m.last_contact, m.hostname FROM manager_uploads u JOIN managers m "
                "USING (manager_id) GROUP BY u.manager_id, u.serial, u.model"):
            found.setdefault((m["serial"], m["model"]), []).append({
                "kind": "manager", "id": m["manager_id"], "hostname": m["hostname"],
                "last_contact": m["last_contact"], "last_reading": m["last_reading"]})
        return [{"serial": s, "model": model, "sources": srcs}
                for (s, model), srcs in sorted(found.items())]

    def _by_day(self, sql: str, *args: Any) -> dict[str, list[tuple[str, dict[str, int]]]]:
        """day -> every reading of the day, (generated_at, meters), oldest first."""
        readings: dict[str, dict[str, int]] = {}
        for r in self._rows(sql, *args):
            readings.setdefault(r["generated_at"], {})[r["name"]] = int(r["value"])
        out: dict[str, list[tuple[str, dict[str, int]]]] = {}
        for at in sorted(readings):
            out.setdefault(at[:10], []).append((at, readings[at]))
        return out

    def _source_days(self, serial: str, model: str
                     ) -> tuple[dict[str, list[tuple[str, dict[str, int]]]],
                                dict[str, list[tuple[str, dict[str, int]]]]]:
        """Each source's readings of each day, oldest first: (device's, manager's)."""
        device = self._by_day(
            "SELECT u.generated_at, m.name, m.value FROM uploads u JOIN meters m ON "
            "m.upload_n=u.n JOIN devices d ON d.device_id=u.device_id "
            "WHERE d.serial=? AND d.model=?", serial, model)
        manager = self._by_day(
            "SELECT u.generated_at, m.name, m.value FROM manager_uploads u JOIN manager_meters "
            "m ON m.upload_n=u.n WHERE u.serial=? AND u.model=?", serial, model)
        return device, manager

    def last_readings(self, serial: str, model: str) -> dict[str, dict[str, Any] | None]:
        """Each source's newest reading of the printer's billing meters:
        ``{"device": {"read_at", "meters"} | None, "manager": ... | None}``."""
        out: dict[str, dict[str, Any] | None] = {}
        for kind, days in zip(("device", "manager"), self._source_days(serial, model),
                              strict=True):
            newest = days[max(days)][-1] if days else None
            out[kind] = ({"read_at": newest[0], "meters": newest[1]}
                         if newest is not None else None)
        return out

    def billing(self, serial: str, model: str) -> dict[str, Any]:
        """The printer's billing meters per day from one source, and the disagreements."""
        device, manager = self._source_days(serial, model)
        days: list[dict[str, Any]] = []
        disagreements: list[dict[str, Any]] = []
        for day in sorted(set(device) | set(manager)):
            d, m = device.get(day), manager.get(day)
            chosen, source = (d[-1], "device") if d else (m[-1] if m else None, "manager")
            assert chosen is not None
            days.append({"date": day, "source": source, "read_at": chosen[0],
                         "meters": chosen[1]})
            for c in conflicts(d or [], m or []):
                disagreements.append({"serial": serial, "model": model, "date": day, **c})
        return {"serial": serial, "model": model, "days": days,
                "disagreements": disagreements}

    def disagreements(self) -> list[dict[str, Any]]:
        """Every flagged disagreement over every printer with two sources."""
        out: list[dict[str, Any]] = []
        for p in self.printers():
            if len({s["kind"] for s in p["sources"]}) > 1:
                out.extend(self.billing(p["serial"], p["model"])["disagreements"])
        return out


MAX_PAGES_PER_MINUTE = 300  # faster than any printer: more between two readings is not printing
SLACK_PAGES = 5  # a job counted by one source a moment before the other


def _minutes(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() / 60


def conflicts(device: list[tuple[str, dict[str, int]]],
              manager: list[tuple[str, dict[str, int]]]) -> list[dict[str, Any]]:
    """Manager readings no device reading of the day can be reconciled with (sans-I/O).

    Both sources read the same lifetime counters, which only grow, at known times. A
    manager reading is compared with the device readings just before and just after it
    (time-aligned): the counter may have grown by the pages printed in between, at most
    :data:`MAX_PAGES_PER_MINUTE` (plus :data:`SLACK_PAGES`), and never shrunk. A value
    below an earlier reading or above a later one (``went-back``), or grown faster than
    any printer prints (``too-fast``), is a disagreement: one record per manager
    reading and meter, against the nearest device reading it conflicts with.
    """
    out: list[dict[str, Any]] = []
    for m_at, m_meters in manager:
        for name in sorted(m_meters):
            value = m_meters[name]
            seen = [(at, meters[name]) for at, meters in device if name in meters]
            before = [(at, v) for at, v in seen if at <= m_at][-1:]
            after = [(at, v) for at, v in seen if at >= m_at][:1]
            found: tuple[str, int, str] | None = None
            for at, v in before:
                allowed = MAX_PAGES_PER_MINUTE * _minutes(m_at, at) + SLACK_PAGES
                if value < v or value - v > allowed:
                    found = (at, v, "went-back" if value < v else "too-fast")
            for at, v in after:
                allowed = MAX_PAGES_PER_MINUTE * _minutes(at, m_at) + SLACK_PAGES
                nearer = found is None or _minutes(at, m_at) < _minutes(m_at, found[0])
                if (value > v or v - value > allowed) and nearer:
                    found = (at, v, "went-back" if value > v else "too-fast")
            if found is not None:
                out.append({"meter": name, "device_value": found[1], "device_read_at": found[0],
                            "manager_value": value, "manager_read_at": m_at,
                            "reason": found[2]})
    return out


def _action(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["params"] = json.loads(r["params"])
    r["result_detail"] = json.loads(r["result_detail"]) if r["result_detail"] else None
    return r
