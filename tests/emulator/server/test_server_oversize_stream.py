"""An oversized chunked upload: the server answers 413 and closes the connection, it does
not read the rest of the body (a real TLS client streaming 200 MiB must see both long
before its body ends). A body that stops, or whose client hangs up, is given up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path

import pytest
from refserver_helpers import Device, register

from emulator.server import ReferenceServer, http_common
from emulator.server import app as app_module

STREAM_BYTES = 200 << 20
CHUNK = b"\x00" * (64 << 10)


async def _stream_until_refused(dev: Device, port: int, declared: int | None
                                ) -> tuple[bytes, int]:
    """POST an endless-looking body; (the response bytes read to EOF, body bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=dev.ctx,
                                                   server_hostname="localhost")
    length = (f"Content-Length: {declared}\r\n" if declared is not None
              else "Transfer-Encoding: chunked\r\n")
    writer.write((f"POST /dd/v1/devices/{dev.device_id}/uploads HTTP/1.1\r\n"
                  "Host: localhost\r\nContent-Type: application/zip\r\n"
                  f"Upload-Id: {uuid.uuid4()}\r\nContent-SHA256: {'0' * 64}\r\n"
                  f"{length}\r\n").encode())

    async def read_all() -> bytes:
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
        return data

    answer = asyncio.create_task(read_all())
    sent = 0
    frame = (f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n") if declared is None else CHUNK
    try:
        while sent < STREAM_BYTES and not answer.done():
            writer.write(frame)
            await writer.drain()
            sent += len(CHUNK)
    except (ConnectionError, OSError):
        pass  # the server closed: the write side learns it too
    data = await asyncio.wait_for(answer, timeout=60)
    writer.transport.abort()
    return data, sent


async def _refused(server: ReferenceServer, tmp_path: Path, declared: int | None) -> None:
    dev = await register(server, tmp_path / "dev")
    data, sent = await _stream_until_refused(dev, server.port, declared)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), data[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "too_large"
    # The limit is 256 KiB; what the client got out besides is socket buffers, not a
    # server reading on: far less than the stream it meant to send.
    assert sent < STREAM_BYTES // 4, f"the server read on: {sent >> 20} MiB sent"
    assert server.storage.uploads_count() == 0


async def test_oversized_chunked_upload_is_refused_and_the_connection_closed(
        server: ReferenceServer, tmp_path: Path) -> None:
    await _refused(server, tmp_path, declared=None)


async def test_oversized_declared_upload_is_refused_and_the_connection_closed(
        server: ReferenceServer, tmp_path: Path) -> None:
    await _refused(server, tmp_path, declared=STREAM_BYTES)


async def _start_upload(dev: Device, port: int) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
    """Headers declaring 1000 body bytes, then only 3 of them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=dev.ctx,
                                                   server_hostname="localhost")
    writer.write((f"POST /dd/v1/devices/{dev.device_id}/uploads HTTP/1.1\r\n"
                  "Host: localhost\r\nContent-Type: application/zip\r\n"
                  f"Upload-Id: {uuid.uuid4()}\r\nContent-SHA256: {'0' * 64}\r\n"
                  "Content-Length: 1000\r\n\r\nabc").encode())
    await writer.drain()
    return reader, writer


def _aiohttp_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "aiohttp.server" or r.exc_info is not None]


async def test_a_body_that_stalls_is_given_up_without_an_answer(
        server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # It held its connection and handler for good (a device gone mid-upload, or a
    # hostile client). No JSON 4xx: that would tell a device its payload is refused.
    monkeypatch.setattr(http_common, "BODY_IDLE_S", 0.3)
    caplog.set_level(logging.INFO, logger="emulator.server")
    dev = await register(server, tmp_path / "dev")
    reader, writer = await _start_upload(dev, server.port)
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    writer.transport.abort()
    assert any("went away mid-request" in m and "stalled" in m and "after 3 bytes" in m
               for m in (r.getMessage() for r in caplog.records))
    assert not _aiohttp_tracebacks(caplog)
    status, _, _ = await dev.request("GET", "/actions")
    assert status == 200 and server.storage.uploads_count() == 0


async def test_a_client_hanging_up_mid_body_is_one_line_not_a_traceback(
        server: ReferenceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="emulator.server")
    dev = await register(server, tmp_path / "dev")
    _, writer = await _start_upload(dev, server.port)
    await asyncio.sleep(0.2)
    writer.transport.abort()
    for _ in range(100):
        if any("went away mid-request" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no line for the client that hung up")
    assert not _aiohttp_tracebacks(caplog)


async def test_a_connection_that_never_sends_a_request_is_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # aiohttp's AppRunner keeps an idle connection for an hour: a client opening many
    # and sending nothing would hold as many descriptors.
    monkeypatch.setattr(app_module, "IDLE_CONNECTION_S", 0.5)
    srv = ReferenceServer(tmp_path / "state")
    await srv.start()
    try:
        dev = await register(srv, tmp_path / "dev")
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=dev.ctx,
                                                       server_hostname="localhost")
        with contextlib.suppress(ConnectionError):  # aiohttp's own default: an hour
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.transport.abort()
    finally:
        await srv.stop()
