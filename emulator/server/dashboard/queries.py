"""What the dashboard reads from the server's database (read-only SELECTs).

Each function returns plain rows; the pages turn them into tables and chart data.
"""

from __future__ import annotations

from typing import Any

from emulator.server.storage import Storage

SUPPLY_PROBLEMS = ("low", "empty", "near-full", "full")
MAX_POINTS = 400  # uploads drawn on a device page's charts (the newest)

# A gap is a problem while payloads are still missing from it: one that uploads
# arriving late have filled (Storage.sequence_gaps' "filled") lost nothing.
# The newest upload is the one with the highest sequence (the device numbers its
# payloads as it builds them), as on the device page's list and charts; not the last
# one stored: an older payload that arrives late must not bring back its supply alerts
# and its fault history.
_DEVICES = """
SELECT d.device_id, d.serial, d.model, d.registered_at, d.last_contact,
  (SELECT COUNT(*) FROM uploads u WHERE u.device_id = d.device_id) AS uploads,
  (SELECT MAX(received_at) FROM uploads u WHERE u.device_id = d.device_id) AS last_upload,
  (SELECT COUNT(*) FROM sequence_gaps g WHERE g.device_id = d.device_id
     AND (SELECT COUNT(DISTINCT u.sequence) FROM uploads u WHERE u.device_id = g.device_id
          AND u.sequence BETWEEN g.first_missing AND g.last_missing)
         < g.last_missing - g.first_missing + 1) AS gaps,
  (SELECT COUNT(*) FROM actions a WHERE a.device_id = d.device_id
     AND a.result_status IN ('failed', 'rejected', 'expired')) AS failed_actions,
  (SELECT COUNT(*) FROM actions a WHERE a.device_id = d.device_id
     AND a.result_status IS NULL) AS pending_actions,
  (SELECT COUNT(*) FROM supplies s WHERE s.upload_n = (SELECT n FROM uploads u
     WHERE u.device_id = d.device_id ORDER BY sequence DESC, n DESC LIMIT 1)
     AND s.status IN ('low', 'empty', 'near-full', 'full')) AS supply_problems
FROM devices d ORDER BY d.serial
"""


def devices(storage: Storage) -> list[dict[str, Any]]:
    """Every device with last contact, last upload, and its problems as words."""
    rows = storage.query(_DEVICES)
    for r in rows:
        problems = []
        if r["uploads"] == 0:
            problems.append("no upload yet")
        if r["gaps"]:
            problems.append(f"{r['gaps']} sequence gap(s)")
        if r["failed_actions"]:
            problems.append(f"{r['failed_actions']} action(s) not done")
        if r["supply_problems"]:
            problems.append(f"{r['supply_problems']} supply alert(s)")
        r["problems"] = problems
    return rows


def meter_series(storage: Storage, device_id: str) -> dict[str, Any]:
    """Meters over time: ``{"labels": [generated_at...], "series": [{name, data}]}``."""
    rows = storage.query(
        "SELECT u.sequence, u.generated_at, m.name, m.value FROM meters m "
        "JOIN uploads u ON u.n = m.upload_n WHERE u.device_id = ? AND u.n IN "
        "(SELECT n FROM uploads WHERE device_id = ? ORDER BY sequence DESC LIMIT ?) "
        "ORDER BY u.sequence, m.name", device_id, device_id, MAX_POINTS)
    return _series(rows, "name", "value")


def supply_series(storage: Storage, device_id: str) -> dict[str, Any]:
    """Supply levels in percent over time, one series per supply."""
    rows = storage.query(
        "SELECT u.sequence, u.generated_at, s.idx, s.name, s.capacity, s.level "
        "FROM supplies s JOIN uploads u ON u.n = s.upload_n WHERE u.device_id = ? AND u.n IN "
        "(SELECT n FROM uploads WHERE device_id = ? ORDER BY sequence DESC LIMIT ?) "
        "ORDER BY u.sequence, s.idx", device_id, device_id, MAX_POINTS)
    for r in rows:
        r["label"] = f"{r['idx']} {r['name']}"
        r["percent"] = (round(100 * r["level"] / r["capacity"], 1)
                        if r["capacity"] > 0 and r["level"] >= 0 else None)
    return _series(rows, "label", "percent")


def _series(rows: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    labels: list[str] = []
    index: dict[int, int] = {}
    for r in rows:
        if r["sequence"] not in index:
            index[r["sequence"]] = len(labels)
            labels.append(r["generated_at"])
    series: dict[str, list[Any]] = {}
    for r in rows:
        values = series.setdefault(r[key], [None] * len(labels))
        values[index[r["sequence"]]] = r[value]
    # A list, not a mapping: the page's JSON (Jinja's tojson) sorts mapping keys.
    return {"labels": labels, "series": [{"name": k, "data": v} for k, v in series.items()]}


def recent_faults(storage: Storage, device_id: str) -> list[dict[str, Any]]:
    """The fault history the newest upload carried (the device keeps the last 40)."""
    return storage.query(
        "SELECT code, subsystem, at, impressions, stops_machine, description FROM faults "
        "WHERE upload_n = (SELECT n FROM uploads WHERE device_id = ? "
        "ORDER BY sequence DESC, n DESC LIMIT 1) ORDER BY at DESC", device_id)


def upload_list(storage: Storage, device_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest uploads (no zip bodies)."""
    return storage.query(
        "SELECT upload_id, sequence, generated_at, trigger, received_at, size, sha256 "
        "FROM uploads WHERE device_id = ? ORDER BY sequence DESC, n DESC LIMIT ?",
        device_id, limit)


def upload_owner_and_zip(storage: Storage, upload_id: str) -> tuple[str, bytes] | None:
    rows = storage.query("SELECT device_id, zip FROM uploads WHERE upload_id = ?", upload_id)
    return (str(rows[0]["device_id"]), bytes(rows[0]["zip"])) if rows else None
