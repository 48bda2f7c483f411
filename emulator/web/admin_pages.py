"""The printer's admin pages: remote-services settings, audit log, QA.

Each needs the admin session; each form carries the session's CSRF token.

* ``/remote``: remote services on/off, the communication server and its last contact,
  the proxy (off / manual with host, port, bypass list and credentials / automatic),
  which remote actions are allowed, locked-down mode, consent for engineering logs.
  A save is validated as the agent's TOML file is (``remote_settings``), persisted,
  and put in force on the running agent (``device_direct.live.apply_settings``); a
  bad value re-shows the form with that field's error and changes nothing.
  "Test connection" runs the agent's real connectivity check; "Send now" asks for a
  sync at once.
* ``/audit``: the device's audit log, and its export as CSV or HTML.
* ``/qa``: raise a fault or jam by chain-link code, open or close the front door, set
  a supply's level, power-cycle, cut remote services' network for N minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from device_direct.agent import AUDIT_FILE
from device_direct.audit import AuditLog
from device_direct.audit_report import rows_of, to_csv, to_html
from device_direct.errors import ConfigError, DeviceDirectError
from device_direct.live import apply_settings, check_connection
from emulator.errors import EmulatorError
from emulator.web.remote_settings import (
    REMOTE_ACTIONS,
    apply_changes,
    parse_form,
    save_settings,
    values_of,
)
from emulator.web.server import PrinterWebServer, _redirect, require_admin, web_of

log = logging.getLogger("emulator.web")
MAX_CUT_MINUTES = 24 * 60


# -- remote services ----------------------------------------------------------------------


def _remote(request: web.Request, w: PrinterWebServer, *, status: int = 200,
            values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
            check: Any = None) -> web.Response:
    agent = w.runner.agent
    if agent is None:
        return w.render(request, "remote.html", title="Remote services", agent=None,
                        status=status)
    last_contact = next((e for e in reversed(agent.audit.read())
                         if e.get("result") in ("stored", "duplicate") or e.get("ok")), None)
    return w.render(request, "remote.html", title="Remote services", agent=agent.status(),
                    server=agent.config.server, last_contact=last_contact,
                    values=values or values_of(agent.config), errors=errors or {},
                    actions=REMOTE_ACTIONS, check=check, status=status)


async def remote_page(request: web.Request) -> web.Response:
    await require_admin(request)
    return _remote(request, web_of(request))


async def remote_save(request: web.Request) -> web.Response:
    _, form = await require_admin(request, post=True)
    w = web_of(request)
    runner = w.runner
    agent = runner.agent
    if agent is None:
        raise web.HTTPConflict(reason="this device runs without Device Direct")
    data = await request.post()
    allowed = [str(v) for v in data.getall("allowed_actions", [])]
    changes = parse_form(form, allowed)
    try:
        new = apply_changes(agent.config, changes)
    except ConfigError as exc:
        key = exc.key or "form"
        message = str(exc).split(f"key '{key}': ", 1)[-1].replace("override expected", "expected")
        shown = values_of(agent.config)
        shown.update({k: v for k, v in form.items() if k in shown and k != "proxy.password"})
        shown["services.disabled_actions"] = [a for a in REMOTE_ACTIONS if a not in allowed]
        return _remote(request, w, status=400, values=shown, errors={key: message})
    save_settings(runner.state_dir, new)
    if apply_settings(agent, new):
        await runner.restart_agent()
    log.info("remote-services settings changed on the web pages")
    return _redirect("/remote?done=saved")


async def remote_test(request: web.Request) -> web.Response:
    await require_admin(request, post=True)
    w = web_of(request)
    agent = w.runner.agent
    if agent is None:
        raise web.HTTPConflict(reason="this device runs without Device Direct")
    check = await check_connection(agent)
    return _remote(request, w, check=check)


async def remote_send_now(request: web.Request) -> web.Response:
    await require_admin(request, post=True)
    agent = web_of(request).runner.agent
    if agent is None:
        raise web.HTTPConflict(reason="this device runs without Device Direct")
    agent.send_now("on-demand")
    return _redirect("/remote?done=sent")


# -- audit --------------------------------------------------------------------------------


def _audit_rows(w: PrinterWebServer) -> list[Any]:
    agent = w.runner.agent
    log_path = (agent.data_dir if agent is not None
                else w.runner.state_dir / "device-direct") / AUDIT_FILE
    return rows_of(AuditLog(log_path).read())


async def audit_page(request: web.Request) -> web.Response:
    await require_admin(request)
    w = web_of(request)
    rows = _audit_rows(w)
    return w.render(request, "audit.html", title="Audit log", rows=list(reversed(rows)))


async def audit_export(request: web.Request) -> web.Response:
    await require_admin(request)
    w = web_of(request)
    rows = _audit_rows(w)
    serial = w.serial
    if request.match_info["fmt"] == "csv":
        return web.Response(text=to_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="audit-{serial}.csv"'})
    text = to_html(rows, title=f"Device Direct audit log of {serial}",
                   subtitle=f"exported {w.now().isoformat()}")
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="audit-{serial}.html"'})


# -- QA -----------------------------------------------------------------------------------


async def qa_page(request: web.Request) -> web.Response:
    await require_admin(request)
    return _qa(request, web_of(request))


def _qa(request: web.Request, w: PrinterWebServer, *, status: int = 200,
        error: str | None = None) -> web.Response:
    device = w.runner.device
    assert device is not None
    return w.render(request, "qa.html", title="QA", error=error, status=status,
                    faults=device.profile.faults, supplies=device.snapshot().supplies,
                    power=device.power.value)


async def qa_post(request: web.Request) -> web.Response:
    _, form = await require_admin(request, post=True)
    w = web_of(request)
    device = w.runner.device
    assert device is not None
    what = request.match_info["what"]
    try:
        if what == "fault":
            device.inject_fault(form.get("code", "").strip())
        elif what == "jam":
            device.jam()
        elif what == "clear":
            device.clear_fault()
            what = "cleared"
        elif what == "door":
            opened = form.get("state") == "open"
            device.set_door(opened)
            what = "door-open" if opened else "door-closed"
        elif what == "supply":
            device.set_supply_level(_int(form, "index"), _int(form, "level"))
        elif what == "power":
            _background(w, _power_cycle(w))
        elif what == "network":
            minutes = _int(form, "minutes")
            if not 1 <= minutes <= MAX_CUT_MINUTES:
                raise ValueError(f"minutes must be 1..{MAX_CUT_MINUTES}, got {minutes}")
            if w.network_cut is not None and not w.network_cut.done():
                raise ValueError("the network is already cut")
            w.network_cut = _background(w, w.runner.cut_network(minutes * 60))
            await asyncio.sleep(0)  # the cut is in force when the page comes back
        else:
            raise web.HTTPNotFound()
    except (ValueError, EmulatorError, DeviceDirectError) as exc:
        return _qa(request, w, status=400, error=str(exc))
    return _redirect(f"/qa?done={what}")


def _int(form: dict[str, str], name: str) -> int:
    try:
        return int(form.get(name, "").strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {form.get(name, '')!r}") from None


def _background(w: PrinterWebServer, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(coro)
    w.background.add(task)
    task.add_done_callback(w.background.discard)
    return task


async def _power_cycle(w: PrinterWebServer) -> None:
    with contextlib.suppress(EmulatorError, DeviceDirectError):
        await w.runner.power_off()
        await w.runner.power_on()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/remote", remote_page)
    r.add_post("/remote", remote_save)
    r.add_post("/remote/test", remote_test)
    r.add_post("/remote/send-now", remote_send_now)
    r.add_get("/audit", audit_page)
    r.add_get("/audit/export.{fmt:csv|html}", audit_export)
    r.add_get("/qa", qa_page)
    r.add_post("/qa/{what}", qa_post)
