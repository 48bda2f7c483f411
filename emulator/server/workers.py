"""``server run --workers N``: N server processes accepting on one listening socket.

Theory of operation. One Python process serves one core: the TLS handshake, the HTTP
parsing and above all the payload checks (unzip, XML parse, XSD validation) of every
upload run on its event loop. With ``--workers N`` the parent process

1. prepares the state directory once (PKI, server certificate, admin token, database
   schema), so the workers only ever read those files and never race to create them;
2. opens the listening socket (``--host``/``--port``; port 0 picks a free one);
3. starts N workers, each ``python -m emulator.server.cli server run`` with the socket's
   file descriptor (``--listen-fd``, not shown in ``--help``) and its standard input a
   pipe from the parent; each worker is a whole reference server on its own event
   loop, accepting connections from the shared socket (the kernel hands each new
   connection to one worker; a busy worker is not polling, so an idle one takes it);
4. prints one JSON line, as a single server does, once every worker has said it is
   listening, then waits.

All workers share the SQLite database (WAL mode: readers never block, writers take
turns; every upload is still its own transaction, stored before its 201 answer).
Exactly-once by Upload-Id holds across workers because the check and the insert are one
``BEGIN IMMEDIATE`` transaction and ``upload_id`` is UNIQUE. Certificates are looked up
in the database on every call (no per-process cache), so a certificate revoked through
one worker is refused by all.

What stays per worker: the server-side fault plan and the firmware QA switches of the
admin API (``PUT /admin/v1/faults``) act on the worker that received the call, so QA
scenarios that switch faults run with one worker (the default); and ``--metrics-port``
needs one worker.

Stopping: Ctrl-C or SIGTERM to the parent stops the workers (their standard input
closes, then SIGTERM); a worker whose parent dies sees its standard input close and
exits too, so no orphan keeps the port. If a worker dies, the parent stops the others
and exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

from emulator.errors import ServerError
from emulator.server.pki import ServerTlsFiles
from emulator.server.state import ServerState

MAX_WORKERS = 64
_STOP_GRACE_S = 10.0


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that child processes may inherit."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(f"cannot resolve --host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def _worker_command(args: argparse.Namespace, fd: int) -> list[str]:
    cmd = [sys.executable, "-m", "emulator.server.cli", "server",
           "--state-dir", str(args.state_dir), "run", "--host", args.host,
           "--port", str(args.port), "--listen-fd", str(fd), "--loop", args.loop,
           "--cert-days", str(args.cert_days),
           "--max-upload-bytes", str(args.max_upload_bytes)]
    for name in args.server_name:
        cmd += ["--server-name", name]
    for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                        ("--tls-ca", args.tls_ca)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_workers(args: argparse.Namespace, tls: ServerTlsFiles | None) -> int:
    """Run ``args.workers`` server processes on one socket until interrupted."""
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be 1..{MAX_WORKERS}, got {args.workers}")
    if args.metrics_port is not None:
        raise ValueError("--metrics-port needs a single server process (--workers 1)")
    state = ServerState(args.state_dir, server_names=tuple(args.server_name) or ("localhost",),
                        cert_days=args.cert_days, max_upload_bytes=args.max_upload_bytes,
                        tls_files=tls)
    state.storage.close()  # the schema exists now; the workers open their own
    sock = listen_socket(args.host, args.port)
    port = int(sock.getsockname()[1])
    args.port = port
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(args.workers):
            workers.append(subprocess.Popen(
                _worker_command(args, sock.fileno()), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, pass_fds=(sock.fileno(),)))
        first: dict[str, object] = {}
        for proc in workers:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise ServerError(f"server worker {proc.pid} exited before listening "
                                  f"(status {proc.wait()})")
            first = first or json.loads(line)
        sock.close()  # the workers hold it now
        print(json.dumps({**first, "workers": len(workers),
                          "worker_pids": [p.pid for p in workers]}), flush=True)
        while True:
            for proc in workers:
                code = proc.poll()
                if code is not None:
                    print(f"error: server worker {proc.pid} exited with status {code}; "
                          "stopping the others", file=sys.stderr)
                    return 3
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        _stop(workers)


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.stdin is not None:
            proc.stdin.close()  # the worker's watcher stops it
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for proc in workers:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def adopt_listen_fd(fd: int) -> socket.socket:
    """In a worker: the parent's listening socket, and a watcher that stops this
    process (SIGTERM) when the parent goes away (standard input reaches its end)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ServerError(f"--listen-fd {fd} is not a socket: {exc}") from exc
    sock.setblocking(False)

    def watch_parent() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    return sock

