"""The reference communication server: one object to start, stop and drive from Python.

:class:`ReferenceServer` is the server's state (:class:`~emulator.server.state.
ServerState`: state directory, keys, database, faults, the Python API tests and the
fleet runner use for set-up) plus what serves it: the TLS listener and the aiohttp
application with its middlewares. The device API (``device_api.py``) and the admin API
(``admin_api.py``) are routes on the same port; their handlers see only the state, so
this module uses them and they never import it.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from aiohttp import web

from device_direct.clock import Clock
from emulator.errors import ServerError
from emulator.http_log import quiet_bad_requests
from emulator.server import admin_api, dashboard, device_api, manager_api, payload_check
from emulator.server.faults import decide
from emulator.server.http_common import DEVICE_ID, SERVER_KEY, ApiError, error_response
from emulator.server.pki import ServerTlsFiles
from emulator.server.state import ServerState
from emulator.server.tls_listener import AlertingTlsSite

access_log = logging.getLogger("emulator.server.access")
log = logging.getLogger("emulator.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CLIENT_MAX_SIZE = 512 << 20  # the biggest firmware image the admin API accepts
DEVICE_PREFIX = "/dd/v1/"
ADMIN_PREFIX = "/admin/v1/"
# How long a client refused mid-body (413) gets to read the answer and hang up before
# the server cuts the connection (real seconds).
CLOSE_GRACE_S = 1.0
# How long a connection may sit with no request (before its first, or between two)
# before the server closes it (real seconds). A device sends its requests at once;
# aiohttp's own default, used by an AppRunner, is an hour per idle connection.
IDLE_CONNECTION_S = 60.0


class ReferenceServer(ServerState):
    """The reference communication server over TLS, with SQLite state in ``state_dir``:
    the :class:`ServerState` (keys, database, faults, Python API) and its listener."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_names: tuple[str, ...] = ("localhost",),
        clock: Clock | None = None,
        cert_days: int = 365,
        max_upload_bytes: int = 1 << 20,
        max_log_bytes: int = 4 << 20,
        tls_files: ServerTlsFiles | None = None,
        rng: random.Random | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        # ``sock``: a listening socket shared with other server processes (a worker of
        # ``server run --workers N``, see workers.py): the database is shared with them.
        super().__init__(state_dir, server_names=server_names, clock=clock,
                         cert_days=cert_days, max_upload_bytes=max_upload_bytes,
                         max_log_bytes=max_log_bytes, tls_files=tls_files, rng=rng,
                         shared_db=sock is not None)
        self.host = host
        self._requested_port = port
        self.port = port
        self._sock = sock
        self._runner: web.AppRunner | None = None
        self._date_second: datetime | None = None  # the Date header's last second ...
        self._date_text = ""  # ... and its text

    # -- properties others use ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``https://ADDRESS:PORT`` of the address the server listens on (``--host``).

        A wildcard listener (``0.0.0.0``, ``::``) answers on loopback too, and a URL
        cannot name "every address": it reports 127.0.0.1, which the server certificate
        covers. :attr:`listening` lists the sockets themselves.
        """
        host = self.host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"https://{host}:{self.port}"  # a name, as the operator gave it
        if address.is_unspecified:
            return f"https://127.0.0.1:{self.port}"
        return f"https://[{address}]:{self.port}" if address.version == 6 else (
            f"https://{address}:{self.port}")

    @property
    def listening(self) -> list[str]:
        """The ``address:port`` of every socket the server listens on (empty if stopped)."""
        if self._runner is None:
            return []
        return [f"[{a[0]}]:{a[1]}" if ":" in str(a[0]) else f"{a[0]}:{a[1]}"
                for a in self._runner.addresses]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: any free port, then ``self.port`` tells)."""
        if self._runner is not None:
            raise ServerError("the server is already running")
        app = self.make_app()
        payload_check.warm_up()  # before any worker thread compiles its own copy
        quiet_bad_requests()
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=IDLE_CONNECTION_S)
        await runner.setup()
        site = AlertingTlsSite(runner, self.host, self._requested_port,
                               ssl_context=self.ssl_context, sock=self._sock)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ServerError(f"cannot listen on {self.host}:{self._requested_port}: {exc}"
                              ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("reference server listening on %s:%d (state %s)", self.host, self.port,
                 self.state_dir)

    async def stop(self) -> None:
        """Stop listening and close the database (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.storage.close()

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def make_app(self) -> web.Application:
        """The aiohttp application (routes and middlewares), without a listener."""
        app = web.Application(
            client_max_size=_CLIENT_MAX_SIZE,
            middlewares=[self._access_middleware, self._error_middleware,
                         admin_api.require_token, self._fault_middleware],
        )
        app[SERVER_KEY] = self
        device_api.add_routes(app)
        admin_api.add_routes(app)
        manager_api.add_routes(app)  # the second data path (managers) and both paths' view
        dashboard.add_routes(app)  # /dashboard/: pages for people (admin-token login)
        return app

    # -- middlewares ----------------------------------------------------------------------

    @web.middleware
    async def _access_middleware(self, request: web.Request, handler: Handler
                                 ) -> web.StreamResponse:
        # Outermost: one structured line per request, whatever happened inside.
        started = self.wall.monotonic()
        status = 500
        size = 0
        try:
            response = await handler(request)
            status = response.status
            size = response.body_length if response.prepared else len(
                getattr(response, "body", b"") or b"")
            response.headers["Date"] = self._http_date()
            return response
        except web.HTTPException as exc:
            # Raised past the error middleware: a redirect (the dashboard's login), which
            # aiohttp answers with this status, not a 500.
            status = exc.status
            raise
        finally:
            if access_log.isEnabledFor(logging.INFO):  # else the line is not even built
                _log_access(request, status, size, self.wall.monotonic() - started)

    def _http_date(self) -> str:
        """The ``Date`` header: server clock time, formatted once per second it shows."""
        second = self.clock.now().replace(microsecond=0)
        if second != self._date_second:
            self._date_text = email.utils.format_datetime(second, usegmt=True)
            self._date_second = second
        return self._date_text

    @web.middleware
    async def _error_middleware(self, request: web.Request, handler: Handler
                                ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.error, exc.detail, exc.headers)
            if exc.close_connection:
                return await self._answer_and_close(request, response)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed",
                    413: "too_large"}.get(exc.status, "http_error")
            return error_response(exc.status, code, exc.reason)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError as exc:
            # The client hung up mid-request (a device losing power mid-upload) or its
            # body stalled (read_body cut it): nobody to answer. One line, where aiohttp
            # would log a traceback as for a bug; cancelling is how aiohttp is told the
            # peer is gone.
            log.info("%s %s from %s: the client went away mid-request (%s)", request.method,
                     request.path, request.remote, exc)
            raise asyncio.CancelledError from exc
        except Exception as exc:
            # A bug or a broken store: one line naming the request and the exception
            # (with its traceback), and a JSON 500 the device treats as "try later".
            log.exception("internal error on %s %s: %s: %s", request.method, request.path,
                          type(exc).__name__, exc)
            return error_response(500, "internal_error",
                                  f"the server failed on this request ({type(exc).__name__})")

    async def _answer_and_close(self, request: web.Request, response: web.Response
                                ) -> web.Response:
        """Send ``response`` with ``Connection: close``, then cut the connection without
        reading the rest of the request body.

        Left to itself aiohttp would "linger": read and discard the rest of the body for
        up to 10 s before closing, which for a body refused as too large is the very
        work the refusal is meant to spare (a 200 MiB stream was read to its end). Here
        the body is not read at all (aiohttp's flow control stops reading the socket once
        its small buffer is full, so the sender's window closes): the client, blocked,
        reads the answer, and the connection is aborted as soon as it hangs up, or after
        :data:`CLOSE_GRACE_S` if it does not. Aborting at once, with its body still
        arriving, would reset the connection and could lose the 413 on the way.
        """
        response.force_close()
        response.headers["Date"] = self._http_date()
        await response.prepare(request)
        await response.write_eof()
        deadline = self.wall.monotonic() + CLOSE_GRACE_S
        while request.transport is not None and self.wall.monotonic() < deadline:
            await self.wall.sleep(0.02)  # real time: the peer's socket runs on it
        if request.transport is not None:
            request.transport.abort()
        return response

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler
                                ) -> web.StreamResponse:
        if not request.path.startswith(DEVICE_PREFIX):
            return await handler(request)
        decision, self.faults = decide(self.faults, self.rng)
        if decision.latency_ms:
            # Real seconds: latency is something the device's real sockets must see.
            await self.wall.sleep(decision.latency_ms / 1000)
        if decision.status_503:
            raise ApiError(503, "unavailable", "server-side fault switched on by QA",
                           {"Retry-After": "1"})
        response = await handler(request)
        if decision.drop:
            return await _drop_mid_response(request, response)
        return response


def _log_access(request: web.Request, status: int, size: int, duration_s: float) -> None:
    """The request's line on the access logger (which is enabled for INFO).

    The record goes straight to the logger's handlers (filters, propagation and levels
    apply as ever): ``Logger.info`` would also search the stack for the caller's file
    and line, which the line never shows and which was a sixth of the cost of logging it.
    """
    route = request.match_info.route.resource
    line = json.dumps({
        "device": request.get(DEVICE_ID),
        "method": request.method,
        "endpoint": route.canonical if route is not None else request.path,
        "status": status,
        "bytes": size,
        "duration_ms": round(duration_s * 1000, 2),
    })
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, line, (),
                                            None, "_access_middleware"))


async def _drop_mid_response(request: web.Request, response: web.StreamResponse
                             ) -> web.StreamResponse:
    """Send the status line, headers and half the body, then cut the connection."""
    body = bytes(getattr(response, "body", b"") or b"")
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.content_length = max(len(body), 2)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError  # aiohttp treats this as the peer being gone
