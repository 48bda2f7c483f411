"""``python -m emulator``: the emulated printer, reference server and fleet runner.

Subcommands import what they need lazily so ``--help`` is quick.
Exit codes: 0 success, 1 an expectation failed, 2 usage or configuration error,
3 a runtime error (server could not start, state unusable); 130 interrupted (Ctrl-C),
141 the reader of the output went away (``... | head -1``), without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_EXPECTATION = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def _cmd_demo(args: argparse.Namespace) -> int:
    from emulator.fleet.cli import run_demo

    return run_demo()


def _cmd_model_demo(args: argparse.Namespace) -> int:
    from emulator.model.demo import model_demo

    print(model_demo(days=args.days, seed=args.seed))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description=(
            "Emulated networked printers, the reference communication server they upload "
            "to, and a fleet runner on a virtual clock."
        ),
        epilog="Exit codes: 0 ok, 1 expectation failed, 2 usage/config error, 3 runtime error "
               "(130 interrupted, 141 output closed).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="reference server + 50 emulated printers + 7 virtual days, then a summary",
        description=(
            "Run the built-in demo with nothing to configure: an embedded reference server "
            "and 50 emulated printers with real agents over real TLS on loopback, 7 "
            "virtual days, then a summary table."
        ),
    )
    demo.set_defaults(func=_cmd_demo)

    model_demo = sub.add_parser(
        "model-demo",
        help="one emulated printer per profile, printing for some days (tables, no network)",
    )
    model_demo.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    model_demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    model_demo.set_defaults(func=_cmd_model_demo)

    from emulator.fleet.cli import add_fleet_parser, run_fleet_cli

    add_fleet_parser(sub).set_defaults(func=run_fleet_cli)

    from emulator.device_runner import add_device_parser, run_device_cli
    from emulator.server.cli import add_server_parser, run_server_cli

    add_device_parser(sub).set_defaults(func=run_device_cli)
    from emulator.device_control import add_control_parser, run_control_cli

    add_control_parser(sub).set_defaults(func=run_control_cli)

    add_server_parser(sub).set_defaults(func=run_server_cli)

    from emulator.lan.cli import add_lan_parser, run_lan_cli

    add_lan_parser(sub).set_defaults(func=run_lan_cli)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emulator`` and ``dd-emulator``: run one command; its exit status."""
    from emulator.closed_output import run_with_closed_output_quiet

    return run_with_closed_output_quiet(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from device_direct.errors import ConfigError, DeviceDirectError
    from emulator.errors import EmulatorError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (EmulatorError, DeviceDirectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
