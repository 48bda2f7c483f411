"""The reference server's dashboard: devices, a device's meters and supplies over time,
its faults, uploads (downloadable as zip) and actions, and a form to queue an action.

Served under ``/dashboard/`` on the server's own TLS port. Login is the admin token
(the one in ``<state_dir>/admin-token``); it makes a session cookie (Secure, HttpOnly,
SameSite Strict) with an idle expiry, and every form carries the session's CSRF token.
Pages are rendered by Jinja2 with autoescaping; the charts are drawn by Chart.js,
vendored as a static file of this package (``static/chart.umd.js``, MIT; the machines
are offline, so nothing comes from a CDN), from data embedded as JSON in the page.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from device_direct.core.actions import ACTION_TYPES
from emulator.server.dashboard import combination, queries
from emulator.server.http_common import server_of
from emulator.server.manager_api import sources_of
from emulator.web.auth import LoginThrottle, Session, Sessions, csrf_ok

PREFIX = "/dashboard"
COOKIE = "dd_dashboard"
LOGIN_COOKIE = "dd_dashboard_login"
_STATIC = Path(__file__).resolve().parent / "static"
# The dashboard's forms are a few hundred bytes. The application's own limit is the
# biggest firmware image (512 MiB), which a form (the login's: no session needed) would
# otherwise be buffered up to, in memory.
FORM_LIMIT = 64 << 10
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class Dashboard:
    """The dashboard's state: templates, sessions, login throttle."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("emulator.server.dashboard", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.sessions = Sessions(idle=timedelta(minutes=30))
        self.throttle = LoginThrottle()


DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard")


def _session(request: web.Request) -> Session | None:
    dash = request.app[DASHBOARD]
    return dash.sessions.get(request.cookies.get(COOKIE), server_of(request).wall.now())


def _render(request: web.Request, template: str, *, status: int = 200,
            session: Session | None = None, **context: Any) -> web.Response:
    text = request.app[DASHBOARD].env.get_template(template).render(
        session=session, csrf=session.csrf if session else "", **context)
    response = web.Response(text=text, status=status, content_type="text/html",
                            charset="utf-8")
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The posted form; 413 once it passes :data:`FORM_LIMIT`, before more is read, and
    400 for a body aiohttp cannot decode (not UTF-8, an unknown charset, a broken
    multipart): the client's mistake, not a 500 with a traceback."""
    try:
        return await request.clone(client_max_size=FORM_LIMIT).post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
        raise web.HTTPBadRequest(reason="the form could not be read: send it as UTF-8 "
                                        "from the page") from None


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _admin(request: web.Request) -> Session:
    session = _session(request)
    if session is None:
        raise web.HTTPSeeOther(f"{PREFIX}/login?" + urlencode({"next": request.path_qs}))
    return session


def _safe_next(value: str) -> str:
    if (not value.startswith(PREFIX + "/") and value != PREFIX) or "//" in value:
        return PREFIX + "/"
    return value


async def login_page(request: web.Request) -> web.Response:
    return _login_form(request, 200, None,
                       _safe_next(request.query.get("next", PREFIX + "/")))


def _login_form(request: web.Request, status: int, error: str | None, nxt: str
                ) -> web.Response:
    # CSRF on the login form too (double submit: the same random token in a cookie and
    # in the form).
    token = secrets.token_urlsafe(24)
    response = _render(request, "login.html", status=status, title="Log in", error=error,
                       next=nxt, login_token=token)
    response.set_cookie(LOGIN_COOKIE, token, secure=True, httponly=True, samesite="Strict",
                        path=PREFIX)
    return response


async def login(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    server = server_of(request)
    form = await _form(request)
    nxt = _safe_next(str(form.get("next", PREFIX + "/")))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, str(form.get("login_token", ""))):
        return _login_form(request, 403, "The login form was stale: try again.", nxt)
    client, now = request.remote or "?", server.wall.now()
    wait = dash.throttle.wait(client, now)
    if wait > timedelta(0):
        return _login_form(request, 429, f"Too many wrong tokens: try again in "
                                         f"{int(wait.total_seconds()) + 1} s.", nxt)
    token = str(form.get("token", "")).strip()
    if not hmac.compare_digest(token.encode(), server.admin_token.encode()):
        dash.throttle.failed(client, now)
        return _login_form(request, 401, "Wrong admin token (it is in the server's state "
                                         "directory, file admin-token).", nxt)
    dash.throttle.succeeded(client)
    session = dash.sessions.create(now)
    response = _see_other(nxt)
    response.set_cookie(COOKIE, session.sid, secure=True, httponly=True, samesite="Strict",
                        path=PREFIX)
    return response


