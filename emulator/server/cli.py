"""``python -m emulator server ...``: run the reference server and administer its state.

``run`` serves until interrupted. The other commands work on the state directory
directly (SQLite in WAL mode is safe to share with a running server), so they need no
token and no network: ``make-key``, ``publish-firmware``, ``enqueue``, ``devices``,
``export`` (stored uploads back out as zips), ``export-firmware-key``. Server-side
faults are switched over the admin API (``PUT /admin/v1/faults``) because they live in
the running process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from emulator.cli_types import port_number
from emulator.closed_output import run_with_closed_output_quiet
from emulator.errors import EmulatorError
from emulator.loop import LOOP_NAMES, LoopUnavailable, resolve
from emulator.loop import run as run_on_loop
from emulator.server.app import ReferenceServer
from emulator.server.export import export_uploads, open_state, parse_since
from emulator.server.pki import ServerTlsFiles
from emulator.server.tls_listener import alerts_flushed
from emulator.server.workers import adopt_listen_fd, serve_workers

DEFAULT_STATE = Path("server-state")


def _key_count(text: str) -> int:
    """How many registration keys to make: 1..10,000 (the admin API's bounds)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= 10000:
        raise argparse.ArgumentTypeError(f"must be 1..10000, got {count}")
    return count


def add_server_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``server`` and its sub-commands to an argparse ``subparsers`` object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "server", help="the reference communication server")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE,
                        help="keys, certificates, database (default: %(default)s)")
    sub = parser.add_subparsers(dest="server_command", required=True)

    run = sub.add_parser("run", help="serve until interrupted")
    run.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default %(default)s)")
    run.add_argument("--port", type=port_number, default=8443,
                     help="TLS port (default %(default)s; 0: any free port)")
    run.add_argument("--server-name", action="append", default=[],
                     help="extra DNS name or IP for the server certificate (repeatable)")
    run.add_argument("--cert-days", type=int, default=365,
                     help="validity of issued client certificates, in days "
                          "(default %(default)s)")
    run.add_argument("--max-upload-bytes", type=int, default=1 << 20,
                     help="largest upload body taken; a larger one is refused with 413 "
                          "(default %(default)s)")
    run.add_argument("--tls-cert", type=Path, help="operator server certificate chain (PEM)")
    run.add_argument("--tls-key", type=Path, help="operator server key (PEM)")
    run.add_argument("--tls-ca", type=Path, help="CA of the operator certificate (PEM)")
    run.add_argument("--metrics-port", type=port_number, metavar="P",
                     help="serve Prometheus metrics on http://127.0.0.1:P/metrics "
                          "(emulator/server/metrics.py); 0: any free port, named as "
                          "metrics_port in the line printed at start. One server "
                          "process only (--workers 1)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="server processes accepting on the one port, sharing the "
                          "database (about one per core; default %(default)s). Faults "
                          "switched over the admin API act on one worker: QA scenarios "
                          "use 1")
    run.add_argument("--loop", choices=LOOP_NAMES, default="asyncio",
                     help="event loop of each server process: asyncio (default) sends "
                          "the TLS alert of a refused handshake (protocol_version, "
                          "unknown_ca), so a misconfigured client learns why; uvloop "
                          "closes a refused handshake without it (docs/protocol.md) and "
                          "measured no cheaper per upload; auto is uvloop when installed")
    run.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # a worker's socket

    key = sub.add_parser("make-key", help="print new single-use registration keys")
    key.add_argument("--count", type=_key_count, default=1, help="how many (1..10000)")
    key.add_argument("--ttl", type=int, default=86400, help="seconds (default: one day)")

    fw = sub.add_parser("publish-firmware", help="publish a firmware image")
    fw.add_argument("--model", required=True,
                    help="the printer model it is for, as devices report it "
                         "(e.g. 'WorkCentre 7545')")
    fw.add_argument("--version", required=True,
                    help="dotted version; offered to devices running an older one")
    fw.add_argument("--expires-in", type=int, default=30 * 86400,
                    help="seconds the offer stands (default: 30 days)")
    fw.add_argument("image", type=Path, help="the firmware image file")

    enq = sub.add_parser("enqueue", help="queue an action for a device")
    enq.add_argument("device_id", help="as `devices` lists it (a device has one once it "
                                       "registered, at its first sync)")
    enq.add_argument("type", help=(
        "send_meters_now, get_status, reboot, troubleshoot, print_test_page, "
        "upgrade_firmware, upload_logs or start_managed (a device refuses other types "
        "as unsupported)"))
    enq.add_argument("--params", default="{}", help="JSON object")
    enq.add_argument("--expires-in", type=int, default=86400,
                     help="seconds (default: one day)")

    exp = sub.add_parser(
        "export", help="write stored uploads back out as the zips devices sent",
        description="Write the stored uploads (all, one device's, or those received since "
                    "a time) to OUT_DIR/<device id>/<sequence>-<upload id>.zip, byte for "
                    "byte as received, with an index OUT_DIR/uploads.json; without --device "
                    "also the device managers' uploads (OUT_DIR/managers/) and "
                    "OUT_DIR/printers.json (each printer's sources). Safe while the "
                    "server runs.")
    exp.add_argument("--device", metavar="ID", help="only this device's uploads")
    exp.add_argument("--since", metavar="T",
                     help="only uploads the server received at or after T (ISO 8601 date or "
                          "time; UTC unless a zone is given)")
    exp.add_argument("--json", action="store_true", help="print the summary as JSON")
    exp.add_argument("out_dir", type=Path, metavar="OUT_DIR")

    sub.add_parser("devices", help="list devices with last contact (JSON)")
    sub.add_parser("export-firmware-key", help="print the firmware public key (PEM)")
    return parser


