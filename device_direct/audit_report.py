"""The audit log as an administrator reads it: rows, CSV and a self-contained HTML page.

The remote-services documents say an administrator can see what the device sent and
received; the device's audit log (``audit.py``: one JSON line per exchange) holds it.
This module turns those lines into rows (time, exchange, result, size, detail) and
writes them as CSV (RFC 4180, UTF-8) or as one HTML file with no outside references.
Used by ``device-direct audit --format csv|html`` and by the printer's web pages.
Standard library only (``csv``, ``html``): it runs on the device.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

COLUMNS = ("time", "exchange", "result", "bytes", "detail")
# Fields shown in their own column (the rest go to "detail", key=value).
_OWN = {"at", "event", "result", "ok", "status", "bytes"}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One exchange with the server."""

    time: str
    exchange: str
    result: str
    bytes: int | None
    detail: str

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.time, self.exchange, self.result,
                "" if self.bytes is None else str(self.bytes), self.detail)


def rows_of(entries: Iterable[Mapping[str, Any]]) -> list[AuditRow]:
    """Audit-log lines (dicts) as rows, oldest first; odd lines become readable rows."""
    out = []
    for e in entries:
        if "result" in e:
            result = str(e["result"])
        elif "ok" in e:
            result = "ok" if e["ok"] else "failed"
        elif "status" in e:
            result = str(e["status"])
        else:
            result = ""
        size = e.get("bytes")
        detail = "; ".join(f"{k}={_text(v)}" for k, v in sorted(e.items()) if k not in _OWN)
        out.append(AuditRow(time=_text(e.get("at", "")), exchange=_text(e.get("event", "?")),
                            result=result,
                            bytes=size if isinstance(size, int) and not isinstance(size, bool)
                            else None, detail=detail))
    return out


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def to_csv(rows: Iterable[AuditRow]) -> str:
    """CSV with a header line; cells that a spreadsheet would run as a formula are
    prefixed with an apostrophe (CSV injection)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(c) for c in row.as_tuple()])
    return buf.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;
text-align:left;font-size:.9em;vertical-align:top}th{background:#eee}
tr.failed td,tr.rejected td{background:#fde8e8}td.n{text-align:right}"""


def to_html(rows: Iterable[AuditRow], *, title: str, subtitle: str = "") -> str:
    """One self-contained HTML page (inline style, no script); every value escaped."""
    rows = list(rows)
    body = "\n".join(
        f'<tr class="{html.escape(r.result)}"><td>{html.escape(r.time)}</td>'
        f"<td>{html.escape(r.exchange)}</td><td>{html.escape(r.result)}</td>"
        f'<td class="n">{"" if r.bytes is None else r.bytes}</td>'
        f"<td>{html.escape(r.detail)}</td></tr>" for r in rows)
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    # Uploads only: a firmware download's row carries the bytes it received.
    sent = sum(r.bytes or 0 for r in rows if r.exchange == "upload")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
            f"<p>{len(rows)} exchanges; {sent} bytes of payload sent.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
            f"</body></html>\n")
