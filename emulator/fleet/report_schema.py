"""The one JSON report layout of ``fleet --report`` and ``fleet --scenario --report``.

Both kinds of run write one object with the same envelope (documented in docs/fleet.md,
checked by ``docs/fleet-report.schema.json``):

``schema`` (always ``device-direct/fleet-report``), ``version`` (:data:`REPORT_VERSION`),
``kind`` (``fleet`` or ``scenario``), ``ok``, ``fleet`` (at least ``devices``, ``days``,
``seed``), ``totals`` (name -> count), ``wall_s``, and ``expectations``: one object per
check with ``name``, ``ok``, ``detail`` and ``failures`` (``[{serial, why}]``, empty when
the check does not name devices). What only one kind has sits beside these keys.

Version history: 1 had no ``schema``/``kind``, and scenario reports had ``checks``
instead of ``expectations`` and no version; 2 is this layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

REPORT_SCHEMA = "device-direct/fleet-report"
REPORT_VERSION = 2
Kind = Literal["fleet", "scenario"]


def expectation(name: str, ok: bool, detail: str = "",
                failures: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """One entry of ``expectations``."""
    return {"name": name, "ok": ok, "detail": detail,
            "failures": [{"serial": s, "why": w} for s, w in failures]}


def envelope(kind: Kind, *, ok: bool, fleet: Mapping[str, Any], totals: Mapping[str, int],
             wall_s: float, expectations: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The keys every report has, in their order; callers add their own after them."""
    for key in ("devices", "days", "seed"):
        if key not in fleet:
            raise ValueError(f"report fleet section needs {key!r}")
    return {"schema": REPORT_SCHEMA, "version": REPORT_VERSION, "kind": kind, "ok": ok,
            "fleet": dict(fleet), "totals": dict(totals), "wall_s": round(wall_s, 3),
            "expectations": [dict(e) for e in expectations]}


def check_envelope(data: Mapping[str, Any], kind: Kind) -> None:
    """Raise ValueError unless ``data`` is a report of this version and ``kind``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != REPORT_SCHEMA or data.get("version") != REPORT_VERSION:
        raise ValueError(f"not a {REPORT_SCHEMA} report of version {REPORT_VERSION} "
                         f"(schema {data.get('schema')!r}, version {data.get('version')!r})")
    if data.get("kind") != kind:
        raise ValueError(f"a {data.get('kind')!r} report, not a {kind!r} one")
