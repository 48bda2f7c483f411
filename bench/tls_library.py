"""The device's TLS on the system's OpenSSL against the one cryptography ships.

What ``[server] tls_library = "bundled"`` (``device_direct/tls_bundled.py``) changes,
without a network or a server process in the way: the client's CPU (``time.thread_time``)
for (1) building the context a registered device uses (CA bundle, its own certificate
and key) and (2) a full TLS 1.3 handshake with its client certificate, the server
verified, against a server made with Python's ``ssl`` in the same thread (memory BIOs;
only the client's calls are timed). Alternating rounds; medians of each round's median.

It also times (3) the other side: the server's CPU for the same handshake (a client made
with Python's ``ssl`` presenting the device's certificate), and for one without a client
certificate (what ``openssl s_time -new`` makes), with the server on each library. The
reference server runs on the system's; these rows say what moving it would change.

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


class SystemEnd:
    """One side of a handshake on Python's ``ssl`` (the system's OpenSSL), memory BIOs."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool = False) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=None if server_side else "localhost")

    def step(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.incoming.write(data)
        try:
            self.tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        return done, self.outgoing.read()


class BundledEnd:
    """One side of a handshake on the bundled OpenSSL: an SSL object on memory BIOs."""

    def __init__(self, parts: tuple[Any, Any, Any]) -> None:
        self.lib, self.ffi = tls_bundled._bindings()
        self.conn, self.incoming, self.outgoing = parts
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


def bundled_client(context: tls_bundled.BundledContext) -> BundledEnd:
    return BundledEnd(context.connection("localhost"))


def bundled_server(ctx: Any) -> BundledEnd:
    """The server's side on the bundled OpenSSL (bench only: the device is a client)."""
    lib, ffi = tls_bundled._bindings()
    conn = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
    incoming, outgoing = lib.BIO_new(lib.BIO_s_mem()), lib.BIO_new(lib.BIO_s_mem())
    lib.SSL_set_bio(conn, incoming, outgoing)  # freed with the SSL object
    lib.SSL_set_accept_state(conn)
    return BundledEnd((conn, incoming, outgoing))


def bundled_server_context(chain: Path, key: Path, client_ca: Path) -> Any:
    """What the reference server's context asks (TLS 1.2+, client certificate optional,
    no session tickets), on the bundled OpenSSL."""
    lib, ffi = tls_bundled._bindings()
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_server_method()), lib.SSL_CTX_free)
    lib.SSL_CTX_set_min_proto_version(ctx, lib.TLS1_2_VERSION)
    lib.SSL_CTX_set_options(ctx, lib.SSL_OP_ALL | lib.SSL_OP_NO_COMPRESSION | lib.SSL_OP_NO_TICKET)
    if not (lib.SSL_CTX_use_certificate_chain_file(ctx, str(chain).encode())
            and lib.SSL_CTX_use_PrivateKey_file(ctx, str(key).encode(), lib.SSL_FILETYPE_PEM)
            and lib.SSL_CTX_load_verify_locations(ctx, str(client_ca).encode(), ffi.NULL)):
        raise SystemExit(f"bundled server context: {tls_bundled._error_text(lib, ffi)}")
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)
    return ctx


def server_handshake(make_server: Callable[[], Any], client_ctx: ssl.SSLContext) -> float:
    """One handshake; the server's CPU seconds (its object made, every step)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    began = time.thread_time()
    server = make_server()
    spent = time.thread_time() - began
    data = outgoing.read()
    for _ in range(8):
        began = time.thread_time()
        done, answer = server.step(data)
        spent += time.thread_time() - began
        incoming.write(answer)
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        data = outgoing.read()
        if done:
            return spent
    raise SystemExit("the handshake did not finish")


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
        # The server's side: a client with the device's certificate, and one without.
        reference_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # as the reference server's
        reference_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        reference_ctx.load_cert_chain(str(server_files.cert), str(server_files.key))
        reference_ctx.load_verify_locations(str(bundle))
        reference_ctx.verify_mode = ssl.CERT_OPTIONAL
        reference_ctx.num_tickets = 0
        reference_ctx.options |= ssl.OP_NO_TICKET
        bundled_server_ctx = bundled_server_context(server_files.cert, server_files.key, bundle)
        device_client = ssl.create_default_context(cafile=str(bundle))
        device_client.load_cert_chain(str(client_files[0]), str(client_files[1]))
        plain_client = ssl.create_default_context(cafile=str(bundle))
        rows: dict[str, list[float]] = {k: [] for k in (
            "context_system", "context_bundled", "handshake_system", "handshake_bundled",
            "server_system", "server_bundled", "server_nocert_system",
            "server_nocert_bundled")}
        for _ in range(args.rounds):
            rows["context_system"].append(statistics.median(
                cpu_of(system_context) for _ in range(args.count)))
            rows["context_bundled"].append(statistics.median(
                cpu_of(bundled_context) for _ in range(args.count)))
            rows["handshake_system"].append(statistics.median(
                handshake(lambda: SystemEnd(system_ctx), server_ctx)
                for _ in range(args.count)))
            rows["handshake_bundled"].append(statistics.median(
                handshake(lambda: bundled_client(bundled_ctx), server_ctx)
                for _ in range(args.count)))
            for suffix, client in (("", device_client), ("_nocert", plain_client)):
                rows[f"server{suffix}_system"].append(statistics.median(
                    server_handshake(lambda: SystemEnd(reference_ctx, server_side=True), client)
                    for _ in range(args.count)))
                rows[f"server{suffix}_bundled"].append(statistics.median(
                    server_handshake(lambda: bundled_server(bundled_server_ctx), client)
                    for _ in range(args.count)))
    ms = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    print(f"system:  {ssl.OPENSSL_VERSION}\nbundled: {version}")
    title = f"CPU, ms (median of {args.rounds} rounds)"
    print(f"{title:52s} system  bundled  ratio")
    labels = {"context": "client: context with the device's certificate",
              "handshake": "client: TLS 1.3 handshake, client certificate",
              "server": "server: the same handshake",
              "server_nocert": "server: a handshake without client certificate"}
    for what, label in labels.items():
        system, bundled = ms[f"{what}_system"], ms[f"{what}_bundled"]
        print(f"{label:52s} {system:6.3f}  {bundled:7.3f}  {bundled / system:5.3f}")
    print(json.dumps({
        "system_openssl": ssl.OPENSSL_VERSION, "bundled_openssl": version,
        "context_system_ms": round(ms["context_system"], 4),
        "context_bundled_ms": round(ms["context_bundled"], 4),
        "handshake_system_ms": round(ms["handshake_system"], 4),
        "handshake_bundled_ms": round(ms["handshake_bundled"], 4),
        "context_ratio": round(ms["context_bundled"] / ms["context_system"], 3),
        "handshake_ratio": round(ms["handshake_bundled"] / ms["handshake_system"], 3),
        "server_handshake_system_ms": round(ms["server_system"], 4),
        "server_handshake_bundled_ms": round(ms["server_bundled"], 4),
        "server_handshake_nocert_system_ms": round(ms["server_nocert_system"], 4),
        "server_handshake_nocert_bundled_ms": round(ms["server_nocert_bundled"], 4),
        "rounds": args.rounds}))


if __name__ == "__main__":
    main()
