"""HTTP/1.1 for the device's client, without I/O: requests out, responses in (RFC 9112).

Why our own and not aiohttp's client: a device-day is one new TLS connection and three
small requests. Measured on the fleet (same run, three alternating pairs), the same
device-day costs 2.21 ms of client CPU through aiohttp's ``ClientSession`` and 1.55 ms
through a bare asyncio protocol: the 0.6 ms is the session's per-request machinery
(connector, happy-eyeballs socket set-up, request/response objects, yarl, timers), not
HTTP. What the device needs of HTTP/1.1 is small (no redirects, no cookies, no
compression, one origin) and is here, ~400 lines with its own hostile-input tests. No
new on-device dependency (h11 would be one): the device installs aiohttp and
cryptography only, and aiohttp stays for the PAC fetch.

Theory of operation
-------------------
:func:`format_request` turns a method, target and headers into the bytes of a request;
it refuses what would break the framing (CR, LF or NUL in a field, a space in the
target): that would be our bug, :class:`LocalProtocolError`.

:class:`ResponseParser` reads one response. Feed it what arrives (:meth:`feed`, and
:meth:`feed_eof` when the peer closed), and take :meth:`next_event` until it returns
:data:`NEED_DATA`: a :class:`Response` (the head), then :class:`Data` pieces, then
:class:`EndOfMessage`. Its state machine (:class:`State`, one table,
``_TRANSITIONS``): HEAD, then the body framed one of three ways: by Content-Length
(BODY), by chunks (CHUNK_SIZE -> CHUNK_DATA -> CHUNK_END, ..., the last chunk ->
TRAILERS) or until the connection closes (UNTIL_CLOSE); then DONE. Interim 1xx heads
(100 Continue) are skipped in HEAD. Any violation moves to BROKEN and raises
:class:`MalformedResponse`; the connection is not used again. The peer closing before
DONE raises :class:`ResponseIncomplete`. A pair missing from the table is a bug here,
not the peer's: it raises :class:`LocalProtocolError`.

Refused (RFC 9112 and the device's own limits): a head over :data:`MAX_HEAD_BYTES` or
:data:`MAX_HEAD_LINES` lines, a status line that is not ``HTTP/1.x NNN reason`` or
whose status is under 100, obs-fold (a field line starting with white space), a field
name that is not a token or has white space before the colon, control characters (NUL,
CR, ...) in a field, both Content-Length and Transfer-Encoding, a Content-Length that
is not digits (negative, ``+5``, ``0x10``) or a list of different values, a transfer
coding other than ``chunked``, a chunk size that is not 1-16 hex digits, chunk data not
followed by CRLF, 101 Switching Protocols (never asked for), bytes after the end of the
response.

:attr:`ResponseParser.reusable` says, once DONE, whether the connection may carry the
next request: HTTP/1.1 without ``Connection: close``; HTTP/1.0 only with
``Connection: keep-alive``; never after a body read until close.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from typing import Final

from device_direct.errors import ConnectError, LocalProtocolError, RemoteProtocolError

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEAD_LINES: Final = 128
MAX_CHUNK_LINE: Final = 1024  # a chunk-size line, extensions included
MAX_INTERIM: Final = 16  # 1xx heads before the final one

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than HTAB, CR and LF (which are checked line by line).
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BAD_FIELD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # in a value we send: no CTL but HTAB
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?")
# A field line: a token, a colon, the value without the white space around it.
_FIELD_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:.*[^ \t])?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_NO_BODY_STATUSES = frozenset({204, 304})


class MalformedResponse(RemoteProtocolError):
    """The peer's bytes are not an HTTP/1.1 response we accept; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class ResponseIncomplete(ConnectError):
    """The connection closed before the response ended.

    ``head_complete``: whether the status line and headers had arrived (False: the server
    closed without answering); ``received`` body bytes so far, of ``expected`` (None
    when the body had no length).
    """

    def __init__(self, detail: str, *, head_complete: bool, received: int,
                 expected: int | None) -> None:
        self.head_complete = head_complete
        self.received = received
        self.expected = expected
        super().__init__(detail)


