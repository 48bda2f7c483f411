"""The agent's control socket (``device-direct status`` / ``send-now``) against a hung
agent and a data directory whose path cannot hold a Unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_direct.__main__ import EXIT_USAGE, main
from device_direct.control import MAX_SOCKET_PATH, call, socket_path
from device_direct.errors import TimeoutError_


async def test_an_agent_that_accepts_but_never_answers_is_a_timeout_not_a_traceback(
    tmp_path: Path,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hang(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # an event loop stuck elsewhere: the line is never read

    server = await asyncio.start_unix_server(hang, path=str(socket_path(tmp_path)))
    try:
        with pytest.raises(TimeoutError_, match=r"did not answer 'status' within 0\.2 s"):
            await call(tmp_path, "status", timeout=0.2)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("command", ["status", "send-now"])
def test_a_data_dir_too_long_for_the_socket_is_a_config_error(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / ("d" * (MAX_SOCKET_PATH - len(str(tmp_path))))
    config = tmp_path / "agent.toml"
    config.write_text(f'[server]\nurl = "https://dd.example.com"\n\n'
                      f'[device]\ndata_dir = "{data_dir}"\n')
    assert main([command, "--config", str(config)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: key 'device.data_dir': "), err
    assert "too long for the agent's control socket" in err
