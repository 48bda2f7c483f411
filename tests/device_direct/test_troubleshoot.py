"""The troubleshoot action's steps say what did not happen in time (a timeout's own text
is empty: the printer's Test connection page showed "connect: TimeoutError:")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_direct import troubleshoot
from device_direct.config import load_config
from device_direct.identity import IdentityStore


@pytest.mark.parametrize("library", ["system", "bundled"])
async def test_a_server_that_never_handshakes_is_named_as_such(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, never says a TLS word

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    (tmp_path / "agent.toml").write_text(
        f'[server]\nurl = "https://127.0.0.1:{port}"\nserver_name = "localhost"\n'
        f'tls_library = "{library}"\n[device]\ndata_dir = "state"\n')
    config = load_config(tmp_path / "agent.toml")
    monkeypatch.setattr(troubleshoot, "STEP_TIMEOUT_S", 0.3)
    try:
        step = await troubleshoot._tls(config, IdentityStore(tmp_path / "id"), "127.0.0.1",
                                       port)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert step == {"ok": False, "reason": "connect",
                    "error": "TimeoutError: no TLS handshake within 0.3 s"}