class Headers:
    """Response header fields: case-insensitive :meth:`get`, the raw pairs in order.

    A field sent more than once reads as its values joined by ``", "`` (RFC 9110 5.3).
    """

    __slots__ = ("_map", "raw")

    def __init__(self, pairs: Iterable[tuple[str, str]],
                 _folded: dict[str, str] | None = None) -> None:
        self.raw: tuple[tuple[str, str], ...] = tuple(pairs)
        if _folded is None:  # the parser folds as it reads and hands its dict over
            _folded = {}
            for name, value in self.raw:
                key = name.lower()
                _folded[key] = f"{_folded[key]}, {value}" if key in _folded else value
        self._map = _folded

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __repr__(self) -> str:
        return f"Headers({list(self.raw)!r})"


# The events are plain slotted classes, not frozen dataclasses as STYLE.md would have them:
# each dataclass costs ~0.5 ms at import (its methods are generated with exec), and the
# agent's import time has a budget (issue 4: 50 ms). They are read-only by convention.


class Response:
    """A final response head (status >= 200)."""

    __slots__ = ("headers", "http_version", "reason", "status")

    def __init__(self, status: int, reason: str, http_version: str, headers: Headers) -> None:
        if not 200 <= status <= 999:
            raise ValueError(f"a final response has a status of 200-999, got {status}")
        self.status = status
        self.reason = reason
        self.http_version = http_version  # "1.1" or "1.0"
        self.headers = headers

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.reason!r}, {self.http_version!r}, {self.headers!r})"


