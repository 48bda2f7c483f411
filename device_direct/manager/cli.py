"""``device-direct manager ...``: the device manager's command line.

``scan TARGET...`` finds and reads printers and prints a table (or ``--json``). The
SNMP engine (pysnmp) is imported only when a command runs, so ``--help`` works on a
device install without the ``manager`` extra, and a missing extra is a clear error.
Exit codes: 0 ok, 1 the scan found no printer, 2 usage or configuration error,
3 runtime error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from device_direct.errors import ConfigError

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3


def _need_extra() -> None:
    try:
        import pysnmp  # noqa: F401
    except ImportError:
        raise ConfigError("the device manager needs pysnmp: pip install "
                          "'device-direct[manager]'") from None


def add_manager_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``manager`` (with its own sub-commands) to ``device-direct``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "manager", help="the device manager: find printers over SNMP, read and report them",
        description="The device manager (second data path): discovers printers of any vendor "
                    "over SNMP and reads identity, status, meters and supplies; `manager run` "
                    "registers with the communication server and uploads them daily. "
                    "Needs the 'manager' extra (pysnmp).",
        epilog="Exit codes: 0 ok, 1 no printer found, 2 usage or configuration error, "
               "3 runtime error. See docs/manager.md.")
    sub = p.add_subparsers(dest="manager_command", metavar="COMMAND", required=True)
    scan = sub.add_parser(
        "scan", help="find and read printers now (table or JSON)",
        description="Probe every target (sysObjectID, sysDescr, hrDeviceType, prtGeneral), "
                    "then read each printer found. TARGET is an IP, host:port, a CIDR block "
                    "(127.0.1.0/24), a range (127.0.1.10-40) or @file (one target a line).",
        epilog="Example: device-direct manager scan 10.0.0.0/24 --community public --json")
    scan.add_argument("targets", nargs="+", metavar="TARGET")
    add_snmp_options(scan)
    scan.add_argument("--json", action="store_true", help="print one JSON document")
    scan.add_argument("--vendors", type=Path, action="append", default=[],
                      help="a directory of extra vendor files (*.toml)")
    scan.set_defaults(func=_scan)

    report = sub.add_parser(
        "report", help="audit report of the printers read (CSV or HTML)",
        description="Export an audit report (identity, address, meters, supplies, status, "
                    "when read) of the printers in a saved scan (--scan FILE, from "
                    "`manager scan --json`), or of the printers found by scanning TARGETs now.",
        epilog="Example: device-direct manager scan 10.0.0.0/24 --json > scan.json; "
               "device-direct manager report --scan scan.json --format html > audit.html")
    report.add_argument("targets", nargs="*", metavar="TARGET")
    report.add_argument("--scan", type=Path, help="a saved scan document (JSON)")
    report.add_argument("--format", choices=("csv", "html"), default="csv",
                        help="csv (default) or html")
    add_snmp_options(report)
    report.add_argument("--vendors", type=Path, action="append", default=[],
                        help="a directory of extra vendor files (*.toml)")
    report.add_argument("--config", type=Path,
                        help="report the stored readings of `manager run` with this "
                             "manager.toml")
    report.set_defaults(func=_report)

    run = sub.add_parser(
        "run", help="register once, then scan daily and upload each printer's payload",
        description="Run the device manager with a manager.toml (see docs/manager.md): "
                    "register once with the server (location, contact e-mail), scan the "
                    "configured scope daily at local time, upload one payload per printer "
                    "from its own outbox (exactly once), carry out the server's actions "
                    "(send-meters-now, get-status, print-test-page) unless disabled or "
                    "locked down.",
        epilog="Example: device-direct manager run --config /etc/dd/manager.toml")
    run.add_argument("--config", type=Path, required=True, help="the manager.toml")
    run.add_argument("--once", action="store_true",
                     help="one cycle now (register, scan, upload, actions), then exit")
    run.set_defaults(func=_run)

    status = sub.add_parser(
        "status", help="last read, last exchange, last success, next run, scope",
        description="What the manager last did, from its data directory (no network).")
    status.add_argument("--config", type=Path, required=True, help="the manager.toml")
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(func=_status)
    return p


def add_snmp_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snmp-port", type=int, default=161, help="UDP port (default 161)")
    p.add_argument("--community", action="append", default=[],
                   help="v2c community; repeat to try several in order (default public)")
    p.add_argument("--snmp-v1", choices=("fallback", "off", "only"), default="fallback",
                   help="SNMPv1 for the communities: fallback (default: also probed, in "
                        "the same round, used when v2c and v3 get no answer), off, or only")
    p.add_argument("--no-dns", action="store_true",
                   help="skip the reverse DNS lookup of each printer's address")
    p.add_argument("--v3-user", help="SNMPv3 user (SHA; AES with --v3-priv-key)")
    p.add_argument("--v3-auth-key", help="its authentication pass phrase (8+ characters)")
    p.add_argument("--v3-priv-key", help="its privacy pass phrase (8+ characters)")
    p.add_argument("--timeout", type=float, default=1.0,
                   help="seconds to wait for each answer (default 1)")
    p.add_argument("--retries", type=int, default=1, help="retries per request (default 1)")
    p.add_argument("--concurrency", type=int, default=32,
                   help="printers read at the same time (default 32)")
    p.add_argument("--probe-window", type=int, default=4096,
                   help="addresses probed at the same time (default 4096: every silent "
                        "address of a scan then costs one timeout round in all; lower it "
                        "when many agents share one slow host)")


def scan_options(args: argparse.Namespace) -> Any:
    from device_direct.manager.scan import ScanOptions
    from device_direct.manager.snmp import Credential

    if not args.v3_user and (args.v3_auth_key or args.v3_priv_key):
        given = "--v3-auth-key" if args.v3_auth_key else "--v3-priv-key"
        raise ConfigError(f"{given} goes with --v3-user (whose pass phrase it is)")
    try:
        creds = [Credential(community=c) for c in (args.community or
                                                   ([] if args.v3_user else ["public"]))]
        if args.v3_user:
            creds.append(Credential(user=args.v3_user, auth_key=args.v3_auth_key,
                                    priv_key=args.v3_priv_key))
        return ScanOptions(credentials=tuple(creds), timeout=args.timeout,
                           retries=args.retries, concurrency=args.concurrency,
                           probe_window=args.probe_window, v1=args.snmp_v1,
                           resolve_names=not args.no_dns)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class _Bar:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.on or total == 0:
            return
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r{phase:5} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def format_scan_table(doc: dict[str, Any]) -> str:
    """The scan report for people: one row per printer, then the totals and errors."""
    head = ("address", "vendor", "model", "serial", "status", "total", "black", "color",
            "supplies")
    rows: list[tuple[str, ...]] = [head]
    for p in doc["printers"]:
        c, s = p["counters"], p["status"]
        low = sum(1 for x in p["supplies"] if x["state"] in ("low", "empty"))
        rows.append((p["address"], str(p["vendor"] or "?"), str(p["model"] or "?"),
                     str(p["serial"] or "?"),
                     f"{s['device_status'] or '?'}/{s['printer_status'] or '?'}",
                     _num(c.get("total_impressions")), _num(c.get("black")),
                     _num(c.get("color")),
                     f"{len(p['supplies'])}" + (f" ({low} low/empty)" if low else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append(f"{len(doc['printers'])} printers, {doc['not_printers']} other SNMP hosts, "
                 f"{doc['no_answer']} without answer, {len(doc['errors'])} errors; "
                 f"{doc['scanned']} addresses in {doc['duration_s']:.1f} s")
    lines += [f"error {e['address']} ({e['phase']}, {e['kind']}): {e['message']}"
              for e in doc["errors"]]
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


async def _scan_now(args: argparse.Namespace, quiet: bool) -> dict[str, Any]:
    _need_extra()
    from device_direct.manager.scan import Scanner
    from device_direct.manager.targets import parse_targets
    from device_direct.manager.vendors import VendorCatalog

    if not 1 <= args.snmp_port <= 65535:
        raise ConfigError("must be 1..65535", key="--snmp-port")
    targets = parse_targets(args.targets, args.snmp_port)
    scanner = Scanner(scan_options(args), VendorCatalog.load(*args.vendors))
    try:
        report = await scanner.scan(targets, progress=None if quiet else _Bar())
    finally:
        scanner.close()
    doc: dict[str, Any] = report.to_json()
    return doc


async def _report(args: argparse.Namespace) -> int:
    from device_direct.manager.report import to_csv, to_html

    if args.config is not None:
        from device_direct.manager.config import load_config

        cfg = load_config(args.config)
        args.scan = cfg.data_dir / "readings.json"
        if not args.scan.is_file():
            raise ConfigError("no stored readings yet: run `manager run` first",
                              path=args.scan)
    if args.scan is not None and args.targets:
        raise ConfigError("give either --scan FILE or TARGETs, not both", key="--scan")
    if args.scan is not None:
        try:
            doc = json.loads(args.scan.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the scan: {exc}", path=args.scan) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("printers"), list):
            raise ConfigError("not a scan document (no 'printers' list)", path=args.scan)
    elif args.targets:
        doc = await _scan_now(args, quiet=True)
    else:
        raise ConfigError("give --scan FILE or TARGETs to scan now", key="--scan")
    sys.stdout.write(to_csv(doc) if args.format == "csv" else to_html(doc))
    return EXIT_OK


async def _scan(args: argparse.Namespace) -> int:
    doc = await _scan_now(args, quiet=args.json)
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print(format_scan_table(doc))
    return EXIT_OK if doc["printers"] else EXIT_NOTHING


async def _run(args: argparse.Namespace) -> int:
    _need_extra()
    import signal

    from device_direct.clock import SystemClock
    from device_direct.manager.config import load_config
    from device_direct.manager.runner import ManagerRunner

    config = load_config(args.config)
    runner = ManagerRunner(config, SystemClock())
    task = asyncio.ensure_future(runner.run(once=args.once))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("manager stopped", file=sys.stderr)
    st = runner.status
    print(json.dumps({"manager_id": st.manager_id, "in_scope": len(st.in_scope),
                      "out_of_scope": len(st.out_of_scope), "queued": st.queued,
                      "last_success": st.last_success, "last_error": st.last_error}))
    return EXIT_OK if st.queued == 0 else EXIT_RUNTIME


async def _status(args: argparse.Namespace) -> int:
    from device_direct.manager.config import load_config
    from device_direct.manager.runner import load_status

    config = load_config(args.config)
    status = load_status(config.data_dir)
    if not (config.data_dir / "status.json").is_file():
        status.security_mode = config.security_mode  # never run yet: the mode it will run in
    doc = status.to_json()
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
        return EXIT_OK
    rows = [("manager id", doc["manager_id"]), ("security mode", doc["security_mode"]),
            ("last read of printers", doc["last_read"]),
            ("last exchange with server", doc["last_exchange"]),
            ("last successful sync", doc["last_success"]),
            ("next scheduled", doc["next_scheduled"]),
            ("printers in scope", len(doc["in_scope"])),
            ("printers out of scope", len(doc["out_of_scope"])),
            ("not reportable (no serial/model)", len(doc["not_reportable"])),
            ("payloads queued", doc["queued"]), ("last error", doc["last_error"])]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {'-' if value is None else value}")
    return EXIT_OK
