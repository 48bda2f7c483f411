"""A load generator light enough to measure the reference server, not itself.

Each upload is what a device sends once a day: a NEW TLS connection (server certificate
verified, the device's client certificate presented), one ``POST
/dd/v1/devices/{id}/uploads`` of a schema-valid zip with its Upload-Id and
Content-SHA256, ``Connection: close``, the answer read to its end. The client side is
blocking sockets in threads (the handshake and the socket I/O run in C with the GIL
released) spread over a few processes, so a client connection costs a fraction of what
the server spends on it: an asyncio + aiohttp client (a session per connection) cost
about as much as the server did and was what limited the old bench.

Shared by ``server_bench.py`` and ``fleet_100k.py``; not a benchmark.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
import re
import socket
import ssl
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (ROOT / "fixtures" / "payloads" / "sample-device-data.xml").read_text()


@dataclass(frozen=True, slots=True)
class Device:
    serial: str
    device_id: str
    cert: str  # PEM paths
    key: str


@dataclass(frozen=True, slots=True)
class LoadResult:
    stored: int
    errors: int
    first: float  # time.monotonic() (system-wide) of the first connection
    last: float  # ... and of the last answer
    sizes: tuple[int, int]
    statuses: dict[int, int]
    client_cpu_s: float  # the load processes' CPU while sending (their build excluded)

    @property
    def per_s(self) -> float:
        span = self.last - self.first
        return self.stored / span if span > 0 else 0.0


def nvm_table(rng: random.Random) -> str:
    """A device-sized NVM table (160-900 settings) for the sample payload's <Usage>."""
    return "".join(
        f'<Nvm id="{700 + i // 100:03d}-{i % 1000:03d}" name="Setting {i} {rng.random():.6f}" '
        f'value="{rng.randint(0, 9999)}" default="{rng.randint(0, 9999)}" min="0" '
        f'max="99999" protected="{"true" if i % 7 == 0 else "false"}"/>\n    '
        for i in range(rng.randint(160, 900))
    )


def build_payload(serial: str, sequence: int, rng: random.Random,
                  nvm: str | None = None) -> tuple[str, bytes]:
    """A schema-valid zip of 6-22 KiB (10-70 KB of XML): the sample plus a device-sized
    NVM table (a new one unless ``nvm`` is given: the load reuses a few; each upload
    has its own id)."""
    upload_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if nvm is None:
        nvm = nvm_table(rng)
    xml = re.sub(r'uploadId="[^"]+"', f'uploadId="{upload_id}"', SAMPLE, count=1)
    xml = re.sub(r'sequence="\d+"', f'sequence="{sequence}"', xml, count=1)
    xml = xml.replace("<Serial>EMU8055001</Serial>", f"<Serial>{serial}</Serial>")
    xml = xml.replace("  </Usage>", "  " + nvm + "</Usage>")
    buf = BytesIO()
    # Fast deflate: building must not take the machine from the server it measures.
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("device-data.xml", xml)
    return upload_id, buf.getvalue()


def upload_request(device_id: str, upload_id: str, body: bytes) -> bytes:
    head = (f"POST /dd/v1/devices/{device_id}/uploads HTTP/1.1\r\n"
            f"Host: localhost\r\nContent-Type: application/zip\r\n"
            f"Upload-Id: {upload_id}\r\nContent-SHA256: {hashlib.sha256(body).hexdigest()}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def _status_of(sock: ssl.SSLSocket) -> int:
    """Read the whole answer (the server closes after it); its HTTP status."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/1.1 "):
        return 0
    return int(data[9:12])


def _child(port: int, ca: str, devices: list[Device], first_n: int, step: int,
           items: int, threads: int, seed: int, barrier: object, seconds: float,
           out: object) -> None:
    """One load process: build its requests, wait for the others, send until time."""
    rng = random.Random(seed)
    tables = [nvm_table(rng) for _ in range(32)]
    contexts: dict[str, ssl.SSLContext] = {}
    queue: list[tuple[ssl.SSLContext, bytes]] = []
    sizes = []
    for k in range(items):
        n = first_n + k * step
        dev = devices[n % len(devices)]
        ctx = contexts.get(dev.serial)
        if ctx is None:
            ctx = contexts[dev.serial] = ssl.create_default_context(cafile=ca)
            ctx.load_cert_chain(dev.cert, dev.key)
        upload_id, body = build_payload(dev.serial, 1000 + n // len(devices), rng,
                                        tables[k % len(tables)])
        sizes.append(len(body))
        queue.append((ctx, upload_request(dev.device_id, upload_id, body)))
    lock = threading.Lock()
    stored = errors = 0
    statuses: dict[int, int] = {}
    nxt = 0
    barrier.wait()  # type: ignore[attr-defined]
    cpu0 = time.process_time()  # this process, all its threads
    first = time.monotonic()
    deadline = first + seconds
    last = first

    def worker() -> None:
        nonlocal stored, errors, nxt, last
        while True:
            with lock:
                if nxt >= len(queue) or time.monotonic() >= deadline:
                    return
                ctx, request = queue[nxt]
                nxt += 1
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
                        ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)
                    status = _status_of(tls)
            except OSError:
                status = -1
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 201:
                    stored += 1
                else:
                    errors += 1
                last = time.monotonic()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu = time.process_time() - cpu0
    out.put((stored, errors, first, last, min(sizes), max(sizes), statuses, cpu))  # type: ignore[attr-defined]


def run_forked(child: Callable[..., None], args_of: Callable[[int], tuple[Any, ...]],
               processes: int, seconds: float) -> list[Any]:
    """Start ``processes`` forked load processes together and gather what each puts.

    Process ``p`` runs ``child(*args_of(p), barrier, seconds, out)``: it builds its work,
    waits at ``barrier`` for the others, sends for ``seconds`` and puts one result on
    ``out``."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=child, args=(*args_of(p), barrier, seconds, out))
             for p in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds * 4 + 600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def run_load(port: int, ca: Path, devices: list[Device], *, seconds: float,
             processes: int = 2, threads: int = 16, rate_guess: float = 800.0,
             seed: int = 7) -> LoadResult:
    """Upload from ``processes`` x ``threads`` connections for ``seconds``; the result.

    Each process builds its requests first (``rate_guess`` x ``seconds`` in all; the
    load stops early if they run out, which the rate allows for) and all start
    together."""
    items = max(1, int(rate_guess * seconds / processes))
    results = run_forked(
        _child, lambda p: (port, str(ca), devices, p, processes, items, threads, seed + p),
        processes, seconds)
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r[6].items():
            statuses[k] = statuses.get(k, 0) + v
    return LoadResult(stored=sum(r[0] for r in results), errors=sum(r[1] for r in results),
                      first=min(r[2] for r in results), last=max(r[3] for r in results),
                      sizes=(min(r[4] for r in results), max(r[5] for r in results)),
                      statuses=statuses, client_cpu_s=sum(r[7] for r in results))