async def logout(request: web.Request) -> web.Response:
    session = _admin(request)
    form = await _form(request)
    if not csrf_ok(session, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="stale form: reload the page")
    request.app[DASHBOARD].sessions.drop(session.sid)
    response = _see_other(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


async def devices_page(request: web.Request) -> web.Response:
    session = _admin(request)
    server = server_of(request)
    rows = queries.devices(server.storage)
    combination.add_device_problems(sources_of(request), rows)
    return _render(request, "devices.html", session=session, title="Devices", devices=rows,
                   now=server.clock.now().isoformat(timespec="seconds"))


async def device_page(request: web.Request, *, status: int = 200,
                      error: str | None = None, form: dict[str, str] | None = None
                      ) -> web.Response:
    session = _admin(request)
    server = server_of(request)
    device_id = request.match_info["id"]
    device = server.storage.device(device_id)
    if device is None:
        raise web.HTTPNotFound(reason=f"no device {device_id}")
    storage = server.storage
    actions = storage.actions(device_id)
    chart = {"meters": queries.meter_series(storage, device_id),
             "supplies": queries.supply_series(storage, device_id)}
    return _render(
        request, "device.html", status=status, session=session,
        title=f"Device {device['serial']}", device=device, chart=chart,
        faults=queries.recent_faults(storage, device_id),
        uploads=queries.upload_list(storage, device_id),
        pending=[a for a in actions if a["result_status"] is None],
        done=[a for a in actions if a["result_status"] is not None][-20:],
        action_types=ACTION_TYPES, error=error, form=form or {},
        queued=request.query.get("queued"))


async def queue_action(request: web.Request) -> web.Response:
    session = _admin(request)
    server = server_of(request)
    device_id = request.match_info["id"]
    data = await _form(request)
    form = {k: str(v) for k, v in data.items()}
    if not csrf_ok(session, form.get("csrf")):
        raise web.HTTPForbidden(reason="stale form: reload the page")
    type_ = form.get("type", "")
    try:
        params = json.loads(form.get("params", "").strip() or "{}")
        if not isinstance(params, dict):
            raise ValueError("parameters must be a JSON object, like {\"install\": \"now\"}")
        expires = int(form.get("expires_in_s", "86400"))
        if type_ not in ACTION_TYPES:
            raise ValueError(f"unknown action type {type_!r}")
        action_id = server.enqueue_action(device_id, type_, params, expires)
    except json.JSONDecodeError as exc:
        return await device_page(request, status=400, form=form,
                                 error=f"parameters are not JSON: {exc.msg} "
                                       f"(line {exc.lineno} column {exc.colno})")
    except ValueError as exc:
        return await device_page(request, status=400, error=str(exc), form=form)
    return _see_other(f"{PREFIX}/devices/{quote(device_id)}?queued={quote(action_id)}")


async def download_upload(request: web.Request) -> web.StreamResponse:
    _admin(request)
    server = server_of(request)
    found = queries.upload_owner_and_zip(server.storage, request.match_info["upload_id"])
    if found is None or found[0] != request.match_info["id"]:
        raise web.HTTPNotFound(reason="no such upload for this device")
    return web.Response(body=found[1], content_type="application/zip", headers={
        "Content-Disposition":
            f'attachment; filename="{request.match_info["upload_id"]}.zip"'})


async def root(request: web.Request) -> web.Response:
    return _see_other(PREFIX + "/")


def add_routes(app: web.Application) -> None:
    """Attach the dashboard to the server's application (``/dashboard/``)."""
    app[DASHBOARD] = Dashboard()
    r = app.router
    r.add_get(PREFIX, root)
    r.add_get(PREFIX + "/", devices_page)
    r.add_get(PREFIX + "/login", login_page)
    r.add_post(PREFIX + "/login", login)
    r.add_post(PREFIX + "/logout", logout)
    r.add_get(PREFIX + "/devices/{id}", device_page)
    r.add_post(PREFIX + "/devices/{id}/actions", queue_action)
    r.add_get(PREFIX + "/devices/{id}/uploads/{upload_id}.zip", download_upload)
    r.add_static(PREFIX + "/static", _STATIC, show_index=False)
