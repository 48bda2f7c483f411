"""``python -m emulator fleet --scenario FILE``: run one QA fault scenario.

Prints the scenario's summary (faults injected, payloads lost, stored twice) and each
expectation; a failed expectation lists the devices that broke it and why. Exit codes
as for ``fleet``: 0 every expectation held, 1 one failed, 2 the scenario file or the
options are wrong, 3 the run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from dataclasses import replace

from device_direct.errors import DeviceDirectError
from emulator.errors import EmulatorError, ScenarioError
from emulator.faults.scenario import Scenario, load_scenario
from emulator.fleet.cli_common import (
    EXIT_EXPECTATION,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    check_outputs,
    fresh_work_dir,
)
from emulator.fleet.progress import ProgressBar
from emulator.fleet.spec import DEFAULT_MIX, DEFAULT_ZONES, FleetSpecError, Shard


def _refuse_fleet_options(args: argparse.Namespace) -> None:
    given = [o for o, v in (
        ("--devices", args.devices is not None), ("--days", args.days is not None),
        ("--mix", args.mix is not DEFAULT_MIX), ("--zones", args.zones is not DEFAULT_ZONES),
        ("--upload-window", str(args.upload_window) != "01:00-05:00"),
        ("--server", args.server is not None), ("--shard", args.shard != Shard()),
        ("--processes", args.processes != 1), ("--cluster", args.cluster is not None),
        ("--metrics-port", args.metrics_port is not None),
        ("--stats-csv", args.stats_csv is not None), ("--actions", bool(args.actions)),
        ("--ca", args.ca is not None), ("--server-name", bool(args.server_name)),
        ("--registration-key", bool(args.registration_key)),
        ("--key-file", args.key_file is not None),
        ("--admin-token-file", args.admin_token_file is not None),
        ("--firmware-key", args.firmware_key is not None),
        ("--shard-count", args.shard_count is not None)) if v]
    if given:
        raise FleetSpecError(f"{', '.join(given)}: the scenario file describes the fleet and "
                             "runs it against an embedded server in one process")
    if args.html_report is not None:
        raise FleetSpecError("--html-report: a scenario has no HTML page; --report FILE "
                             "writes its JSON report")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario ``--scenario`` names, with ``--seed`` applied."""
    _refuse_fleet_options(args)
    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = replace(scenario, fleet=replace(scenario.fleet, seed=args.seed))
    return scenario


def run_scenario_cli(args: argparse.Namespace) -> int:
    """Carry out ``fleet --scenario FILE``; returns the exit status."""
    from emulator.fleet.scenario_run import run_scenario

    try:
        scenario = scenario_from_args(args)
        check_outputs(args)
        work_dir, remove = fresh_work_dir(args)
    except (FleetSpecError, ScenarioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar(enabled=args.progress, unit="virtual days")
    try:
        report = asyncio.run(run_scenario(scenario, work_dir, progress=bar,
                                           quiet_faults=args.log_level != "debug"))
    except ScenarioError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (EmulatorError, DeviceDirectError, OSError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if remove:
            shutil.rmtree(work_dir, ignore_errors=True)
        elif args.work_dir is None:
            print(f"work directory kept: {work_dir}", file=sys.stderr)
    bar.close()
    print("\n".join(report.lines()))
    if args.report is not None:
        try:
            report.write(str(args.report))
        except OSError as exc:
            print(f"error: --report {args.report}: cannot write the report: {exc}",
                  file=sys.stderr)
            return EXIT_RUNTIME
    return EXIT_OK if report.ok else EXIT_EXPECTATION
