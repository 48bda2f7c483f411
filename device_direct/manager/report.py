"""The audit report of printers read by the manager: CSV for spreadsheets, HTML for people.

Sans-I/O: a scan document (``ScanReport.to_json()``, or ``device-direct manager scan
--json`` saved to a file) in, text out. One row per printer: identity, address (with
mask, gateway and DNS name), disk, meters, supplies, status and when it was read.
Device strings are data, never markup: the HTML escapes every value, and the CSV
neutralises cells a spreadsheet would run as a formula (a leading ``=``, ``+``, ``-``,
``@``).
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

COLUMNS = ("address", "vendor", "model", "serial", "mac", "subnet_mask", "gateway",
           "dns_name", "firmware", "sys_name", "disk_bytes",
           "sys_location", "device_status", "printer_status", "detected_errors", "alerts",
           "total_impressions", "black", "color", "supplies", "supplies_low_or_empty",
           "read_at", "missing")


def rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One flat row per printer (every value a string; unknown is empty)."""
    # A scan's printers were all read when it finished; the manager's stored readings
    # (readings.json) carry each printer's own time.
    read_at = str(doc.get("finished_at") or doc.get("read_at") or "")
    out = []
    for p in _list(doc.get("printers")):
        if not isinstance(p, dict):
            continue
        s, c = p.get("status"), p.get("counters")
        s = s if isinstance(s, dict) else {}
        c = c if isinstance(c, dict) else {}
        supplies = [x for x in _list(p.get("supplies")) if isinstance(x, dict)]
        alerts = [a for a in _list(s.get("alerts")) if isinstance(a, dict)]
        net, props = p.get("network"), p.get("properties")
        net = net if isinstance(net, dict) else {}
        props = props if isinstance(props, dict) else {}

        def fmt(v: Any) -> str:
            return "" if v is None else str(v)

        out.append({
            "address": fmt(p.get("address")), "vendor": fmt(p.get("vendor")),
            "model": fmt(p.get("model")), "serial": fmt(p.get("serial")),
            "mac": fmt(p.get("mac")), "subnet_mask": fmt(net.get("subnet_mask")),
            "gateway": fmt(net.get("gateway")), "dns_name": fmt(net.get("dns_name")),
            "disk_bytes": fmt(props.get("disk_bytes")), "firmware": fmt(p.get("firmware")),
            "sys_name": fmt(p.get("sys_name")), "sys_location": fmt(p.get("sys_location")),
            "device_status": fmt(s.get("device_status")),
            "printer_status": fmt(s.get("printer_status")),
            "detected_errors": " ".join(map(str, _list(s.get("detected_errors")))),
            "alerts": "; ".join(f"{a.get('severity')}: {a.get('description') or a.get('code')}"
                                for a in alerts),
            "total_impressions": fmt(c.get("total_impressions")),
            "black": fmt(c.get("black")), "color": fmt(c.get("color")),
            "supplies": "; ".join(
                f"{x.get('description')} {x['percent']}%" if x.get("percent") is not None
                else f"{x.get('description')} ({x.get('state')})" for x in supplies),
            "supplies_low_or_empty": str(sum(1 for x in supplies
                                             if x.get("state") in ("low", "empty"))),
            "read_at": str(p.get("read_at") or read_at),
            "missing": " ".join(map(str, _list(p.get("missing")))),
        })
    return out


def _list(value: Any) -> list[Any]:
    """The list a scan document holds there; [] for anything else (a hand-edited file)."""
    return value if isinstance(value, list) else []


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not _number(value) else value


def _number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def to_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(doc):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def to_html(doc: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{e(r[c])}</td>" for c in COLUMNS) + "</tr>"
                     for r in rows(doc))
    errors_found = [x for x in _list(doc.get("errors")) if isinstance(x, dict)]
    summary = (f"{len(_list(doc.get('printers')))} printers, {doc.get('not_printers', 0)} other "
               f"SNMP hosts, {doc.get('no_answer', 0)} without answer, "
               f"{len(errors_found)} errors; read "
               f"{doc.get('finished_at') or doc.get('read_at') or '?'}")
    errors = "".join(f"<li>{e(str(x.get('address')))}: {e(str(x.get('message')))}</li>"
                     for x in errors_found)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Printer audit report</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:2px 6px;font-size:90%}</style></head>\n"
            f"<body><h1>Printer audit report</h1><p>{e(summary)}</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n"
            + (f"<h2>Errors</h2><ul>{errors}</ul>\n" if errors else "")
            + "</body></html>\n")
