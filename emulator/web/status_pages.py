"""The printer's public pages: status, supplies and trays, counters and fault history.

Read without a login, as on real printers. Everything shown comes from the running
device at the moment of the request: the model's snapshot, the status the SNMP agent
derives from it (hrDeviceStatus, hrPrinterStatus, the console display), the SNMP
system settings and port 9100's ready message.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aiohttp import web

from device_direct.model import Alert, Supply
from emulator.snmp.printer_mib import tray_states
from emulator.snmp.printer_status import printer_status
from emulator.web.server import web_of

_CHAIN_LINK = re.compile(r"^(\d{3}-\d{3})\s+(.*)$")
SEVERITY_WORDS = {1: "other", 3: "critical", 4: "warning", 5: "warning (binary change)"}
_COUNTER_LABELS = {
    "black_impressions": "Black impressions", "color_impressions": "Color impressions",
    "total_impressions": "Total impressions",
    "black_large_impressions": "Black large impressions",
    "color_large_impressions": "Color large impressions",
    "total_large_impressions": "Total large impressions",
    "sheets": "Sheets", "duplex_sheets": "Two-sided sheets",
    "print_impressions": "Print impressions", "copy_impressions": "Copy impressions",
    "fax_impressions": "Fax impressions", "report_impressions": "Report impressions",
    "scan_images": "Scanned images", "fax_sent_images": "Fax images sent",
}
BILLING = ("black_impressions", "color_impressions", "total_impressions",
           "black_large_impressions", "color_large_impressions", "total_large_impressions")


def alert_rows(alerts: tuple[Alert, ...]) -> list[dict[str, Any]]:
    """Alerts for a table: severity word, chain-link code (when the alert is a fault)."""
    rows = []
    for a in alerts:
        m = _CHAIN_LINK.match(a.description)
        rows.append({"severity": SEVERITY_WORDS.get(int(a.severity.value), a.severity.name.lower()),
                     "code": m.group(1) if m else "", "mib_code": a.code,
                     "description": m.group(2) if m else a.description,
                     "raised_at": a.raised_at})
    return rows


def supply_rows(supplies: tuple[Supply, ...]) -> list[dict[str, Any]]:
    """Supplies with the percentage their level bar shows (None: level not known)."""
    rows = []
    for s in supplies:
        percent = (round(100 * s.level / s.capacity) if s.capacity > 0 and s.level >= 0
                   else None)
        # The bar's colour follows the supply's state (the device's thresholds), not a
        # fixed percentage: <meter> shows green at or above "high", amber between "low"
        # and "high", red below "low".
        meter = {"ok": (0, 0)}.get(s.status, (101, 101) if s.status in ("empty", "full")
                                   else (0, 101))
        rows.append({"s": s, "percent": percent, "meter": meter})
    return rows


def _uptime(ticks: int) -> str:
    return str(timedelta(seconds=ticks // 100))


async def status_page(request: web.Request) -> web.Response:
    w = web_of(request)
    runner = w.runner
    device = runner.device
    assert device is not None
    alerts = device.alerts()
    st = printer_status(device.power, alerts)
    display = st.display
    if runner.jetdirect is not None:
        from emulator.jetdirect.pjl import pjl_status

        display = pjl_status(runner.jetdirect.view()).display
    agent = runner.agent
    return w.render(
        request, "status.html", title="Status", power=device.power.value,
        device_status=st.device.name.lower(), printer_state=st.printer.name.lower(),
        conditions=sorted(c.name.lower().replace("_", " ") for c in st.conditions),
        display=display, uptime=_uptime(device.uptime_ticks()),
        firmware=device.identity().firmware, banks=device.firmware(),
        alerts=alert_rows(alerts), network=device.network(),
        agent=agent.status() if agent is not None else None)


async def supplies_page(request: web.Request) -> web.Response:
    w = web_of(request)
    device = w.runner.device
    assert device is not None
    # The same rows prtInputTable serves (emulator.snmp.printer_mib.tray_states).
    trays = [{"t": t, "state": "empty" if t.level == 0 else "ready",
              "level": "empty (0)" if t.level == 0 else "paper loaded (-3: some remains)"}
             for t in tray_states(device.profile.equipment, device.alerts(), device.power)]
    return w.render(request, "supplies.html", title="Supplies",
                    supplies=supply_rows(device.snapshot().supplies), trays=trays)


async def counters_page(request: web.Request) -> web.Response:
    w = web_of(request)
    device = w.runner.device
    assert device is not None
    snap = device.snapshot()
    counters = [(name, label, getattr(snap.counters, name))
                for name, label in _COUNTER_LABELS.items()]
    return w.render(request, "counters.html", title="Counters and faults",
                    billing=[c for c in counters if c[0] in BILLING],
                    usage=[c for c in counters if c[0] not in BILLING],
                    faults=snap.faults[:40], jobs=snap.jobs[:10], hfsi=snap.hfsi)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/status", status_page)
    app.router.add_get("/supplies", supplies_page)
    app.router.add_get("/counters", counters_page)
