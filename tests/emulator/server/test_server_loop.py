"""``server run --loop``: the event loop each server process runs on, and what a refused
TLS handshake sees on it (the alert on asyncio's loop, a bare close on uvloop's).

Real processes as a user starts them, ``openssl s_client`` (Debian) as the refused
client, and the loaded libraries of each worker (``/proc/PID/maps``) as the witness of
the loop it really runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@contextmanager
def serving(state: Path, *args: str) -> Iterator[dict[str, object]]:
    """``server run`` with ``args`` on a free port; the JSON line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "server", "--state-dir", str(state), "run",
         "--port", "0", *args],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"server run {' '.join(args)} did not start: {proc.stderr.read()}")
        yield json.loads(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()


def refused_hello(port: object) -> str:
    """What ``openssl s_client`` saw of a TLS 1.1 hello (the server speaks 1.2+)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl (Debian package openssl) is needed: run `make debs`")
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        input=b"", capture_output=True, timeout=60)
    return (done.stdout + done.stderr).decode(errors="replace")


def runs_uvloop(pid: int) -> bool:
    """Whether process ``pid`` has uvloop's compiled loop loaded."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return any("uvloop" in line and "loop." in line for line in maps.splitlines())


def serves_tls(info: dict[str, object]) -> None:
    """One request over verified TLS gets the API's JSON refusal (no client cert)."""
    import socket

    ctx = ssl.create_default_context(cafile=str(info["ca_cert"]))
    with socket.create_connection(("127.0.0.1", int(str(info["port"]))), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /dd/v1/devices/x/actions HTTP/1.1\r\nHost: localhost\r\n"
                    b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


@pytest.mark.parametrize(("args", "pids_key"), [
    (["--loop", "uvloop", "--workers", "2"], "worker_pids"),
    (["--loop", "auto"], None),  # auto: uvloop, which the emulator extra installs
])
def test_uvloop_is_honoured_and_a_refused_hello_is_a_bare_close(
        tmp_path: Path, args: list[str], pids_key: str | None) -> None:
    with serving(tmp_path / "state", *args) as info:
        assert info["loop"] == "uvloop" and info["tls_alerts"] is False, info
        if pids_key is not None:
            pids = [int(p) for p in info[pids_key]]  # type: ignore[attr-defined]
            assert len(pids) == 2 and all(runs_uvloop(p) for p in pids)
        serves_tls(info)
        out = refused_hello(info["port"])
        assert "SSL alert number" not in out, out


def test_the_default_loop_is_asyncio_and_sends_the_alert(tmp_path: Path) -> None:
    with serving(tmp_path / "state", "--workers", "2") as info:
        assert info["loop"] == "asyncio" and info["tls_alerts"] is True, info
        pids = [int(p) for p in info["worker_pids"]]  # type: ignore[attr-defined]
        assert not any(runs_uvloop(p) for p in pids)
        serves_tls(info)
        out = refused_hello(info["port"])
        assert "SSL alert number 70" in out, out


def test_an_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "server", "--state-dir", str(tmp_path / "s"),
         "run", "--port", "0", "--loop", "trio"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--loop" in done.stderr
    assert "Traceback" not in done.stderr
