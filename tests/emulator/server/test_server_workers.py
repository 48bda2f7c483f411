"""``server run --workers N``: several processes on one port, one database.

Real processes (the CLI as a user runs it), real mTLS on loopback, the real SQLite file
read back after the run. Uploads go out on many connections at once so both workers
take some and race on the same Upload-Id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from refserver_helpers import payload_zip, registration

from emulator.server.pki import make_csr

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def server_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator", "server", "--state-dir",
                           str(state), *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    info: dict[str, object]
    state: Path

    @property
    def port(self) -> int:
        return int(str(self.info["port"]))

    @property
    def ca(self) -> str:
        return str(self.info["ca_cert"])


@pytest.fixture
def workers2(tmp_path: Path) -> Iterator[Running]:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "server", "--state-dir", str(state), "run",
         "--port", "0", "--workers", "2"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the parent prints once both workers listen
    if not line:
        pytest.fail(f"server --workers 2 did not start (exit {proc.wait(timeout=30)})")
    running = Running(proc, json.loads(line), state)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def request(port: int, ctx: ssl.SSLContext, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    """One request on a NEW TLS connection (as a device's daily call); status, JSON."""
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close",
            f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status = int(data[9:12])
    answer = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(answer) if answer else {}


def register(run: Running, serial: str, tmp: Path) -> tuple[str, ssl.SSLContext]:
    tmp.mkdir(parents=True, exist_ok=True)
    key = server_cli(run.state, "make-key").stdout.strip()
    key_pem, csr = make_csr(serial)
    body = json.dumps(registration(serial, key, csr)).encode()
    status, reg = request(run.port, ssl.create_default_context(cafile=run.ca), "POST",
                          "/dd/v1/register", body, {"Content-Type": "application/json"})
    assert status == 201, reg
    (tmp / f"{serial}.crt").write_text(str(reg["certificate"]))
    (tmp / f"{serial}.key").write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=run.ca)
    ctx.load_cert_chain(tmp / f"{serial}.crt", tmp / f"{serial}.key")
    return str(reg["device_id"]), ctx


def upload(run: Running, ctx: ssl.SSLContext, device_id: str, upload_id: str, zip_: bytes
           ) -> tuple[int, dict[str, object]]:
    return request(run.port, ctx, "POST", f"/dd/v1/devices/{device_id}/uploads", zip_,
                   {"Content-Type": "application/zip", "Upload-Id": upload_id,
                    "Content-SHA256": hashlib.sha256(zip_).hexdigest()})


def test_workers_store_every_upload_once_and_share_revocations(
        workers2: Running, tmp_path: Path) -> None:
    info = workers2.info
    assert info["workers"] == 2 and len(info["worker_pids"]) == 2  # type: ignore[arg-type]
    device_id, ctx = register(workers2, "WRK0001", tmp_path)
    # 40 different uploads and one Upload-Id sent 12 times, all at once on new connections.
    distinct = [payload_zip(serial="WRK0001", sequence=n) for n in range(1, 41)]
    same_id, same_zip = payload_zip(serial="WRK0001", sequence=41)
    jobs = [(u, z) for u, z in distinct] + [(same_id, same_zip)] * 12
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda j: upload(workers2, ctx, device_id, *j), jobs))
    assert [s for s, _ in answers[:40]] == [201] * 40
    dup = sorted(s for s, _ in answers[40:])
    assert dup.count(201) == 1 and dup.count(200) == 11, dup
    assert all(a["status"] == "duplicate" for s, a in answers[40:] if s == 200)
    # Registering again revokes the first certificate: no worker may still accept it.
    _, new_ctx = register(workers2, "WRK0001", tmp_path / "again")
    with ThreadPoolExecutor(max_workers=8) as pool:
        old = list(pool.map(lambda _: request(workers2.port, ctx, "GET",
                                              f"/dd/v1/devices/{device_id}/actions"),
                            range(10)))
    assert {s for s, _ in old} == {403}
    assert {a["error"] for _, a in old} == {"certificate_revoked"}
    assert request(workers2.port, new_ctx, "GET", f"/dd/v1/devices/{device_id}/actions"
                   )[0] == 200
    db = sqlite3.connect(workers2.state / "server.sqlite3")
    try:
        rows = db.execute("SELECT upload_id, sequence FROM uploads").fetchall()
    finally:
        db.close()
    assert len(rows) == 41
    assert sorted(seq for _, seq in rows) == list(range(1, 42))
    assert [u for u, _ in rows].count(same_id) == 1


def _gone(pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A child of the parent not yet reaped is a zombie: gone for our purpose.
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_stops_every_worker(workers2: Running) -> None:
    pids = [int(p) for p in workers2.info["worker_pids"]]  # type: ignore[attr-defined]
    workers2.proc.send_signal(signal.SIGTERM)
    assert workers2.proc.wait(timeout=60) == 0
    assert all(_gone(p) for p in pids)


def test_a_dead_worker_stops_the_server_with_status_3(workers2: Running) -> None:
    first, second = (int(p) for p in workers2.info["worker_pids"])  # type: ignore[attr-defined]
    os.kill(first, signal.SIGKILL)
    assert workers2.proc.wait(timeout=60) == 3
    assert _gone(second)


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers must be 1..64"),
    (["--workers", "2", "--metrics-port", "9"], "--metrics-port needs a single server"),
])
def test_bad_worker_options_are_usage_errors(tmp_path: Path, args: list[str],
                                             message: str) -> None:
    done = server_cli(tmp_path / "state", "run", "--port", "0", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_workers_send_the_alert_of_a_refused_handshake(workers2: Running) -> None:
    # The workers serve the shared socket through the alerting TLS listener too.
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl (Debian package openssl) is needed: run `make debs`")
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{workers2.port}", "-servername",
         "localhost", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        input=b"", capture_output=True, timeout=60)
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert "SSL alert number 70" in out, out
