"""Client CPU per TLS handshake under the TLS settings a real device could choose.

The fleet's devices each open a new mutually authenticated TLS connection a day, and
the client side of that handshake is the largest single part of a device-day's CPU
(docs/fleet.md). This script asks whether a setting a device would accept makes it
cheaper: against the reference server (own process), ``--handshakes`` full handshakes
(connect, verify the server, present the client certificate, close) per variant, in
``--rounds`` interleaved rounds, timing this process's CPU (the server's is not counted).

Variants: the agent's context (``device_direct.transport.build_ssl_context``: TLS >= 1.2,
host name checked, CA bundle only, client certificate); session tickets off; one key-share
group (P-256 only, ``set_ecdh_curve``); TLS 1.3 only; TLS 1.2 only; and, as references a
device must not use, no server verification and no client certificate.

    .venv/bin/python bench/fleet_tls_params.py [--handshakes 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fleet_bench import fleet_run, fleet_target, served  # bench/, beside this

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_direct.transport import build_ssl_context  # noqa: E402


def variants(ca: Path, cert: Path, key: Path) -> dict[str, Callable[[], ssl.SSLContext]]:
    def agent() -> ssl.SSLContext:
        return build_ssl_context(ca, (cert, key))

    def no_tickets() -> ssl.SSLContext:
        ctx = agent()
        ctx.options |= ssl.OP_NO_TICKET
        return ctx

    def p256_only() -> ssl.SSLContext:
        ctx = agent()
        ctx.set_ecdh_curve("prime256v1")
        return ctx

    def tls13_only() -> ssl.SSLContext:
        ctx = agent()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    def tls12_only() -> ssl.SSLContext:
        ctx = agent()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def no_verify() -> ssl.SSLContext:  # reference only: a device must verify
        ctx = agent()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def no_client_cert() -> ssl.SSLContext:  # reference only: the server needs it
        return build_ssl_context(ca)

    return {"agent's context": agent, "session tickets off": no_tickets,
            "one key-share group (P-256)": p256_only, "TLS 1.3 only": tls13_only,
            "TLS 1.2 only": tls12_only, "(no server verification)": no_verify,
            "(no client certificate)": no_client_cert}


def device_files(port: int, state: Path, work: Path) -> tuple[Path, Path]:
    """Certificate and key of one device registered on the server at ``port`` (a
    one-device fleet in ``work``)."""
    fleet_run(fleet_target(port, state, 1), work, 1, 1, 1, seed=9)
    ident = next((work / "devices").glob("*/identity/identity.json"))
    return ident.with_name("certificate.pem"), ident.with_name("key.pem")


def handshakes(ctx: ssl.SSLContext, port: int, n: int) -> float:
    """Client CPU ms per full handshake (connect, handshake, close)."""
    started = time.process_time()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost"):
            pass
    return 1000 * (time.process_time() - started) / n


def main() -> int:
    """Measure each variant and print a table (last line: JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with served() as (tmp, state, _, port):
        made = variants(state / "pki" / "bundle.pem", *device_files(port, state, tmp / "one"))
        results: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(args.rounds):
            for name, make in made.items():
                results[name].append(handshakes(make(), port, args.handshakes))
    base = statistics.median(results["agent's context"])
    print(f"client CPU per handshake, median of {args.rounds} rounds of {args.handshakes}:")
    for name, runs in results.items():
        med = statistics.median(runs)
        print(f"  {name:<30} {med:6.3f} ms  ({med / base:4.2f} x the agent's; "
              f"rounds {', '.join(f'{r:.3f}' for r in runs)})")
    print(json.dumps({
        re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + "_client_cpu_ms_per_handshake":
            round(statistics.median(r), 3) for name, r in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
