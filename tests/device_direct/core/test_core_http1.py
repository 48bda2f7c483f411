"""The device's HTTP/1.1 (sans-I/O): request bytes out, hostile responses in (RFC 9112)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_direct.core.http1 import (
    _TRANSITIONS,
    MAX_HEAD_BYTES,
    MAX_HEAD_LINES,
    NEED_DATA,
    Data,
    EndOfMessage,
    Headers,
    MalformedResponse,
    Response,
    ResponseIncomplete,
    ResponseParser,
    State,
    Step,
    format_request,
    host_header,
)
from device_direct.errors import ConnectError, LocalProtocolError, RemoteProtocolError


def parse(raw: bytes, *, eof: bool = False, pieces: list[int] | None = None,
          **kw: bool) -> tuple[Response, bytes, ResponseParser]:
    """Feed ``raw`` (split at ``pieces`` offsets), return the head, the body, the parser."""
    parser = ResponseParser(**kw)
    cuts = sorted({0, len(raw), *(p for p in (pieces or []) if 0 < p < len(raw))})
    head: Response | None = None
    body = bytearray()
    ended = False
    chunks: list[bytes | None] = [raw[a:b] for a, b in itertools.pairwise(cuts)]
    for piece in [*chunks, None] if eof else chunks:  # None: the peer closed
        if piece is None:
            parser.feed_eof()
        else:
            parser.feed(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, Response):
                assert head is None
                head = event
            elif isinstance(event, Data):
                body += event.data
            else:
                ended = True
                break
        if ended:
            break
    assert head is not None and ended, (head, ended)
    return head, bytes(body), parser


# -- requests ------------------------------------------------------------------------------


def test_a_request_has_its_host_fields_and_length() -> None:
    raw = format_request("POST", "/dd/v1/register", [("Host", host_header("localhost", 8443)),
                                                     ("User-Agent", "device-direct/1")], b"{}")
    assert raw == (b"POST /dd/v1/register HTTP/1.1\r\nHost: localhost:8443\r\n"
                   b"User-Agent: device-direct/1\r\nContent-Length: 2\r\n\r\n")
    get = format_request("GET", "/a?b=c", [("Host", "h")])
    assert get == b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n"
    assert b"Content-Length: 0\r\n" in format_request("POST", "/x", [("Host", "h")])


def test_host_field_leaves_out_443_and_brackets_ipv6() -> None:
    assert host_header("dd.example.com", 443) == "dd.example.com"
    assert host_header("::1", 8443) == "[::1]:8443"


@pytest.mark.parametrize(("method", "target", "headers"), [
    ("GET", "/a b", []),
    ("GET", "/a\r\nX: y", []),
    ("GET", "", []),
    ("G ET", "/", []),
    ("GET", "/", [("X-Evil", "a\r\nInjected: 1")]),
    ("GET", "/", [("X-Nul", "a\x00b")]),
    ("GET", "/", [("Bad Name", "v")]),
    ("GET", "/", [("X", "caf\u00e9\u2603")]),
])
def test_a_request_that_would_break_the_framing_is_our_bug(
    method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(LocalProtocolError):
        format_request(method, target, [("Host", "h"), *headers])


# -- responses that are fine ---------------------------------------------------------------


def test_content_length_body_and_reuse() -> None:
    head, body, parser = parse(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                               b"content-length: 11\r\nDate: x\r\n\r\n{\"a\": true}")
    assert (head.status, head.reason, head.http_version) == (201, "Created", "1.1")
    assert head.headers.get("CONTENT-TYPE") == "application/json"
    assert "Content-Length" in head.headers and "X" not in head.headers
    assert body == b'{"a": true}'
    assert parser.reusable and parser.state is State.DONE


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n1A \r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
    _, body, parser = parse(raw)
    assert body == b"hello" + b"x" * 26
    assert parser.reusable


def test_lf_only_line_endings_are_read() -> None:
    _, body, _ = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert body == b"ok"


def test_100_continue_and_other_interim_heads_are_skipped() -> None:
    head, body, _ = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: 1\r\n\r\n"
                          b"HTTP/1.1 204 No Content\r\n\r\n")
    assert head.status == 204 and body == b""


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_ignore_a_length(status: int) -> None:
    head, body, parser = parse(f"HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n".encode())
    assert head.status == status and body == b"" and parser.reusable


def test_a_head_request_has_no_body() -> None:
    _, body, parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_request=True)
    assert body == b"" and parser.reusable


def test_a_2xx_answer_to_connect_has_no_body_and_leaves_the_tunnel_bytes() -> None:
    _, body, parser = parse(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01",
                            connect_request=True)
    assert body == b"" and parser.trailing() == b"\x16\x03\x01"
    assert not parser.reusable  # bytes after the response: never an idle connection


def test_until_close_body_ends_at_eof_and_is_not_reusable() -> None:
    _, body, parser = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it", eof=True)
    assert body == b"all of it" and not parser.reusable


def test_a_repeated_identical_content_length_is_one() -> None:
    _, body, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
    assert body == b"ok"


@pytest.mark.parametrize(("raw", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n", False),
])
def test_whether_the_connection_may_carry_the_next_request(raw: bytes, reusable: bool) -> None:
    parser = ResponseParser()
    parser.feed(raw)
    assert isinstance(parser.next_event(), Response)
    assert isinstance(parser.next_event(), EndOfMessage)
    assert parser.reusable is reusable


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nDate: Tue, 06 Jan 2026 10:00:00 GMT\r\n\r\n"
    b"{\"ok\": true}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n" + b"y" * 16
    + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial\r\nContent-Length: 4\r\n\r\nwxyz",
]


@settings(max_examples=200)
@given(st.sampled_from(RESPONSES), st.lists(st.integers(min_value=1, max_value=200),
                                            max_size=12))
def test_any_split_of_the_bytes_gives_the_same_response(raw: bytes, cuts: list[int]) -> None:
    whole, body, _ = parse(raw)
    split, split_body, parser = parse(raw, pieces=cuts)
    assert (split.status, split.headers.raw, split_body) == (whole.status, whole.headers.raw, body)
    assert parser.reusable


# -- hostile responses ---------------------------------------------------------------------

HOSTILE = {
    "garbage status line": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "HTTP/2 status line": b"HTTP/2 200\r\n\r\n",
    "HTTP/3.0": b"HTTP/3.0 200 OK\r\n\r\n",
    "two-digit status": b"HTTP/1.1 20 OK\r\n\r\n",
    "status under 100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "status 000": b"HTTP/1.1 000\r\n\r\n",
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "no colon": b"HTTP/1.1 200 OK\r\nnonsense\r\n\r\n",
    "NUL in a value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "bare CR in a value": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
    "CL and TE": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "negative CL": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "plus CL": b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
    "hex CL": b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
    "huge CL": b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999999\r\n\r\n",
    "different CLs": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    "gzip TE": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "TE in 1.0": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "negative chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    "huge chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"f" * 17 + b"\r\n",
    "chunk without CRLF": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
    "endless chunk line": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1"
                          + b";" * 2000,
    "folded trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n x\r\n\r\n",
    "endless head": b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * MAX_HEAD_BYTES,
    "too many lines": b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * MAX_HEAD_LINES + b"\r\n",
    "endless 100s": b"HTTP/1.1 100 Continue\r\n\r\n" * 20,
}


@pytest.mark.parametrize("raw", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_responses_are_refused_and_stay_refused(raw: bytes) -> None:
    parser = ResponseParser()
    parser.feed(raw)
    with pytest.raises(MalformedResponse) as info:
        while parser.next_event() is not NEED_DATA:
            pass
    assert isinstance(info.value, RemoteProtocolError) and info.value.detail
    assert parser.state is State.BROKEN
    with pytest.raises(MalformedResponse):
        parser.next_event()


@pytest.mark.parametrize(("raw", "head_complete", "received"), [
    (b"", False, 0),
    (b"HTTP/1.1 200 OK\r\nContent-Le", False, 0),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True, 3),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", True, 2),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r", True, 2),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n", True, 2),
])
def test_a_close_before_the_end_is_an_incomplete_response(
    raw: bytes, head_complete: bool, received: int
) -> None:
    parser = ResponseParser()
    parser.feed(raw)
    parser.feed_eof()
    with pytest.raises(ResponseIncomplete) as info:
        while parser.next_event() is not NEED_DATA:
            pass
    assert isinstance(info.value, ConnectError)  # a network failure: retried
    assert (info.value.head_complete, info.value.received) == (head_complete, received)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_are_refused_or_read_never_crash(raw: bytes, eof: bool) -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n" + raw)
    if eof:
        parser.feed_eof()
    try:
        for _ in range(1000):
            event = parser.next_event()
            if event is NEED_DATA or isinstance(event, EndOfMessage):
                break
    except (MalformedResponse, ResponseIncomplete):
        pass


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=999))
def test_every_three_digit_status_is_read_or_refused_never_crashes(code: int) -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 %03d X\r\nContent-Length: 0\r\n\r\n" % code)
    if 100 <= code < 200 and code != 101:
        assert parser.next_event() is NEED_DATA  # an interim head: the final one follows
    elif code >= 200:
        assert isinstance(head := parser.next_event(), Response) and head.status == code
    else:
        with pytest.raises(MalformedResponse):
            parser.next_event()


# -- the state table -----------------------------------------------------------------------


def test_every_state_but_broken_can_be_refused_and_the_table_is_closed() -> None:
    for state in State:
        if state is not State.BROKEN:
            assert _TRANSITIONS[(state, Step.VIOLATION)] is State.BROKEN
    assert set(_TRANSITIONS.values()) <= set(State)
    parser = ResponseParser()
    parser.state = State.DONE
    with pytest.raises(LocalProtocolError, match="no transition from done on chunk-size"):
        parser._move(Step.CHUNK)


def test_headers_fold_repeated_fields() -> None:
    headers = Headers([("Via", "a"), ("via", "b"), ("X", "1")])
    assert headers.get("VIA") == "a, b" and headers.get("missing", "d") == "d"
    assert list(headers) == ["via", "x"]
