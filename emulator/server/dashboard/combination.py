"""What the dashboard shows of the second data path: managers, and printers with two sources.

Everything comes from :class:`emulator.server.sources.Sources` (the same view the admin
API serves: ``managers()``, ``printers()``, ``billing()``, ``disagreements()``); this
module only groups it for pages and words a manager's problems:

* uploads the server refused (out of scope, not a manager payload, bad hash...);
* printers it reports whose meters disagree with the printer's own Device Direct agent
  (same printer, same UTC day, same meter, two values: see ``sources.py``);
* not heard from in over a day (:data:`STALE`: managers run daily), or never since it
  registered.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from emulator.server.sources import Sources

STALE = timedelta(days=1)
BILLING_DAYS = 31  # days of the combined billing meters shown on a printer page
KIND_NAMES = {"device": "Device Direct agent", "manager": "device manager"}


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _flags_by_printer(sources: Sources) -> Counter[tuple[str, str]]:
    return Counter((d["serial"], d["model"]) for d in sources.disagreements())


def add_device_problems(sources: Sources, devices: list[dict[str, Any]]) -> None:
    """Add to each device row (``queries.devices``) its disagreements with a manager."""
    flags = _flags_by_printer(sources)
    for d in devices:
        n = flags[(d["serial"], d["model"])]
        if n:
            d["problems"].append(f"{n} meter reading(s) disagree with a device manager's")


def managers(sources: Sources, now: datetime) -> list[dict[str, Any]]:
    """Every manager (``Sources.managers()`` rows) with ``disagreements``,
    ``printers_disagreeing``, ``stale`` and ``problems`` (words)."""
    flags = _flags_by_printer(sources)
    reported: dict[str, set[tuple[str, str]]] = {}
    for p in sources.printers():
        for s in p["sources"]:
            if s["kind"] == "manager":
                reported.setdefault(s["id"], set()).add((p["serial"], p["model"]))
    rows = sources.managers()
    for m in rows:
        mine = reported.get(m["manager_id"], set())
        m["disagreements"] = sum(flags[p] for p in mine)
        m["printers_disagreeing"] = sum(1 for p in mine if flags[p])
        last = _when(m["last_contact"])
        m["stale"] = last is None or now - last > STALE
        problems: list[str] = []
        if m["rejected_uploads"]:
            last_refusal = sources.rejections(m["manager_id"], limit=1)[0]
            problems.append(f"{m['rejected_uploads']} upload(s) rejected (last: "
                            f"{last_refusal['error']} at {last_refusal['at']})")
        if m["disagreements"]:
            problems.append(f"{m['disagreements']} meter reading(s) disagree with the "
                            f"printer's own agent ({m['printers_disagreeing']} printer(s))")
        if last is None:
            problems.append(f"never heard from since it registered ({m['registered_at']})")
        elif m["stale"]:
            problems.append(f"not heard from in over a day (last contact {m['last_contact']})")
        m["problems"] = problems
    return rows


def manager(sources: Sources, manager_id: str, now: datetime) -> dict[str, Any] | None:
    """One manager's page: its row, the printers it reports, refusals, uploads, actions."""
    row = next((m for m in managers(sources, now) if m["manager_id"] == manager_id), None)
    if row is None:
        return None
    flags = _flags_by_printer(sources)
    printers = []
    for p in sources.printers():
        mine = [s for s in p["sources"] if s["kind"] == "manager" and s["id"] == manager_id]
        if mine:
            printers.append({
                "serial": p["serial"], "model": p["model"],
                "last_reading": mine[0]["last_reading"],
                "agent": any(s["kind"] == "device" for s in p["sources"]),
                "disagreements": flags[(p["serial"], p["model"])]})
    uploads = sources.uploads(manager_id)
    return {"manager": row, "printers": printers,
            "rejections": sources.rejections(manager_id),
            "uploads": uploads[::-1][:100], "upload_count": len(uploads),
            "actions": sources.actions(manager_id)[-50:]}


def printers(sources: Sources) -> list[dict[str, Any]]:
    """Every printer (serial, model) from either path: its sources and disagreements."""
    flags = _flags_by_printer(sources)
    rows = sources.printers()
    for p in rows:
        kinds = {s["kind"] for s in p["sources"]}
        p["agent"] = "device" in kinds
        p["managed"] = "manager" in kinds
        p["disagreements"] = flags[(p["serial"], p["model"])]
    return rows


def printer(sources: Sources, serial: str, model: str | None
            ) -> dict[str, Any] | list[str] | None:
    """A printer's two sources side by side.

    None when no printer has that serial; the list of its models when ``model`` is not
    given and the serial names several (or names none of them)."""
    models = [p["model"] for p in sources.printers() if p["serial"] == serial]
    if not models:
        return None
    if model is None and len(models) == 1:
        model = models[0]
    if model is None or model not in models:
        return models
    entry = next(p for p in sources.printers()
                 if p["serial"] == serial and p["model"] == model)
    readings = sources.last_readings(serial, model)
    billing = sources.billing(serial, model)
    # Which meters disagreed on the newest day both sources reported them differently.
    newest_day = max((d["date"] for d in billing["disagreements"]), default=None)
    flagged = {d["meter"] for d in billing["disagreements"] if d["date"] == newest_day}
    names = sorted({n for r in readings.values() if r for n in r["meters"]})
    meters = []
    for name in names:
        values = {k: (r["meters"].get(name) if r else None) for k, r in readings.items()}
        meters.append({"name": name, "device": values["device"],
                       "manager": values["manager"],
                       "differ": (values["device"] is not None
                                  and values["manager"] is not None
                                  and values["device"] != values["manager"]),
                       "flagged": newest_day if name in flagged else None})
    scope = [{"manager_id": m["manager_id"], "hostname": m["hostname"],
              "mode": m["scope"]["mode"]}
             for m in sources.managers() if serial in m["scope"]["serials"]]
    return {"serial": serial, "model": model, "sources": entry["sources"],
            "readings": readings, "meters": meters, "scope": scope,
            "days": billing["days"][-BILLING_DAYS:][::-1],
            "disagreements": billing["disagreements"][::-1]}
