"""The server's TLS listener, whose refused handshakes tell the client why.

When a TLS handshake fails, OpenSSL writes a fatal alert for the peer: protocol_version
for a TLS 1.0 or 1.1 hello (the server speaks 1.2 and 1.3 only), unknown_ca or
bad_certificate for a client certificate from another CA. A blocking ``ssl.SSLSocket``
sends it. asyncio's TLS layer (``asyncio.sslproto.SSLProtocol``, Python 3.11 and later)
does not: on the failed handshake it force-closes the transport without flushing the
outgoing memory BIO where the alert waits, so the client sees the connection closed with
no reason (``openssl s_client``: "unexpected eof while reading"; a browser:
PR_END_OF_FILE_ERROR). That is CPython issue gh-98078 ("asyncio SSL not sending TLS Fatal
Alerts", https://github.com/python/cpython/issues/98078), fixed upstream by
python/cpython#153620, which flushes the BIO before the fatal error.

:class:`AlertingTlsSite` serves aiohttp through a subclass of that protocol which does
the same flush first, so the alert goes out on the Pythons without the fix (on those
with it the second flush finds the BIO empty). The subclass overrides one method of a
module asyncio does not document; :func:`alerts_flushed` says whether the override
applies, and the tests check with ``openssl s_client`` what a client receives.

uvloop has its own TLS layer, in C, with the same gap; overriding it is not possible
from Python, and putting asyncio's Python TLS layer on uvloop would give up what uvloop
is chosen for (the fleet runs its embedded server on it). On uvloop the server keeps
uvloop's layer, and refused handshakes close without an alert, as docs/protocol.md says.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import sslproto
from typing import Any

from aiohttp import web


class _AlertingSslProtocol(sslproto.SSLProtocol):
    """asyncio's server-side TLS protocol, sending the fatal alert of a failed handshake."""

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            # What OpenSSL left for the peer (the alert) goes out before the close.
            self._process_outgoing()  # type: ignore[attr-defined]  # (stub predates it)
        super()._on_handshake_complete(handshake_exc)


def alerts_flushed(loop: asyncio.AbstractEventLoop) -> bool:
    """True when a listener on ``loop`` sends the alert of a refused handshake."""
    return isinstance(loop, asyncio.BaseEventLoop) and hasattr(
        sslproto.SSLProtocol, "_on_handshake_complete") and hasattr(
        sslproto.SSLProtocol, "_process_outgoing")


class AlertingTlsSite(web.TCPSite):
    """A TLS ``TCPSite`` whose refused handshakes send their alert (see the module).

    With ``sock`` it serves an already listening socket instead of binding ``host:port``:
    a worker of ``server run --workers N`` (``workers.py``) accepts on the socket its
    parent opened, beside the other workers.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 ssl_context: ssl.SSLContext, sock: socket.socket | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._tls = ssl_context
        self._sock = sock

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not alerts_flushed(loop):
            if self._sock is None:
                await super().start()  # uvloop: its own TLS layer, without the alert
                return
            await web.BaseSite.start(self)
            assert self._runner.server is not None
            self._server = await loop.create_server(self._runner.server, sock=self._sock,
                                                    ssl=self._tls)
            return
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        context = self._tls

        def connection() -> Any:
            # No waiter (None; the stub says a Future): nobody awaits a handshake here,
            # and a waiter's unretrieved exception would be logged for every refusal.
            return _AlertingSslProtocol(loop, server(), context, None,  # type: ignore[arg-type]
                                        server_side=True)

        if self._sock is not None:
            self._server = await loop.create_server(connection, sock=self._sock)
        else:
            self._server = await loop.create_server(connection, self._host, self._port,
                                                    backlog=self._backlog)
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
