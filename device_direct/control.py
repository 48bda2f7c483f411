"""A local control socket for a running agent (``device-direct status`` / ``send-now``).

A Unix socket in the data directory (``control.sock``), readable only by the owner.
One JSON line in, one JSON line out: ``{"cmd": "status"}`` or ``{"cmd": "send-now"}``.
It never listens on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_direct.errors import ConfigError, ConnectError, RemoteProtocolError, TimeoutError_

if TYPE_CHECKING:
    from device_direct.agent import Agent

SOCKET_NAME = "control.sock"
_MAX_LINE = 64 * 1024
# A Unix socket's path fits in sun_path: 108 bytes on Linux, 104 on macOS and the BSDs,
# the closing NUL included.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103


def socket_path(data_dir: Path) -> Path:
    """The control socket of the agent on ``data_dir``; a ConfigError (key
    ``device.data_dir``) when its path is too long for a Unix socket."""
    path = Path(data_dir) / SOCKET_NAME
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ConfigError(
            f"{data_dir} is too long for the agent's control socket ({size} bytes with "
            f"/{SOCKET_NAME}, at most {MAX_SOCKET_PATH}); choose a shorter one",
            key="device.data_dir")
    return path


async def serve_control(agent: Agent) -> asyncio.AbstractServer:
    """Start the control socket for ``agent``; close the returned server to stop it."""
    path = socket_path(agent.data_dir)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left behind by a killed process

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                request = json.loads(line[:_MAX_LINE])
                cmd = request.get("cmd") if isinstance(request, dict) else None
            except json.JSONDecodeError:
                cmd = None
            answer: dict[str, Any]
            if cmd == "status":
                answer = {"ok": True, "status": agent.status()}
            elif cmd == "send-now":
                agent.send_now("on-demand")
                answer = {"ok": True}
            else:
                answer = {"ok": False, "error": "unknown command; use status or send-now"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path), limit=_MAX_LINE)
    os.chmod(path, 0o600)
    return server


async def call(data_dir: Path, cmd: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``cmd`` to the agent running on ``data_dir``."""
    path = socket_path(data_dir)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ConnectError(f"no agent is running on {data_dir} ({path}: {exc})") from exc
    except TimeoutError:
        raise TimeoutError_(f"the agent on {data_dir} did not accept a connection within "
                            f"{timeout:g} s ({path})") from None
    try:
        writer.write(json.dumps({"cmd": cmd}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        # Running (it accepted) but busy or hung: not the same as "not running".
        raise TimeoutError_(f"the agent on {data_dir} did not answer {cmd!r} within "
                            f"{timeout:g} s ({path})") from None
    finally:
        writer.close()
    try:
        answer = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RemoteProtocolError(f"control socket {path} answered garbage: {line[:80]!r}") from exc
    if not isinstance(answer, dict):
        raise RemoteProtocolError(f"control socket {path} answered {answer!r}")
    return answer
