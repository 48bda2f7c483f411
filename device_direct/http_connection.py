"""The device's one connection to its server: TCP + TLS (or a proxy's CONNECT tunnel).

The I/O shell around :mod:`device_direct.core.http1` (why our own HTTP client rather
than aiohttp's: see that module). :class:`ServerLink` keeps one idle connection and
hands it the requests of a sync one after another, as aiohttp's pool did: a device-day's
three requests go over one TLS connection (a request made while another is under way
gets a connection of its own). A request :meth:`ServerLink.exchange`:

* takes the kept connection if its :class:`Route` (TLS context, proxy) is the one asked
  for and the server has not closed it, else opens a new one: ``loop.create_connection``
  with the TLS context and server name; through a proxy, a plain connection to it,
  ``CONNECT host:port`` (the Proxy-Authorization field goes there and nowhere else),
  then ``loop.start_tls`` over the tunnel. All of it within the ``connect`` timeout.
* writes the request and waits for the response head; an idempotent request (GET) that
  found a kept connection dead before any of the answer arrived is sent once more on a
  new connection (RFC 9112 9.3.1; aiohttp did the same). A POST is never sent twice.
* returns an :class:`Exchange`: the head, and the body piece by piece
  (:meth:`Exchange.next_chunk`). Reading pauses the socket when more than
  :data:`HIGH_WATER` bytes wait, so a hostile endless body costs no memory. Closing the
  exchange keeps the connection only when the response ended cleanly and may be reused.

Failures come out as the :class:`LinkError` subclasses below, ``ssl.SSLError``,
``TimeoutError`` or the parser's errors: :func:`device_direct.transport.map_exceptions`
translates them, in one place, into :mod:`device_direct.errors`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

from device_direct.core.http1 import (
    NEED_DATA,
    Data,
    EndOfMessage,
    Headers,
    MalformedResponse,
    Response,
    ResponseIncomplete,
    ResponseParser,
    State,
    format_request,
    host_header,
)

if TYPE_CHECKING:
    from device_direct.tls_bundled import BundledContext

HIGH_WATER = 256 * 1024  # pause reading the socket above this many unread bytes
LOW_WATER = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class LinkError(Exception):
    """What went wrong on the connection; translated by the transport, never shown as is."""


class ConnectFailed(LinkError):
    """TCP connect or the TLS handshake to the server failed with ``os_error``."""

    def __init__(self, os_error: OSError) -> None:
        self.os_error = os_error
        super().__init__(str(os_error))


class ProxyUnreachable(LinkError):
    """The proxy could not be reached, or broke off before answering the CONNECT (or did
    not answer it within the connect timeout)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class ProxyRefused(LinkError):
    """The proxy answered the CONNECT with a non-2xx ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


class ConnectionBroke(LinkError):
    """The established connection failed with ``os_error`` (reset, broken pipe)."""

    def __init__(self, os_error: OSError) -> None:
        self.os_error = os_error
        super().__init__(str(os_error))


class Route:
    """How to reach the server: its address, TLS context and name, and the proxy if any.

    A kept connection is reused only for the same Route object (the transport makes a
    new one when its TLS context or proxy changes: a new client certificate means a new
    connection, as aiohttp's pool keyed by context). A plain slotted class, not a frozen
    dataclass, for the agent's import time (see :mod:`device_direct.core.http1`).
    """

    __slots__ = ("host", "port", "proxy", "proxy_authorization", "server_name", "ssl")

    def __init__(self, host: str, port: int, ssl: ssl.SSLContext | BundledContext,
                 server_name: str, *,
                 proxy: tuple[str, int] | None = None,
                 proxy_authorization: str | None = None) -> None:
        if not host or not 0 < port < 65536:
            raise ValueError(f"bad server address {host!r}:{port}")
        if proxy_authorization is not None and proxy is None:
            raise ValueError("proxy authorization without a proxy")
        self.host = host
        self.port = port
        self.ssl = ssl
        self.server_name = server_name
        self.proxy = proxy
        self.proxy_authorization = proxy_authorization  # sent on the CONNECT only

    def __repr__(self) -> str:
        via = f" via {self.proxy[0]}:{self.proxy[1]}" if self.proxy else ""
        return f"Route({self.host}:{self.port} as {self.server_name!r}{via})"


class _Wire(asyncio.Protocol):
    """The asyncio protocol: feeds the current parser and wakes whoever waits."""

    __slots__ = (
        "_paused",
        "_waiter",
        "eof",
        "error",
        "lost",
        "parser",
        "stray",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.stray = False  # bytes arrived while no response was expected
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            self.stray = True
            return
        parser.feed(data)
        if parser.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def alive(self) -> bool:
        transport = self.transport
        return not (self.lost or self.eof or self.stray or transport is None
                    or transport.is_closing())

    async def next_event(self, read_timeout: float | None) -> Response | Data | EndOfMessage:
        """The parser's next event, waiting for bytes (at most ``read_timeout`` s each)."""
        parser = self.parser
        assert parser is not None
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                if self._paused and parser.buffered < LOW_WATER and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return cast(Response | Data | EndOfMessage, event)
            if self.lost or self.eof:
                error = self.error
                if isinstance(error, ssl.SSLError):
                    raise error  # an alert after the handshake (TLS 1.3: our certificate)
                if isinstance(error, OSError):
                    raise ConnectionBroke(error)
                parser.feed_eof()
                continue
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            try:
                if read_timeout is None:
                    await waiter
                else:
                    async with asyncio.timeout(read_timeout):
                        await waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Exchange:
    """A response being read: its head now, its body through :meth:`next_chunk`."""

    __slots__ = ("_closed", "_ended", "_link", "_read_timeout", "_wire", "response")

    def __init__(self, response: Response, wire: _Wire, link: ServerLink,
                 read_timeout: float | None) -> None:
        self.response = response
        self._wire = wire
        self._link = link
        self._read_timeout = read_timeout
        self._ended = False
        self._closed = False

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def reason(self) -> str:
        return self.response.reason

    @property
    def headers(self) -> Headers:
        return self.response.headers

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (aiohttp's meaning: absent or
        unreadable is ``application/octet-stream``)."""
        raw = self.response.headers.get("content-type")
        if raw is None:
            return "application/octet-stream"
        kind = raw.partition(";")[0].strip().lower()
        main, slash, sub = kind.partition("/")
        return kind if slash and main and sub and "/" not in sub else "application/octet-stream"

    @property
    def content_length(self) -> int | None:
        """The Content-Length field as a number; None when absent or not ASCII digits
        (the parser checked it only where it frames the body: not on a 204 or 304)."""
        value = self.response.headers.get("content-length")
        if value is None or not (value.isascii() and value.isdigit()):
            return None  # "²" is a digit to str.isdigit, not to int()
        return int(value)

    async def next_chunk(self) -> bytes:
        """The next piece of the body; ``b""`` once it is complete."""
        if self._ended:
            return b""
        event = await self._wire.next_event(self._read_timeout)
        if isinstance(event, Data):
            return event.data
        if isinstance(event, EndOfMessage):
            self._ended = True
            return b""
        raise MalformedResponse("a second response head in one response")

    def close(self) -> None:
        """Done with the response: the connection is kept only if it ended cleanly."""
        if self._closed:
            return
        self._closed = True
        wire = self._wire
        parser = wire.parser
        done = parser is not None and parser.state is State.DONE
        if done and parser is not None and parser.reusable and wire.alive():
            self._link.release(wire)
        else:
            self._link.drop(wire, graceful=done)


class ServerLink:
    """One idle connection kept for the next request; see the module's docstring.

    A connection is either idle (kept here, with its route) or busy with an exchange.
    Requests made while another is under way (the agent makes none today) get a
    connection of their own; the one that ends last while none is kept is kept.
    """

    __slots__ = ("_busy", "_idle", "_idle_route")

    def __init__(self) -> None:
        self._idle: _Wire | None = None
        self._idle_route: Route | None = None
        self._busy: dict[_Wire, Route] = {}

    async def exchange(self, route: Route, method: str, target: str,
                       headers: list[tuple[str, str]], body: bytes | None, *,
                       connect_timeout: float, read_timeout: float | None = None) -> Exchange:
        """Send one request and return its response head; the body is read from it."""
        head = format_request(method, target, [("Host", host_header(route.host, route.port)),
                                               *headers], body)
        retry = method in IDEMPOTENT
        while True:
            wire, self._idle = self._idle, None
            reused = wire is not None and self._idle_route is route and wire.alive()
            if not reused:
                if wire is not None:
                    wire.close()
                wire = await _open(route, connect_timeout)
            assert wire is not None and wire.transport is not None
            self._busy[wire] = route
            parser = wire.parser = ResponseParser(head_request=method == "HEAD")
            try:
                if body and len(body) <= 16 * 1024:
                    wire.transport.write(head + body)
                else:
                    wire.transport.write(head)
                    if body:
                        wire.transport.write(body)
                event = await wire.next_event(read_timeout)
            except (ResponseIncomplete, ConnectionBroke):
                self.drop(wire, graceful=False)
                if reused and retry and parser.buffered == 0 and parser.response is None:
                    retry = False
                    continue
                raise
            except BaseException:
                self.drop(wire, graceful=False)
                raise
            if not isinstance(event, Response):  # pragma: no cover - the parser's contract
                self.drop(wire, graceful=False)
                raise MalformedResponse("no response head")
            return Exchange(event, wire, self, read_timeout)

    def release(self, wire: _Wire) -> None:
        """The exchange on ``wire`` ended cleanly and it may carry another request."""
        route = self._busy.pop(wire, None)
        wire.parser = None  # idle: bytes arriving now are stray
        if route is None or self._idle is not None:
            wire.close()  # closed meanwhile, or another is kept already
            return
        self._idle, self._idle_route = wire, route

    def drop(self, wire: _Wire, *, graceful: bool) -> None:
        """``wire`` cannot carry another request: close it after a complete response
        (``Connection: close``), abort it rather than read what is left of a half-read one."""
        self._busy.pop(wire, None)
        wire.parser = None
        if graceful:
            wire.close()
        else:
            wire.abort()

    def close(self) -> None:
        """Close the kept connection, and abort any still busy (their readers fail)."""
        wire, self._idle = self._idle, None
        if wire is not None:
            wire.close()
        busy, self._busy = self._busy, {}
        for wire in busy:
            wire.abort()


async def _open(route: Route, connect_timeout: float) -> _Wire:
    """A new connection to the server over ``route``, TLS done, within the timeout."""
    loop = asyncio.get_running_loop()
    wire = _Wire()
    tunnel = False  # the proxy's CONNECT answered: a timeout now is the server's
    try:
        async with asyncio.timeout(connect_timeout):
            if route.proxy is None:
                try:
                    if isinstance(route.ssl, ssl.SSLContext):
                        await loop.create_connection(lambda: wire, route.host, route.port,
                                                     ssl=route.ssl,
                                                     server_hostname=route.server_name)
                    else:
                        from device_direct.tls_bundled import open_tls
                        await open_tls(loop, wire, route.host, route.port, route.ssl,
                                       route.server_name)
                except ssl.SSLError:
                    raise
                except OSError as exc:
                    raise ConnectFailed(exc) from exc
                return wire
            await _tunnel(loop, wire, route)
            tunnel = True
            plain = wire.transport
            assert plain is not None
            try:
                if isinstance(route.ssl, ssl.SSLContext):
                    tls = await loop.start_tls(plain, wire, route.ssl,
                                               server_hostname=route.server_name)
                    if tls is None:  # pragma: no cover - only for a closed transport
                        raise ConnectionResetError("the tunnel closed before TLS")
                    wire.transport = tls
                else:
                    from device_direct.tls_bundled import start_tls
                    await start_tls(plain, wire, route.ssl, route.server_name)
            except ssl.SSLError:
                raise
            except OSError as exc:
                raise ConnectFailed(exc) from exc
            return wire
    except TimeoutError as exc:
        wire.abort()
        if route.proxy is None or tunnel:
            raise
        # A proxy that took the connection and never answered (or a black-holed one) is
        # the proxy's failure, not the server's: the next proxy of a PAC list is tried.
        host, port = route.proxy
        proxy = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        what = "no connection to" if wire.transport is None else "no answer to CONNECT from"
        raise ProxyUnreachable(f"{what} {proxy} within {connect_timeout:g} s") from exc
    except BaseException:
        wire.abort()
        raise


async def _tunnel(loop: asyncio.AbstractEventLoop, wire: _Wire, route: Route) -> None:
    """A plain connection to the proxy, and its 2xx answer to our CONNECT."""
    assert route.proxy is not None
    proxy_host, proxy_port = route.proxy
    try:
        await loop.create_connection(lambda: wire, proxy_host, proxy_port)
    except OSError as exc:
        raise ProxyUnreachable(str(exc)) from exc
    host = f"[{route.host}]" if ":" in route.host else route.host
    authority = f"{host}:{route.port}"  # CONNECT names the port always
    fields = [("Host", authority)]
    if route.proxy_authorization is not None:
        fields.append(("Proxy-Authorization", route.proxy_authorization))
    parser = wire.parser = ResponseParser(connect_request=True)
    assert wire.transport is not None
    wire.transport.write(format_request("CONNECT", authority, fields))
    try:
        event = await wire.next_event(None)
    except (MalformedResponse, ResponseIncomplete, ConnectionBroke) as exc:
        raise ProxyUnreachable(f"no usable answer to CONNECT ({exc})") from exc
    assert isinstance(event, Response)
    if not 200 <= event.status < 300:
        raise ProxyRefused(event.status, event.reason)
    if parser.trailing():
        raise ProxyUnreachable("the proxy sent bytes of its own after opening the tunnel")
    wire.parser = None
