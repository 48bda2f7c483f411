"""``python -m emulator lan``: a simulated office network until Ctrl-C.

Prints what it started as a table (one row per address) and then one JSON line (or
only the JSON with ``--json``), then serves until SIGINT or SIGTERM, when it stops
every host and exits 0 (130 when the signal comes before every host has started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from device_direct.errors import ConfigError
from emulator.lan.network import (
    EmulatedLan,
    LanAgentOptions,
    LanOptions,
    LanStartError,
    check_open_files,
)
from emulator.lan.plan import DEFAULT_MIX, LanSpec, LanSpecError


def add_lan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lan`` to the ``python -m emulator`` sub-commands; returns its parser."""
    mix = ",".join(f"{n}:{w}" for n, w in DEFAULT_MIX)
    p: argparse.ArgumentParser = subparsers.add_parser(
        "lan", help="a simulated office network: printers, other SNMP hosts, silent addresses",
        description="Start N emulated printers, each on its own loopback address with its SNMP "
                    "agent and port 9100 (a share also running its Device Direct agent), a few "
                    "SNMP hosts that are not printers and some addresses that never answer. "
                    "Prints a table and a JSON line of what it started, then serves until "
                    "Ctrl-C.",
        epilog="Example: python -m emulator lan --printers 50 --subnet 127.0.1.0/24 "
               "--snmp-port 1161 --jetdirect-port 9100 --web-port 8080")
    p.add_argument("--printers", type=int, default=10, help="emulated printers (default 10)")
    p.add_argument("--subnet", default="127.0.1.0/24",
                   help="loopback block to place hosts in (default 127.0.1.0/24)")
    p.add_argument("--snmp-port", type=int, default=161,
                   help="UDP port every host answers on (default 161; 0: a free port)")
    p.add_argument("--jetdirect-port", type=int, default=9100,
                   help="TCP print port of every printer (default 9100; 0: a free port)")
    p.add_argument("--web-port", type=int, default=0,
                   help="TCP port of every printer's web pages (default 0: a free port, the "
                        "same on every address; -1: no web pages)")
    p.add_argument("--community", default="public", help="the printers' community")
    p.add_argument("--mix", default=mix, help=f"profile mix PROFILE:WEIGHT,... (default {mix})")
    p.add_argument("--non-printers", type=int, default=5,
                   help="SNMP hosts that are not printers (default 5)")
    p.add_argument("--silent", type=int, default=20,
                   help="addresses that never answer (default 20)")
    p.add_argument("--days-of-use", type=int, default=30,
                   help="days each printer has been in use before the LAN opens (default 30)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--agents", type=float, default=0.0,
                   help="share of printers also running Device Direct, 0..1 (default 0)")
    p.add_argument("--v1-only", type=float, default=0.0,
                   help="share of printers whose agent speaks SNMPv1 only (old printers), "
                        "0..1 (default 0)")
    p.add_argument("--server", help="communication server URL for the agents (https://...)")
    p.add_argument("--ca", type=Path, help="CA bundle that signed the server certificate")
    p.add_argument("--registration-key", action="append", default=[],
                   help="a single-use registration key; give one per printer with an agent")
    p.add_argument("--registration-keys-file", type=Path,
                   help="registration keys, one a line (one per printer with an agent)")
    p.add_argument("--server-name", default="", help="TLS name of the server (default: URL host)")
    p.add_argument("--state-dir", type=Path, help="agents' state directory (default: temporary)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    return p


def options_from_args(args: argparse.Namespace) -> LanOptions:
    """Parsed arguments to options; ConfigError names the bad option."""
    from emulator.fleet.spec import FleetSpecError, parse_mix
    from emulator.model.profile import available_profiles

    try:
        mix = parse_mix(args.mix, available_profiles())
    except FleetSpecError as exc:
        raise ConfigError(str(exc), key="--mix") from None
    agents = None
    if args.agents > 0:
        if not args.server or args.ca is None:
            raise ConfigError("needs --server and --ca when --agents is above 0", key="--agents")
        keys = list(args.registration_key)
        if args.registration_keys_file is not None:
            try:
                keys += [k.strip() for k in args.registration_keys_file.read_text(
                    encoding="utf-8").splitlines() if k.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read: {exc}", path=args.registration_keys_file,
                                  key="--registration-keys-file") from None
        agents = LanAgentOptions(server_url=args.server, ca_bundle=args.ca,
                                 registration_keys=tuple(keys), server_name=args.server_name,
                                 state_dir=args.state_dir)
    try:
        spec = LanSpec(printers=args.printers, subnet=args.subnet,
                       non_printers=args.non_printers, silent=args.silent, mix=mix,
                       agents=args.agents, seed=args.seed, v1_only=args.v1_only)
        options = LanOptions(spec=spec, snmp_port=args.snmp_port,
                             jetdirect_port=args.jetdirect_port, web_port=args.web_port,
                             community=args.community,
                             days_of_use=args.days_of_use, agents=agents)
    except (LanSpecError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        check_open_files(options)
    except LanStartError as exc:
        raise ConfigError(str(exc), key="--printers") from None
    return options


def format_table(info: dict[str, Any]) -> str:
    """One row per address: address, kind, profile, serial, ports, agent."""
    head = ("address", "kind", "profile", "serial", "snmp", "9100", "web", "agent")
    rows = [head]
    for h in info["hosts"]:
        rows.append((h["address"], h["kind"], h.get("profile", ""), h.get("serial", ""),
                     f"udp/{h['snmp_port']}" + (" (v1 only)" if h.get("snmp_v1_only") else ""),
                     f"tcp/{h['jetdirect_port']}" if "jetdirect_port" in h else "",
                     f"http://{h['address']}:{h['web_port']}/" if h.get("web_port") else "",
                     "yes" if h.get("agent") else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append(f"{info['printers']} printers, {info['non_printers']} other SNMP hosts, "
                 f"{info['silent']} silent addresses on {info['subnet']}; "
                 f"community {info['community']!r}; Ctrl-C stops")
    return "\n".join(lines)


def run_lan_cli(args: argparse.Namespace) -> int:
    """``python -m emulator lan``: serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = options_from_args(args)
    return asyncio.run(_serve(options, as_json=args.json))


async def _serve(options: LanOptions, *, as_json: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lan = EmulatedLan(options)
    try:
        # Thousands of printers take a while to start: Ctrl-C stops the start too.
        starting = asyncio.create_task(lan.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            print("interrupted while starting", file=sys.stderr, flush=True)
            return 130
        stopping.cancel()
        starting.result()  # LanStartError: the caller says why, exit 3
        info = lan.describe()
        if not as_json:
            print(format_table(info), flush=True)
        print(json.dumps(info, sort_keys=True), flush=True)
        await stop.wait()
    finally:
        await lan.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("stopped", file=sys.stderr, flush=True)
    return 0
