"""The device's TLS on the system's OpenSSL against the one cryptography ships.

What ``[server] tls_library = "bundled"`` (``device_direct/tls_bundled.py``) changes,
without a network or a server process in the way: the client's CPU (``time.thread_time``)
for (1) building the context a registered device uses (CA bundle, its own certificate
and key) and (2) a full TLS 1.3 handshake with its client certificate, the server
verified, against a server made with Python's ``ssl`` in the same thread (memory BIOs;
only the client's calls are timed). Alternating rounds; medians of each round's median.

    .venv/bin/python bench/tls_library.py [--rounds 7] [--count 200]

Last line: JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "device_direct"))

from tlsfixtures import TestCA  # noqa: E402

from device_direct import tls_bundled  # noqa: E402
from device_direct.certificates import csr_pem, key_pem, new_key  # noqa: E402
from device_direct.transport import build_ssl_context  # noqa: E402


class SystemClient:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def step(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.incoming.write(data)
        try:
            self.tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        return done, self.outgoing.read()


class BundledClient:
    def __init__(self, context: tls_bundled.BundledContext) -> None:
        self.lib, self.ffi = tls_bundled._bindings()
        self.conn, self.incoming, self.outgoing = context.connection("localhost")
        self.buffer = self.ffi.new("char[]", 65536)

    def step(self, data: bytes) -> tuple[bool, bytes]:
        lib = self.lib
        if data:
            lib.BIO_write(self.incoming, data, len(data))
        result = lib.SSL_do_handshake(self.conn)
        if result != 1 and lib.SSL_get_error(self.conn, result) != lib.SSL_ERROR_WANT_READ:
            raise SystemExit(f"bundled handshake failed: {tls_bundled._error_text(lib, self.ffi)}")
        count = lib.BIO_read(self.outgoing, self.buffer, 65536)
        return result == 1, self.ffi.buffer(self.buffer, count)[:] if count > 0 else b""


def handshake(make_client: Callable[[], Any], server_ctx: ssl.SSLContext) -> float:
    """One handshake; the client's CPU seconds (its object made, every step)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
    began = time.thread_time()
    client = make_client()
    done, data = client.step(b"")
    spent = time.thread_time() - began
    for _ in range(8):
        incoming.write(data)
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        began = time.thread_time()
        done, data = client.step(outgoing.read())
        spent += time.thread_time() - began
        if done:
            if data:  # the client's last flight (its certificate, Finished)
                incoming.write(data)
                server.do_handshake()
            assert server.getpeercert(binary_form=True), "the server saw no client certificate"
            return spent
    raise SystemExit("the handshake did not finish")


def client_certificate(ca: TestCA, work: Path) -> tuple[Path, Path]:
    """A device's key and the certificate the CA signed for its CSR, as files."""
    key = new_key()
    cert, key_file = work / "device.crt", work / "device.key"
    cert.write_bytes(ca.sign_csr(csr_pem(key, "device-1").encode("ascii")))
    key_file.write_bytes(key_pem(key))
    return cert, key_file


def cpu_of(call: Callable[[], object]) -> float:
    began = time.thread_time()
    call()
    return time.thread_time() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--count", type=int, default=200, help="handshakes and builds a round")
    args = ap.parse_args()
    version = tls_bundled.available()
    if version is None:
        raise SystemExit("this cryptography's OpenSSL bindings cannot run the device's TLS")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = TestCA()
        bundle = ca.write_cert(work / "bundle.pem")
        server_files = ca.issue_server_cert(work, names=("localhost",))
        client_files = client_certificate(ca, work)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(server_files.cert), str(server_files.key))
        server_ctx.load_verify_locations(str(bundle))
        server_ctx.verify_mode = ssl.CERT_REQUIRED

        def system_context() -> ssl.SSLContext:
            return build_ssl_context(bundle, client_files)

        def bundled_context() -> tls_bundled.BundledContext:
            return tls_bundled.BundledContext(bundle, client_files)

        system_ctx, bundled_ctx = system_context(), bundled_context()
        rows: dict[str, list[float]] = {k: [] for k in (
            "context_system", "context_bundled", "handshake_system", "handshake_bundled")}
        for _ in range(args.rounds):
            rows["context_system"].append(statistics.median(
                cpu_of(system_context) for _ in range(args.count)))
            rows["context_bundled"].append(statistics.median(
                cpu_of(bundled_context) for _ in range(args.count)))
            rows["handshake_system"].append(statistics.median(
                handshake(lambda: SystemClient(system_ctx), server_ctx)
                for _ in range(args.count)))
            rows["handshake_bundled"].append(statistics.median(
                handshake(lambda: BundledClient(bundled_ctx), server_ctx)
                for _ in range(args.count)))
    ms = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    print(f"system:  {ssl.OPENSSL_VERSION}\nbundled: {version}")
    title = f"client CPU, ms (median of {args.rounds} rounds)"
    print(f"{title:44s} system  bundled  ratio")
    for what in ("context", "handshake"):
        system, bundled = ms[f"{what}_system"], ms[f"{what}_bundled"]
        label = ("context with the device's certificate" if what == "context"
                 else "TLS 1.3 handshake, client certificate")
        print(f"{label:44s} {system:6.3f}  {bundled:7.3f}  {bundled / system:5.3f}")
    print(json.dumps({
        "system_openssl": ssl.OPENSSL_VERSION, "bundled_openssl": version,
        "context_system_ms": round(ms["context_system"], 4),
        "context_bundled_ms": round(ms["context_bundled"], 4),
        "handshake_system_ms": round(ms["handshake_system"], 4),
        "handshake_bundled_ms": round(ms["handshake_bundled"], 4),
        "context_ratio": round(ms["context_bundled"] / ms["context_system"], 3),
        "handshake_ratio": round(ms["handshake_bundled"] / ms["handshake_system"], 3),
        "rounds": args.rounds}))


if __name__ == "__main__":
    main()
