"""The emulated printer's embedded web server: the app, its login and its page helpers.

Theory of operation
-------------------
One aiohttp application per device, on its own TCP port (the device's host address,
like SNMP and port 9100), server-rendered from Jinja2 templates with autoescaping on:
every device string (sysLocation set over SNMP, a job name, the PJL ready message)
goes through the template engine and is shown as text. No page runs a script, and the
Content-Security-Policy header says so, so markup that slipped through could not run
either.

Status pages (status, supplies, counters) are public, as on real printers. The
remote-services settings, the audit log and the QA page need the admin login: the
device's password (``--admin-password``; by default the serial number, as many
printers ship). A login makes a session (cookie ``dd_session``: HttpOnly, SameSite
Strict) with an idle expiry on the device's clock; each session has a CSRF token that
every form carries and every POST must present. Wrong passwords are throttled per
client address (``auth.LoginThrottle``).

The pages read the running device through its :class:`~emulator.device_runner.
DeviceRunner`: the model, the SNMP agent's system settings, port 9100's ready message,
and the Device Direct agent.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from emulator.errors import EmulatorError
from emulator.http_log import quiet_bad_requests
from emulator.web.auth import (
    SESSION_COOKIE,
    AdminPassword,
    LoginThrottle,
    Session,
    Sessions,
    csrf_ok,
)

if TYPE_CHECKING:
    from aiohttp.web_request import FileField

    from device_direct.agent import Agent
    from device_direct.clock import Clock
    from emulator.jetdirect import JetDirectServer
    from emulator.model.device import EmulatedDevice
    from emulator.snmp import SnmpAgent

log = logging.getLogger("emulator.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEB: web.AppKey[PrinterWebServer] = web.AppKey("printer_web")
SESSION: web.RequestKey[Session | None] = web.RequestKey("dd_session")
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_MAX_BODY = 64 * 1024
LOGIN_COOKIE = "dd_login"

# Messages a redirect may name (``?done=...``): never text taken from the request.
DONE_MESSAGES = {
    "saved": "Settings saved and in force.",
    "sent": "Send now requested: the agent syncs at once.",
    "fault": "Fault raised.", "jam": "Jam raised.", "cleared": "Active fault cleared.",
    "door-open": "Front door opened.", "door-closed": "Front door closed.",
    "supply": "Supply level set.", "power": "Power cycle started: the device is rebooting.",
    "network": "Network cut: remote services are off line for the time given.",
    "network-back": "Network restored.",
    "logout": "Logged out.",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The pages' Jinja2 environment: one per process, shared by every printer (its
    compiled templates too)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("emulator.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env


class PrinterWebError(EmulatorError):
    """The printer's web pages could not start (port in use, address not here)."""


class PrinterHost(Protocol):
    """What the pages need of the running device: :class:`~emulator.device_runner.
    DeviceRunner` is one; the pytest plugin's device wraps itself in another."""

    @property
    def device(self) -> EmulatedDevice | None: ...
    @property
    def snmp(self) -> SnmpAgent | None: ...
    @property
    def jetdirect(self) -> JetDirectServer | None: ...
    @property
    def agent(self) -> Agent | None: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def state_dir(self) -> Path: ...
    async def stop_agent(self) -> None: ...
    async def restart_agent(self) -> None: ...
    async def power_off(self) -> None: ...
    async def cut_network(self, seconds: float) -> None: ...
    async def power_on(self) -> None: ...