class Data:
    """A piece of the body, in order."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The body is complete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EndOfMessage()"


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
Event = Response | Data | EndOfMessage | _NeedData
_END = EndOfMessage()


class State(enum.Enum):
    """Where the parser is in a response (the module's theory of operation)."""

    # Members are singletons: identity hashing is right, and C-fast for the table look-up
    # made at every step (Enum's own __hash__ is Python code, hashing the name).
    __hash__ = object.__hash__

    HEAD = "head"
    BODY = "body"  # Content-Length
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"  # the CRLF after chunk data
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until-close"
    DONE = "done"
    BROKEN = "broken"


class Step(enum.Enum):
    """What the parser found; with the state it was in, it picks the next state."""

    __hash__ = object.__hash__

    INTERIM = "interim-head"  # 1xx, skipped
    HEAD_NO_BODY = "head-no-body"
    HEAD_LENGTH = "head-content-length"
    HEAD_CHUNKED = "head-chunked"
    HEAD_UNTIL_CLOSE = "head-until-close"
    BODY_DONE = "body-done"
    CHUNK = "chunk-size"
    LAST_CHUNK = "last-chunk"
    CHUNK_DONE = "chunk-data-done"
    CHUNK_CRLF = "chunk-crlf"
    TRAILERS_DONE = "trailers-done"
    EOF = "eof"  # the peer closed where the framing allows it (until-close body)
    VIOLATION = "violation"


S, T = State, Step
_TRANSITIONS: dict[tuple[State, Step], State] = {
    (S.HEAD, T.INTERIM): S.HEAD,
    (S.HEAD, T.HEAD_NO_BODY): S.DONE,
    (S.HEAD, T.HEAD_LENGTH): S.BODY,
    (S.HEAD, T.HEAD_CHUNKED): S.CHUNK_SIZE,
    (S.HEAD, T.HEAD_UNTIL_CLOSE): S.UNTIL_CLOSE,
    (S.BODY, T.BODY_DONE): S.DONE,
    (S.CHUNK_SIZE, T.CHUNK): S.CHUNK_DATA,
    (S.CHUNK_SIZE, T.LAST_CHUNK): S.TRAILERS,
    (S.CHUNK_DATA, T.CHUNK_DONE): S.CHUNK_END,
    (S.CHUNK_END, T.CHUNK_CRLF): S.CHUNK_SIZE,
    (S.TRAILERS, T.TRAILERS_DONE): S.DONE,
    (S.UNTIL_CLOSE, T.EOF): S.DONE,
    **{(state, T.VIOLATION): S.BROKEN for state in State if state is not S.BROKEN},
}
del S, T


def host_header(host: str, port: int) -> str:
    """The Host field for ``host``:``port`` over https (the port left out when 443)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


def format_request(method: str, target: str, headers: Iterable[tuple[str, str]],
                   body: bytes | None = None) -> bytes:
    """The head of a request (with ``Content-Length`` when there is a body) as bytes.

    ``headers`` must include Host. A POST without a body says ``Content-Length: 0``.
    """
    if not _TOKEN_STR.fullmatch(method):
        raise LocalProtocolError(f"HTTP method {method!r} is not a token")
    if not target or _BAD_TARGET.search(target):
        raise LocalProtocolError(f"request target {target!r} is empty or has spaces or controls")
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if not _TOKEN_STR.fullmatch(name):
            raise LocalProtocolError(f"header name {name!r} is not a token")
        if _BAD_FIELD.search(value):
            raise LocalProtocolError(f"header {name} has a control character in {value!r}")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"request head is not latin-1: {exc}") from exc


def _head_end(buf: bytearray, start: int) -> tuple[int, int]:
    """(end of the head, start of what follows) or (-1, -1): a blank line, CRLF or LF."""
    crlf = buf.find(b"\r\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 4
    return -1, -1


class ResponseParser:
    """One response's bytes in, events out; see the module's theory of operation.

    ``head_request``: the request was HEAD (no body whatever the head says);
    ``connect_request``: it was CONNECT (a 2xx answer has no body: the tunnel follows).
    """

    __slots__ = (
        "_buf",
        "_connect_request",
        "_eof",
        "_expected",
        "_head_request",
        "_interim",
        "_keep_alive",
        "_received",
        "_remaining",
        "_scanned",
        "response",
        "reusable",
        "state",
    )

    def __init__(self, *, head_request: bool = False, connect_request: bool = False) -> None:
        self._buf = bytearray()
        self._eof = False
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self._remaining = 0  # of the current Content-Length body or chunk
        self._received = 0  # body bytes handed out
        self._expected: int | None = None
        self._interim = 0
        self._head_request = head_request
        self._connect_request = connect_request
        self._keep_alive = False
        self.state = State.HEAD
        self.response: Response | None = None
        self.reusable = False  # meaningful once DONE

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet handed out (for the shell's flow control)."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Bytes as they arrived."""
        if self._eof:
            raise LocalProtocolError("data fed after the end of the stream")
        self._buf += data

    def feed_eof(self) -> None:
        """The peer closed its side: no more bytes."""
        self._eof = True

    def trailing(self) -> bytes:
        """What arrived after the end of the response (the tunnel's first bytes, or junk)."""
        return bytes(self._buf)

    def next_event(self) -> Event:
        """The next event, or :data:`NEED_DATA` until more bytes (or the end) arrive."""
        try:
            state = self.state
            if state is State.BODY:
                return self._body()
            if state is State.CHUNK_DATA:
                return self._chunk_data()
            if state is State.HEAD:
                return self._head()
            if state is State.CHUNK_SIZE:
                return self._chunk_size()
            if state is State.CHUNK_END:
                return self._chunk_end()
            if state is State.TRAILERS:
                return self._trailers()
            if state is State.UNTIL_CLOSE:
                return self._until_close()
            if state is State.DONE:
                if self._buf:
                    self.reusable = False  # bytes nobody asked for
                return _END
            raise MalformedResponse("the response was already refused")
        except MalformedResponse:
            if self.state is not State.BROKEN:
                self._move(Step.VIOLATION)
            raise

    # -- the steps --------------------------------------------------------------------

    def _move(self, step: Step) -> None:
        nxt = _TRANSITIONS.get((self.state, step))
        if nxt is None:
            raise LocalProtocolError(f"HTTP/1.1 parser: no transition from {self.state.value} "
                                     f"on {step.value}")
        self.state = nxt

    def _head(self) -> Event:
        while True:  # interim (1xx) heads are skipped
            buf = self._buf
            end, after = _head_end(buf, max(0, self._scanned - 3))
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise MalformedResponse(f"response head longer than {MAX_HEAD_BYTES} bytes")
                self._scanned = len(buf)
                if self._eof:
                    raise ResponseIncomplete(
                        "the server closed the connection before answering" if not buf else
                        f"the server closed the connection after {len(buf)} bytes of the "
                        "response head", head_complete=False, received=0, expected=None)
                return NEED_DATA
            if end > MAX_HEAD_BYTES:
                raise MalformedResponse(f"response head longer than {MAX_HEAD_BYTES} bytes")
            raw = bytes(buf[:end])
            del buf[:after]
            self._scanned = 0
            response = self._parse_head(raw)
            if response is not None:
                return response
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise MalformedResponse(f"more than {MAX_INTERIM} interim (1xx) responses")
            self._move(Step.INTERIM)

    def _parse_head(self, raw: bytes) -> Response | None:
        if _CTL.search(raw):
            raise MalformedResponse("control character (NUL, ...) in the response head")
        text = raw.decode("latin-1")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                raise MalformedResponse("bare CR in the response head")
        lines = text.split("\n")
        if len(lines) > MAX_HEAD_LINES:
            raise MalformedResponse(f"response head has more than {MAX_HEAD_LINES} lines")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise MalformedResponse(f"bad status line {lines[0][:80]!r}")
        major, minor, code = match.group(1), match.group(2), int(match.group(3))
        if major != "1":
            raise MalformedResponse(f"unsupported HTTP version {major}.{minor}")
        if code < 100:  # RFC 9110 15: a status code is 100-999
            raise MalformedResponse(f"bad status code {match.group(3)} in {lines[0][:80]!r}")
        pairs: list[tuple[str, str]] = []
        folded: dict[str, str] = {}
        field_line = _FIELD_LINE.fullmatch
        for index in range(1, len(lines)):
            field = field_line(lines[index])
            if field is None:
                line = lines[index]
                if line[:1] in (" ", "\t"):
                    raise MalformedResponse("obsolete line folding (a header line starts with "
                                            "white space)")
                raise MalformedResponse(f"bad header line {line[:80]!r}")
            name, value = field.groups()
            pairs.append((name, value))
            key = name.lower()
            folded[key] = f"{folded[key]}, {value}" if key in folded else value
        if 100 <= code < 200:
            if code == 101:
                raise MalformedResponse("101 Switching Protocols was not asked for")
            return None
        headers = Headers(pairs, folded)
        response = Response(code, match.group(4) or "", f"1.{minor}", headers)
        self.response = response
        self._frame(response, folded, minor == "0")
        return response

    def _frame(self, response: Response, fields: dict[str, str], http10: bool) -> None:
        connection = fields.get("connection")
        if connection is None:
            self._keep_alive = not http10
        else:
            tokens = {t.strip().lower() for t in connection.split(",")}
            self._keep_alive = ("keep-alive" in tokens) if http10 else ("close" not in tokens)
        te = fields.get("transfer-encoding")
        cl = fields.get("content-length")
        if (self._head_request or response.status in _NO_BODY_STATUSES
                or (self._connect_request and response.status < 300)):
            self._finish(Step.HEAD_NO_BODY)
            return
        if te is not None:
            if cl is not None:
                raise MalformedResponse("both Content-Length and Transfer-Encoding")
            if http10 or te.strip().lower() != "chunked":
                raise MalformedResponse(f"unsupported Transfer-Encoding {te[:40]!r}")
            self._move(Step.HEAD_CHUNKED)
            return
        if cl is not None:
            values = {v.strip() for v in cl.split(",")}
            value = next(iter(values))
            if len(values) != 1 or not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise MalformedResponse(f"bad Content-Length {cl[:40]!r}")
            self._remaining = self._expected = int(value)
            if self._remaining == 0:
                self._finish(Step.HEAD_NO_BODY)
            else:
                self._move(Step.HEAD_LENGTH)
            return
        self._keep_alive = False
        self._move(Step.HEAD_UNTIL_CLOSE)

    def _finish(self, step: Step) -> None:
        self._move(step)
        self.reusable = self._keep_alive and not self._buf

    def _take(self, limit: int) -> Data:
        buf = self._buf
        if limit >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:limit])
            del buf[:limit]
        self._received += len(data)
        return Data(data)

    def _body(self) -> Event:
        if self._remaining == 0:
            self._finish(Step.BODY_DONE)
            return _END
        if not self._buf:
            if self._eof:
                raise self._incomplete()
            return NEED_DATA
        data = self._take(self._remaining)
        self._remaining -= len(data.data)
        return data

    def _incomplete(self) -> ResponseIncomplete:
        of = f" of {self._expected}" if self._expected is not None else ""
        return ResponseIncomplete(
            f"the response body ended after {self._received}{of} bytes",
            head_complete=True, received=self._received, expected=self._expected)

    def _line(self, limit: int, what: str) -> bytes | None:
        buf = self._buf
        end = buf.find(b"\n", 0, limit + 1)
        if end < 0:
            if len(buf) > limit:
                raise MalformedResponse(f"{what} longer than {limit} bytes")
            if self._eof:
                raise self._incomplete()
            return None
        line = bytes(buf[:end]).removesuffix(b"\r")
        del buf[:end + 1]
        if b"\r" in line or _CTL.search(line):
            raise MalformedResponse(f"control character in a {what}")
        return line

    def _chunk_size(self) -> Event:
        line = self._line(MAX_CHUNK_LINE, "chunk-size line")
        if line is None:
            return NEED_DATA
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise MalformedResponse(f"bad chunk size {line[:40]!r}")
        size = int(match.group(1), 16)
        if size == 0:
            self._move(Step.LAST_CHUNK)
            return self._trailers()
        self._remaining = size
        self._move(Step.CHUNK)
        return self._chunk_data()

    def _chunk_data(self) -> Event:
        if not self._buf:
            if self._eof:
                raise self._incomplete()
            return NEED_DATA
        data = self._take(self._remaining)
        self._remaining -= len(data.data)
        if self._remaining == 0:
            self._move(Step.CHUNK_DONE)
        return data

    def _chunk_end(self) -> Event:
        buf = self._buf
        if buf[:2] == b"\r\n" or buf[:1] == b"\n":
            del buf[:2 if buf[:1] == b"\r" else 1]
            self._move(Step.CHUNK_CRLF)
            return self._chunk_size()
        if buf == b"\r" or not buf:
            if self._eof:
                raise self._incomplete()
            return NEED_DATA
        raise MalformedResponse("chunk data not followed by CRLF")

    def _trailers(self) -> Event:
        while True:
            line = self._line(MAX_HEAD_BYTES, "trailer section")
            if line is None:
                return NEED_DATA
            if not line:
                self._finish(Step.TRAILERS_DONE)
                return _END
            self._scanned += len(line) + 2  # the trailer section's size so far
            if self._scanned > MAX_HEAD_BYTES:
                raise MalformedResponse(f"trailer section longer than {MAX_HEAD_BYTES} bytes")
            if line[:1] in (b" ", b"\t"):
                raise MalformedResponse("obsolete line folding in the trailers")
            name, colon, _ = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise MalformedResponse(f"bad trailer line {line[:80]!r}")

    def _until_close(self) -> Event:
        if self._buf:
            return self._take(len(self._buf))
        if self._eof:
            self._move(Step.EOF)
            self.reusable = False
            return _END
        return NEED_DATA
