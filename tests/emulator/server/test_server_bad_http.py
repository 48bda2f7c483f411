"""A request aiohttp's parser refuses is one INFO line naming the peer, not a traceback
(emulator/http_log.py): a hostile or broken client's bytes are not the server's bug."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from refserver_helpers import server_ctx

from emulator.server import ReferenceServer


@pytest.mark.parametrize(("head", "named"), [
    (b"POST /dd/v1/register HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
     "Invalid character in Content-Length"),
    (b"POST /dd/v1/register HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding can't be present"),
])
async def test_a_request_the_parser_refuses_is_one_line_not_a_traceback(
        server: ReferenceServer, caplog: pytest.LogCaptureFixture, head: bytes,
        named: str) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                   ssl=server_ctx(server),
                                                   server_hostname="localhost")
    writer.write(head)
    answer = b""
    with contextlib.suppress(ConnectionError):
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.transport.abort()
    assert answer.startswith(b"HTTP/1.0 400 ") or answer.startswith(b"HTTP/1.1 400 ")
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp said nothing"
    assert all(r.exc_info is None and r.levelno == logging.INFO for r in records)
    line = records[-1].getMessage()
    assert "127.0.0.1" in line and "refused (400" in line and named in line, line
