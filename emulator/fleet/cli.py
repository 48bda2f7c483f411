"""``python -m emulator fleet ...`` and ``python -m emulator demo``.

``fleet`` runs N emulated printers with their real agents on one virtual clock, against
an embedded reference server (default) or the user's own server (``--server``), prints
a summary table, optionally writes a JSON report, and exits 1 when an expectation
failed. ``--shard i/K`` runs a fixed part of the fleet; ``--processes K`` runs K shards
as local processes (see ``processes.py``) and merges their reports.

Exit codes: 0 ok, 1 an expectation failed, 2 usage or configuration error (a
``--work-dir`` that is not new and empty, or cannot be made, among them), 3 runtime
error (server unreachable for set-up, a shard process failed).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast, get_args

from device_direct.config import TlsLibrary
from device_direct.errors import DeviceDirectError
from emulator.cli_types import port_number
from emulator.errors import EmulatorError
from emulator.fleet.ci_matrix import merge_files, shard_from_env
from emulator.fleet.cli_common import (
    EXIT_EXPECTATION,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    check_outputs,
    fresh_work_dir,
)
from emulator.fleet.html_report import RunRecorder, write_html_report
from emulator.fleet.live_sinks import FROM_ENV, LiveSinks
from emulator.fleet.progress import ProgressBar
from emulator.fleet.report import FleetReport, summary_table, write_report
from emulator.fleet.runner import DEFAULT_CONCURRENCY, ServerTarget, run_fleet
from emulator.fleet.scenario_cli import run_scenario_cli
from emulator.fleet.spec import (
    DEFAULT_MIX,
    DEFAULT_ZONES,
    FleetSpec,
    FleetSpecError,
    Shard,
    UploadWindow,
    format_mix,
    parse_actions,
    parse_mix,
)
from emulator.loop import LOOP_NAMES, LoopUnavailable, resolve
from emulator.loop import run as run_on_loop

DEMO_DEVICES, DEMO_DAYS = 50, 7
# What the demo's server asks of its printers, per device-day: a few of every kind a
# fleet run can issue, so the summary shows the action path too.
DEMO_ACTIONS = "get_status:0.06,troubleshoot:0.03,print_test_page:0.03,send_meters_now:0.03"

_EPILOG = """\
examples:
  python -m emulator fleet --devices 50 --days 7
  python -m emulator fleet --devices 1000 --days 30 --processes 2 --report fleet.json
  python -m emulator fleet --devices 200 --days 7 --actions get_status:0.1,send_meters_now:0.02
  python -m emulator fleet --devices 200 --days 3 --server https://dd.test:8443 \\
      --ca ca.pem --key-file keys.txt --firmware-key fw.pem
  python -m emulator fleet --devices 1000 --days 30 --shard 2/4 ...   (on machine 2 of 4)
  python -m emulator fleet --devices 100000 --days 30 --cluster tcp://sched:8786 \\
      --embedded-host client.example --metrics-port 9108 --stats-csv run.csv
  python -m emulator fleet --devices 1000 --days 30 --shard --report part.json  (CI matrix job)
  python -m emulator fleet merge-reports part-*.json --report fleet.json
  python -m emulator fleet --scenario fixtures/scenarios/power-cut-at-upload-hour.toml