def run_server_cli(args: argparse.Namespace) -> int:
    """Carry out a parsed ``server`` command; the process exit status."""
    try:
        if args.server_command == "run":
            args.loop = resolve(args.loop)  # a missing uvloop is a usage error, said once
            if args.workers != 1 and args.listen_fd is None:
                return serve_workers(args, _tls_files(args))
            return run_on_loop(_serve(args), args.loop)
        return _offline(args)
    except BrokenPipeError:
        raise  # the reader of our output left: quiet exit (closed_output.py), no "error:"
    except (EmulatorError, ValueError, OSError, LoopUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _tls_files(args: argparse.Namespace) -> ServerTlsFiles | None:
    if not (args.tls_cert or args.tls_key):
        return None
    if not (args.tls_cert and args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    return ServerTlsFiles(args.tls_cert, args.tls_key, args.tls_ca)


async def _serve(args: argparse.Namespace) -> int:
    tls = _tls_files(args)
    # A worker of --workers N serves the socket its parent opened (workers.py).
    sock = adopt_listen_fd(args.listen_fd) if args.listen_fd is not None else None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The lines are the message alone (the access log: one JSON line per request), so
    # no record needs its thread or process names (the logging HOWTO's "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    server = ReferenceServer(
        args.state_dir, host=args.host, port=args.port,
        server_names=tuple(args.server_name) or ("localhost",), cert_days=args.cert_days,
        max_upload_bytes=args.max_upload_bytes, tls_files=tls, sock=sock)
    metrics_port: int | None = None
    if args.metrics_port is not None:
        from emulator.server.metrics import instrument, serve_metrics

        metrics = instrument(server)
        metrics_runner, metrics_port = await serve_metrics(metrics, args.metrics_port)
    async with server:
        print(json.dumps({"base_url": server.base_url, "listening": server.listening,
                          "port": server.port, "loop": args.loop,
                          "tls_alerts": alerts_flushed(asyncio.get_running_loop()),
                          "ca_cert": str(server.ca_cert_path),
                          "admin_token_file": str(server.state_dir / "admin-token"),
                          **({"metrics_port": metrics_port} if metrics_port else {})}),
              flush=True)
        try:
            await asyncio.Event().wait()  # until Ctrl-C cancels the run
        finally:
            if metrics_port is not None:
                await metrics_runner.cleanup()
    return 0


def _export(args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since is not None else None
    storage = open_state(args.state_dir)
    try:
        result = export_uploads(storage, args.out_dir, device_id=args.device, since=since)
    finally:
        storage.close()
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
    else:
        print(f"exported {result.uploads} uploads ({result.bytes:,} bytes) of "
              f"{result.devices} devices to {result.out_dir} (index: uploads.json)")
    return 0


# Commands on what a server stored: on a directory with no state (a mistyped
# --state-dir) they would make a new one (CA, token, empty database) and answer from it.
_NEED_STATE = ("devices", "enqueue")


def _offline(args: argparse.Namespace) -> int:
    if args.server_command == "export":
        return _export(args)
    if args.server_command in _NEED_STATE:
        open_state(args.state_dir).close()  # "no server state in ..." when there is none
    server = ReferenceServer(args.state_dir)
    try:
        cmd = args.server_command
        if cmd == "make-key":
            for _ in range(args.count):
                print(server.create_registration_key(ttl_s=args.ttl))
        elif cmd == "publish-firmware":
            manifest = server.publish_firmware(args.model, args.version,
                                               args.image.read_bytes(), args.expires_in)
            print(json.dumps(manifest, indent=2))
        elif cmd == "enqueue":
            try:
                params = json.loads(args.params)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--params is not JSON: {exc}") from None
            if not isinstance(params, dict):
                raise ValueError("--params must be a JSON object")
            print(server.enqueue_action(args.device_id, args.type, params, args.expires_in))
        elif cmd == "devices":
            print(json.dumps(server.storage.devices(), indent=2))
        elif cmd == "export-firmware-key":
            sys.stdout.write(server.firmware_public_key_pem.decode())
        else:  # argparse guarantees one of the above
            raise ValueError(f"unknown server command {cmd!r}")
    finally:
        server.storage.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m emulator.server.cli server run``)."""
    def run() -> int:
        parser = argparse.ArgumentParser(prog="emulator")
        add_server_parser(parser.add_subparsers(dest="command", required=True))
        return run_server_cli(parser.parse_args(argv))

    return run_with_closed_output_quiet(run)


if __name__ == "__main__":
    raise SystemExit(main())
