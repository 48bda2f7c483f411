"""CPU per TLS handshake, client and server, with the reference server's two CAs or one.

A new state directory has two CAs (emulator/server/pki.py): the server CA signs the
server certificate and is what devices trust, the device CA signs the devices'
certificates. Each side then sends its certificate alone. A directory made with one CA
(as every one was before) has each side send its CA too, because OpenSSL completes a
chain it is not given from the CAs it trusts: the other side parses two certificates a
handshake, and a device verifies its own chain every time.

This bench starts the reference server (own process) on each layout, registers one
device on each (a one-device fleet), and times ``--handshakes`` full handshakes with
the agent's own TLS context (``device_direct.transport.build_ssl_context``: the server
verified, the client certificate presented) in ``--rounds`` alternating rounds: this
process's CPU (the client) and the server process's. Medians, the ratio two/one, and
JSON last.

    .venv/bin/python bench/pki_layout.py [--handshakes 300] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import time
from pathlib import Path

from fleet_bench import cpu_s, served, server_cli  # bench/, beside this script
from fleet_tls_params import device_files, handshakes
from peers import start_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_direct.transport import build_ssl_context  # noqa: E402


def one_ca_state(state: Path) -> None:
    """A state directory as the server made it before the server CA existed: made now,
    then left with its device CA alone, so the next start signs the server certificate
    with that CA (emulator/server/pki.py keeps a directory's one CA)."""
    server_cli(state, "export-firmware-key")
    pki = state / "pki"
    for name in ("server-ca.pem", "server-ca.key", "server.pem", "server.key", "bundle.pem"):
        (pki / name).unlink()


def device_context(port: int, state: Path, work: Path) -> ssl.SSLContext:
    """The agent's TLS context of one device registered on the server at ``port``."""
    return build_ssl_context(state / "pki" / "bundle.pem", device_files(port, state, work))


def timed(ctx: ssl.SSLContext, port: int, server_pid: int, n: int) -> tuple[float, float]:
    """Client and server CPU ms per full handshake (connect, handshake, close)."""
    server = cpu_s(server_pid)
    client_ms = handshakes(ctx, port, n)
    time.sleep(0.05)  # the server's side of the last close
    return client_ms, 1000 * (cpu_s(server_pid) - server) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with served() as (tmp, state, proc, port):
        one_state = tmp / "one-ca"
        one_ca_state(one_state)
        one_proc, one_port = start_server(one_state)
        try:
            layouts = {
                "two CAs": (device_context(port, state, tmp / "dev-two"), port, proc.pid),
                "one CA": (device_context(one_port, one_state, tmp / "dev-one"), one_port,
                           one_proc.pid),
            }
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
            for _ in range(args.rounds):
                for name, (ctx, at, pid) in layouts.items():
                    runs[name].append(timed(ctx, at, pid, args.handshakes))
        finally:
            one_proc.terminate()
            one_proc.wait(timeout=10)
    med = {name: (statistics.median(c for c, _ in r), statistics.median(s for _, s in r))
           for name, r in runs.items()}
    print(f"CPU per full handshake (the agent's context), median of {args.rounds} "
          f"alternating rounds of {args.handshakes}:")
    for name, r in runs.items():
        print(f"  {name:<8} client {med[name][0]:.3f} ms ({', '.join(f'{c:.2f}' for c, _ in r)})"
              f"  server {med[name][1]:.3f} ms ({', '.join(f'{s:.2f}' for _, s in r)})")
    pairs = list(zip(runs["one CA"], runs["two CAs"], strict=True))
    client_ratio = statistics.median(two[0] / one[0] for one, two in pairs)
    server_ratio = statistics.median(two[1] / one[1] for one, two in pairs)
    print(f"two CAs / one CA, median of the rounds' ratios: client {client_ratio:.3f}, "
          f"server {server_ratio:.3f}")
    print(json.dumps({
        "client_cpu_ms_per_handshake_two_cas": round(med["two CAs"][0], 3),
        "client_cpu_ms_per_handshake_one_ca": round(med["one CA"][0], 3),
        "server_cpu_ms_per_handshake_two_cas": round(med["two CAs"][1], 3),
        "server_cpu_ms_per_handshake_one_ca": round(med["one CA"][1], 3),
        "client_ratio_two_vs_one": round(client_ratio, 3),
        "server_ratio_two_vs_one": round(server_ratio, 3),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