Identities (serial, MAC, time zone, upload time, profile) derive from --seed and the
device's index, so shards and repeated runs agree. Exit codes: 0 ok, 1 an expectation
failed (e.g. a payload was lost), 2 usage or configuration error, 3 runtime error."""


def _type(parse: Any) -> Any:
    # argparse shows ArgumentTypeError text as a usage error (exit code 2).
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except FleetSpecError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _mix(text: str) -> tuple[tuple[str, int], ...]:
    from emulator.model.profile import available_profiles

    return parse_mix(text, tuple(available_profiles()))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _zones(text: str) -> tuple[str, ...]:
    zones = tuple(z.strip() for z in text.split(",") if z.strip())
    if not zones:
        raise FleetSpecError("zones: give at least one IANA time zone")
    FleetSpec(devices=1, days=1, zones=zones)  # checks every name
    return zones


def add_fleet_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fleet`` to an argparse ``subparsers`` object; returns the new parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fleet", help="run many emulated printers with their real agents on a virtual clock",
        description="Run N emulated printers, each with its own real device_direct agent "
                    "(own key, certificate and data directory, real TLS), on one virtual "
                    "clock, against an embedded reference server or your own server.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_arguments(parser)
    return parser


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``fleet`` options (also used by ``python -m emulator.fleet``)."""
    fleet = parser.add_argument_group("the fleet")
    fleet.add_argument("--scenario", type=Path, metavar="FILE",
                       help="run a QA fault scenario (TOML: fleet, fault timeline, "
                            "expectations) against an embedded server; the fleet comes from "
                            "the file (--seed may override its seed)")
    fleet.add_argument("--devices", type=_positive, metavar="N",
                       help="number of printers in the whole fleet (required without "
                            "--scenario)")
    fleet.add_argument("--days", type=_positive, metavar="D",
                       help="virtual days of printing; each device uploads once per day "
                            "(required without --scenario)")
    fleet.add_argument("--mix", type=_type(_mix), default=DEFAULT_MIX, metavar="P:W,...",
                       help=f"device profiles and weights (default {format_mix(DEFAULT_MIX)})")
    fleet.add_argument("--seed", type=int, default=None, help="fleet seed (default 1)")
    fleet.add_argument("--upload-window", type=_type(UploadWindow.parse),
                       default=UploadWindow.parse("01:00-05:00"), metavar="HH:MM-HH:MM",
                       help="device-local window the daily upload times spread over "
                            "(default 01:00-05:00)")
    fleet.add_argument("--zones", type=_type(_zones), default=DEFAULT_ZONES,
                       metavar="ZONE,...", help="IANA time zones the devices are spread "
                                                "over (default: eight zones, Tokyo to LA)")
    fleet.add_argument("--actions", type=_type(parse_actions), default=(),
                       metavar="TYPE:P,...",
                       help="remote actions the server issues each evening, with the chance "
                            "per device-day (e.g. get_status:0.05,send_meters_now:0.01); "
                            "types: get_status, troubleshoot, print_test_page, "
                            "send_meters_now. Needs the embedded server or "
                            "--admin-token-file (default: none)")
    server = parser.add_argument_group(
        "server (default: an embedded reference server, nothing to configure)")
    server.add_argument("--server", metavar="URL",
                        help="base URL of your communication server (https://host:port)")
    server.add_argument("--ca", type=Path, metavar="FILE",
                        help="CA bundle (PEM) the devices trust for --server")
    server.add_argument("--server-name", default="", metavar="NAME",
                        help="host name the server certificate must carry (default: the "
                             "URL's host)")
    server.add_argument("--registration-key", action="append", default=[], metavar="KEY",
                        help="registration key; once: one key usable by every device; "
                             "repeated: one per device, by index")
    server.add_argument("--key-file", type=Path, metavar="FILE",
                        help="registration keys, one per line (device i uses line i+1)")
    server.add_argument("--admin-token-file", type=Path, metavar="FILE",
                        help="admin token of a reference-compatible server: through "
                             "/admin/v1, mint one key per device (unless keys are given), "
                             "issue --actions and check its upload counts")
    server.add_argument("--firmware-key", type=Path, metavar="FILE",
                        help="the server's Ed25519 firmware key (PEM); without it the "
                             "agents skip the daily firmware check")
    run = parser.add_argument_group("running")
    part = run.add_mutually_exclusive_group()
    part.add_argument("--shard", type=_type(Shard.parse), default=Shard(), nargs="?",
                      const=FROM_ENV, metavar="i/K",
                      help="run only part i of K (i from 1): K runs cover the fleet once. "
                           "Without i/K: from the CI matrix's environment "
                           "(JOB_COMPLETION_INDEX with --shard-count, or GitLab's "
                           "CI_NODE_INDEX/CI_NODE_TOTAL)")
    part.add_argument("--processes", type=_positive, default=1, metavar="K",
                      help="run K shards as local processes (about one per core) and merge; "
                           "with --cluster: K shard tasks (default: one per worker thread)")
    run.add_argument("--shard-count", type=_positive, metavar="K",
                     help="number of shards, for --shard from JOB_COMPLETION_INDEX")
    run.add_argument("--cluster", metavar="tcp://HOST:PORT",
                     help="run the shards on the Dask cluster whose scheduler is at this "
                          "address (see docs/fleet.md)")
    run.add_argument("--embedded-host", default="127.0.0.1", metavar="HOST",
                     help="with --cluster and no --server: the name or address the workers "
                          "reach this machine's embedded server at (default 127.0.0.1: "
                          "workers on this machine)")
    run.add_argument("--concurrency", type=_positive, default=DEFAULT_CONCURRENCY,
                     metavar="C", help="at most C devices build a payload or talk to the "
                                       "server at once (per process; default "
                                       f"{DEFAULT_CONCURRENCY})")
    run.add_argument("--loop", choices=LOOP_NAMES, default="auto",
                     help="event loop of a fleet run: auto (default) is uvloop when it "
                          "is installed, which needs less CPU per device-day; else asyncio")
    run.add_argument("--tls-library", choices=("auto", *get_args(TlsLibrary)),
                     default="auto",
                     help="whose OpenSSL the devices' TLS runs on: bundled (the one the "
                          "cryptography package ships: about a tenth less CPU per "
                          "device-day on a system OpenSSL 3.0), system (Python's ssl), or "
                          "auto (default): bundled where it can be used")
    run.add_argument("--work-dir", type=Path, metavar="DIR",
                     help="where device data lives (must be empty or new; kept). "
                          "Default: a temporary directory (in /dev/shm when there is one), "
                          "removed at the end unless --keep. On a RAM disk the devices' "
                          "durable writes run on the event loop (cheaper than a thread)")
    run.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    run.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report")
    run.add_argument("--metrics-port", type=port_number, metavar="P",
                     help="serve Prometheus metrics of the run on http://HOST:P/metrics "
                          "while it runs (0: any free port, printed on stderr)")
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                     help="address the metrics endpoint listens on (default 127.0.0.1)")
    run.add_argument("--stats-csv", type=Path, metavar="FILE",
                     help="write the run's running totals to FILE, one CSV row a second")
    # A shard process of --processes: where its parent reads its live figures.
    run.add_argument("--live-stats-file", type=Path, help=argparse.SUPPRESS)
    # A shard process of --processes: stop when the parent is no longer this process.
    run.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="?", choices=("merge-reports",),
                        metavar="merge-reports REPORT...",
                        help="merge the --report files of shards "
                             "run on several machines into one summary, report and exit "
                             "code")
    parser.add_argument("reports", nargs="*", type=Path, metavar="REPORT",
                        help=argparse.SUPPRESS)
    run.add_argument("--html-report", type=Path, metavar="FILE",
                     help="write one self-contained HTML page: summary, expectations, plots "
                          "(uploads per virtual day, retries and faults, request latency)")
    bar = run.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="draw the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never draw the progress bar")
    run.add_argument("--log-level", default="error",
                     choices=("debug", "info", "warning", "error"),
                     help="agent and server log level on stderr (default error)")