class PrinterWebServer:
    """The printer's web pages for one running device: ``await start()``, ``await stop()``."""

    def __init__(self, runner: PrinterHost, *, host: str = "127.0.0.1", port: int = 0,
                 admin_password: str | None = None,
                 session_idle: timedelta = timedelta(minutes=15)) -> None:
        self.runner = runner
        self.host = host
        self._requested_port = port
        self.port = port
        assert runner.device is not None, "the device must exist before its web pages"
        self.serial = runner.device.serial
        # Hashed at the first login, not here: scrypt costs ~60 ms of CPU, and a
        # simulated LAN starts dozens of printers' pages at once.
        self._password_text: str | None = (
            admin_password or runner.device.profile.admin_password or self.serial)
        self._password: AdminPassword | None = None
        self.sessions = Sessions(idle=session_idle)
        self.throttle = LoginThrottle()
        self.env = environment()
        self._app_runner: web.AppRunner | None = None
        self.background: set[Any] = set()  # QA tasks (power cycle, network cut)
        self.network_cut: Any = None  # the running cut's task

    @property
    def password(self) -> AdminPassword:
        """The admin password's salted hash (the text is dropped once hashed)."""
        if self._password is None:
            assert self._password_text is not None
            self._password = AdminPassword.from_text(self._password_text)
            self._password_text = None
        return self._password

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        from emulator.web import admin_pages, status_pages

        app = web.Application(middlewares=[self._headers, self._session],
                              client_max_size=_MAX_BODY)
        app[WEB] = self
        app.router.add_get("/", self._root)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_static("/static", _static_dir(), show_index=False)
        status_pages.add_routes(app)
        admin_pages.add_routes(app)
        return app

    async def start(self) -> None:
        quiet_bad_requests()
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise PrinterWebError(f"cannot listen on tcp/{self.host}:{self._requested_port} "
                                  f"(the printer's web pages): {exc}") from exc
        self._app_runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("printer web pages on %s", self.base_url)

    async def stop(self) -> None:
        for task in list(self.background):
            task.cancel()
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None

    # -- rendering ----------------------------------------------------------------------

    def render(self, request: web.Request, template: str, *, status: int = 200,
               **context: Any) -> web.Response:
        """A page from ``template`` with the device's name and the session in context."""
        device = self.runner.device
        assert device is not None
        session = request.get(SESSION)
        snmp = self.runner.snmp
        text = self.env.get_template(template).render(
            device=device.identity(), system=snmp.settings.current() if snmp else None,
            session=session, csrf=session.csrf if session else "", path=request.path,
            done=DONE_MESSAGES.get(request.query.get("done", "")), **context)
        return web.Response(text=text, status=status, content_type="text/html",
                            charset="utf-8")

    def now(self) -> Any:
        return self.runner.clock.now()

    # -- middlewares --------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self.render(request, "error.html", status=exc.status, title="Error",
                                   message=exc.reason)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.get(SESSION) is not None:
            response.headers["Cache-Control"] = "no-store"
        return response

    @web.middleware
    async def _session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[SESSION] = self.sessions.get(request.cookies.get(SESSION_COOKIE), self.now())
        return await handler(request)

    async def _root(self, request: web.Request) -> web.Response:
        return _redirect("/status")

    # -- login --------------------------------------------------------------------------

    async def _login_page(self, request: web.Request) -> web.Response:
        return self._login_form(request, 200, None,
                                _safe_next(request.query.get("next", "/remote")))

    def _login_form(self, request: web.Request, status: int, error: str | None,
                    nxt: str) -> web.Response:
        # The login form is CSRF-protected too (double submit): a random token in a
        # cookie and in the form; a cross-site page can set neither.
        token = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", title="Log in", status=status,
                               error=error, next=nxt, login_token=token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await posted_form(request)
        nxt = _safe_next(str(form.get("next", "/remote")))
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not token or not hmac.compare_digest(token, str(form.get("login_token", ""))):
            return self._login_form(request, 403, "The login form was stale: try again.", nxt)
        client = request.remote or "?"
        now = self.now()
        wait = self.throttle.wait(client, now)
        if wait > timedelta(0):
            return self._login_form(request, 429, f"Too many wrong passwords: try again in "
                                                  f"{int(wait.total_seconds()) + 1} s.", nxt)
        if not self.password.matches(str(form.get("password", ""))):
            self.throttle.failed(client, now)
            log.warning("wrong admin password from %s", client)
            return self._login_form(request, 401, "Wrong password.", nxt)
        self.throttle.succeeded(client)
        self.sessions.drop(request.cookies.get(SESSION_COOKIE))
        session = self.sessions.create(now)
        response = _redirect(nxt)
        response.del_cookie(LOGIN_COOKIE, path="/")
        response.set_cookie(SESSION_COOKIE, session.sid, httponly=True, samesite="Strict",
                            path="/")
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        await require_admin(request, post=True)
        self.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = _redirect("/status?done=logout")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


# -- helpers the page modules use ---------------------------------------------------------


def web_of(request: web.Request) -> PrinterWebServer:
    return request.app[WEB]


async def require_admin(request: web.Request, *, post: bool = False
                        ) -> tuple[Session, dict[str, str]]:
    """The admin session (and the posted form, CSRF-checked); else a redirect to login."""
    session = request.get(SESSION)
    if session is None:
        if post:
            raise web.HTTPForbidden(reason="Your session has expired: log in again.")
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
    form: dict[str, str] = {}
    if post:
        data = await posted_form(request)
        form = {k: str(v) for k, v in data.items()}
        if not csrf_ok(session, form.get("csrf")):
            raise web.HTTPForbidden(reason="The form's security token is missing or stale: "
                                           "reload the page and try again.")
    return session, form


async def posted_form(request: web.Request
                      ) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The posted form; a body aiohttp cannot decode (not UTF-8, an unknown charset, a
    broken multipart) is the client's mistake: 400, not a traceback."""
    try:
        return await request.post()
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
        log.info("unreadable form from %s: %s: %s", request.remote or "?",
                 type(exc).__name__, exc)
        raise web.HTTPBadRequest(reason="The form could not be read: send it as UTF-8 "
                                        "from the page.") from None


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _safe_next(value: str) -> str:
    """Only a path on this server (no open redirect). Printable ASCII without spaces
    only: a browser drops tabs and line breaks from a Location ("/<TAB>/evil.example" is
    "//evil.example" to it), and aiohttp refuses to send control characters at all."""
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or not all("!" <= c <= "~" for c in value)):
        return "/remote"
    return value


def _static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