def spec_from_args(args: argparse.Namespace) -> FleetSpec:
    """The :class:`FleetSpec` the parsed options describe."""
    missing = [o for o, v in (("--devices", args.devices), ("--days", args.days)) if v is None]
    if missing:
        raise FleetSpecError(f"{' and '.join(missing)} required (or give --scenario FILE)")
    seed = 1 if args.seed is None else args.seed
    return FleetSpec(devices=args.devices, days=args.days, seed=seed, mix=args.mix,
                     zones=args.zones, upload_window=args.upload_window, actions=args.actions)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetSpecError(f"{what} {path}: cannot read: {exc}") from exc


def target_from_args(args: argparse.Namespace) -> ServerTarget | None:
    """The user's server, or None for an embedded one."""
    given = [o for o, v in (("--ca", args.ca), ("--key-file", args.key_file),
                            ("--registration-key", args.registration_key),
                            ("--admin-token-file", args.admin_token_file),
                            ("--server-name", args.server_name),
                            ("--firmware-key", args.firmware_key)) if v]
    if args.server is None:
        if given:
            raise FleetSpecError(f"{', '.join(given)} only make sense with --server URL")
        return None
    keys = list(args.registration_key)
    if args.key_file is not None:
        keys += [line.strip() for line in _read_text(args.key_file, "key file").splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise FleetSpecError(f"key file {args.key_file}: no keys in it")
    token = (_read_text(args.admin_token_file, "admin token file").strip()
             if args.admin_token_file is not None else None)
    if args.ca is not None and not args.ca.is_file():
        raise FleetSpecError(f"--ca {args.ca}: file not found")
    firmware_key = (_read_text(args.firmware_key, "firmware key")
                    if args.firmware_key is not None else None)
    try:
        target = ServerTarget(url=args.server, ca_bundle=args.ca, server_name=args.server_name,
                              keys=tuple(keys), admin_token=token, firmware_key=firmware_key)
    except DeviceDirectError as exc:
        raise FleetSpecError(f"--server: {exc}") from exc
    if keys:
        target.key_for(0, args.devices)  # one key for all, or enough of them
    return target


def tls_library(args: argparse.Namespace) -> TlsLibrary | None:
    """``--tls-library``: None for auto (the runner picks)."""
    return None if args.tls_library == "auto" else cast(TlsLibrary, args.tls_library)


def run_fleet_cli(args: argparse.Namespace) -> int:
    """Carry out a parsed ``fleet`` command; returns the exit status."""
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.command == "merge-reports":
        return _merge_cli(args)
    if args.reports:
        print(f"error: unexpected arguments: {' '.join(map(str, args.reports))}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.scenario is not None:
        return run_scenario_cli(args)
    live: LiveSinks | None = None
    try:
        if args.shard is FROM_ENV:
            args.shard = shard_from_env(os.environ, args.shard_count)
        elif args.shard_count is not None:
            raise FleetSpecError("--shard-count goes with --shard (no i/K), in a CI matrix")
        if args.cluster is not None and args.shard != Shard():
            raise FleetSpecError("--cluster runs the whole fleet; it does not take --shard")
        spec = spec_from_args(args)
        target = target_from_args(args)
        if args.processes > 1 and args.processes > spec.devices:
            raise FleetSpecError(f"--processes {args.processes} is more than --devices "
                                 f"{spec.devices}")
        if args.shard.count > spec.devices:
            raise FleetSpecError(f"--shard {args.shard}: more shards than devices")
        loop = resolve(args.loop)
        if args.tls_library == "bundled":
            from device_direct.tls_bundled import available

            if available() is None:
                raise FleetSpecError("--tls-library bundled: this installation's "
                                     "cryptography cannot run the devices' TLS; use system")
        check_outputs(args)
        live = LiveSinks.from_args(args)
        work_dir, remove = fresh_work_dir(args)
    except (FleetSpecError, LoopUnavailable) as exc:
        if live is not None:
            live.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar(enabled=args.progress, unit="device-days delivered")
    stats = live.update if live.active else None
    recorder = RunRecorder.start() if args.html_report is not None else None
    try:
        if args.cluster is not None:
            from emulator.fleet.dask_cluster import run_cluster

            report = run_on_loop(run_cluster(spec, args, target, work_dir, progress=bar,
                                             stats=stats), loop)
        elif args.processes > 1:
            from emulator.fleet.processes import run_processes

            report = run_on_loop(run_processes(spec, args, target, work_dir, progress=bar,
                                               stats=stats), loop)
        else:
            work = run_fleet(spec, work_dir, shard=args.shard, target=target,
                             concurrency=args.concurrency, progress=bar, stats=stats,
                             tls_library=tls_library(args))
            if args.parent_pid is not None:
                from emulator.fleet.processes import stop_with_parent

                work = stop_with_parent(work, args.parent_pid)
            report = run_on_loop(work, loop)
    except FleetSpecError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (EmulatorError, DeviceDirectError, OSError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        live.close()
        if recorder is not None:
            recorder.stop()
            recorder.read_server(work_dir)
        if remove:
            shutil.rmtree(work_dir, ignore_errors=True)
        elif args.work_dir is None:
            print(f"work directory kept: {work_dir}", file=sys.stderr)
    bar.close()
    # The summary and the JSON report first: a page that cannot be written must not
    # lose what the run found.
    status = _finish(report, args.report)
    if recorder is not None:
        try:
            write_html_report(report, args.html_report, recorder)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
    return status


def _merge_cli(args: argparse.Namespace) -> int:
    """``fleet merge-reports REPORT...``: one summary, one report, one exit code."""
    try:
        _refuse_run_options(args)
        check_outputs(args)
        report = merge_files(args.reports)
    except FleetSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _finish(report, args.report)


# What merge-reports uses of the options; any other given is a run's, and refused.
_MERGE_OPTIONS = frozenset({"command", "reports", "report", "log_level", "progress"})


def _refuse_run_options(args: argparse.Namespace) -> None:
    """merge-reports runs nothing: a run's option given with it (``--devices 5``) is a
    mistake to name, not to ignore."""
    parser = argparse.ArgumentParser(add_help=False)
    add_fleet_arguments(parser)
    defaults = vars(parser.parse_args([]))
    given = sorted("--" + k.replace("_", "-") for k, v in vars(args).items()
                   if k in defaults and k not in _MERGE_OPTIONS and v != defaults[k])
    if given:
        raise FleetSpecError(f"{', '.join(given)}: merge-reports runs nothing; it takes "
                             "report files, --report and --log-level")


def _finish(report: FleetReport, path: Path | None) -> int:
    print(summary_table(report))
    if path is not None:
        try:
            write_report(report, str(path))
        except OSError as exc:
            print(f"error: --report {path}: cannot write the report: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
    return EXIT_OK if report.ok else EXIT_EXPECTATION


def run_demo() -> int:
    """``make demo``: embedded server, 50 devices, 7 virtual days, summary; no set-up."""
    parser = build_parser()
    args = parser.parse_args(["--devices", str(DEMO_DEVICES), "--days", str(DEMO_DAYS),
                              "--actions", DEMO_ACTIONS])
    print(f"demo: {DEMO_DEVICES} emulated printers ({format_mix(DEFAULT_MIX)}), each with "
          f"its own agent, {DEMO_DAYS} virtual days, embedded reference server over TLS, "
          f"remote actions issued ({DEMO_ACTIONS})",
          flush=True)
    return run_fleet_cli(args)


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of ``python -m emulator.fleet``."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator.fleet",
        description="Run N emulated printers with their real agents on one virtual clock.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emulator.fleet``: the fleet command without the ``emulator`` wrapper."""
    return run_fleet_cli(build_parser().parse_args(argv))
