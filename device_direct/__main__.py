"""``device-direct``: run the remote-services agent, ask it for status, make it send now.

Exit codes: 0 success; 2 usage or configuration error (the message names the file and
key); 3 a runtime error (server unreachable, registration refused, storage failed);
4 no agent is running (status/send-now); 130 interrupted; 141 (128 + SIGPIPE) the
reader of the output went away (``device-direct status ... | head -1``), quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from device_direct import __version__
from device_direct.clock import Clock, SystemClock
from device_direct.config import AgentConfig, load_config
from device_direct.errors import ConfigError, ConnectError, DeviceDirectError
from device_direct.logs import command_logging
from device_direct.model import DeviceModel

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_NOT_RUNNING = 4
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, as the shell reports for any tool stopped so
EMULATED_MODEL = "emulator.model.plug:make_model"

log = logging.getLogger("device_direct.cli")

ModelFactory = Callable[[AgentConfig, Clock], DeviceModel]


def _overrides(pairs: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value (dotted key), got {pair!r}")
        out[key.strip()] = value
    return out


def _load(args: argparse.Namespace) -> AgentConfig:
    return load_config(args.config, _overrides(args.set))


def load_model_factory(spec: str) -> ModelFactory:
    """``module:function`` -> the factory that builds the printer's DeviceModel."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(f"--model takes module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--model: {module_name} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def _model(args: argparse.Namespace, config: AgentConfig, clock: Clock) -> DeviceModel:
    spec = args.model or (EMULATED_MODEL if config.device.profile else None)
    if spec is None:
        raise ConfigError(
            "no device model: set device.profile (an emulated MFP) or pass --model module:function"
        )
    factory = load_model_factory(spec)
    try:
        return factory(config, clock)
    except ConfigError as exc:
        if exc.path is not None:
            raise
        # The factory knows the key (device.profile, say), the CLI knows the file.
        message = str(exc).removeprefix(f"key '{exc.key}': ")
        raise ConfigError(message, path=args.config, key=exc.key) from exc


async def _run(args: argparse.Namespace) -> int:
    from device_direct.agent import Agent
    from device_direct.control import serve_control

    config = _load(args)
    clock = SystemClock()
    model = _model(args, config, clock)
    agent = Agent(config, model, clock=clock)
    control = await serve_control(agent)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    if args.send_now:
        agent.send_now("on-demand")
    log.info("device-direct %s running; data in %s", __version__, agent.data_dir)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped")
    finally:
        control.close()
    return EXIT_OK


async def _register(args: argparse.Namespace) -> int:
    from device_direct.agent import Agent

    config = _load(args)
    clock = SystemClock()
    agent = Agent(config, _model(args, config, clock), clock=clock)
    if agent.identity.is_registered:
        print(json.dumps({"device_id": agent.identity.device_id, "already": True}))
        return EXIT_OK
    device_id = await agent.register()
    print(json.dumps({"device_id": device_id, "already": False}))
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    from device_direct.control import call

    config = _load(args)
    try:
        answer = await call(config.device.data_dir, "status")
    except ConnectError:
        print(json.dumps({"running": False, **_offline_status(config)}, indent=2))
        return EXIT_NOT_RUNNING
    print(json.dumps({"running": True, **answer.get("status", {})}, indent=2))
    return EXIT_OK


def _offline_status(config: AgentConfig) -> dict[str, Any]:
    """What the data directory says when no agent is running (read-only)."""
    from device_direct.agent import STATE_FILE, identity_state, load_agent_state
    from device_direct.identity import IdentityStore

    ident = IdentityStore(config.device.data_dir / "identity")
    outbox = config.device.data_dir / "outbox"
    queued = sorted(p.name for p in outbox.glob("*.zip")) if outbox.is_dir() else []
    try:
        why = load_agent_state(config.device.data_dir / STATE_FILE).get("needs_registration")
    except (OSError, ValueError, KeyError, TypeError):
        why = None
    return {"identity": identity_state(ident.is_registered, why), "needs_registration": why,
            "registered": ident.is_registered, "device_id": ident.device_id, "queued": queued}


async def _send_now(args: argparse.Namespace) -> int:
    from device_direct.control import call

    config = _load(args)
    try:
        await call(config.device.data_dir, "send-now")
    except ConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print("sync requested")
    return EXIT_OK


async def _audit(args: argparse.Namespace) -> int:
    from device_direct.agent import AUDIT_FILE
    from device_direct.audit import AuditLog
    from device_direct.audit_report import rows_of, to_csv, to_html

    config = _load(args)
    rows = rows_of(AuditLog(config.device.data_dir / AUDIT_FILE).read())
    if args.format == "csv":
        text = to_csv(rows)
    else:
        text = to_html(rows, title="Device Direct audit log",
                       subtitle=f"data directory {config.device.data_dir}")
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output: cannot write {args.output}: {exc}") from exc
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device-direct",
        description=(
            "Device Direct, the printer's remote-services agent: collects meters, supplies "
            "and faults, and uploads them daily over mutual TLS to the communication server."
        ),
        epilog=(
            "Exit codes: 0 ok, 2 usage/config error, 3 runtime error, 4 no agent running.\n"
            "Example: device-direct run --config /etc/device-direct.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"device-direct {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines on stderr as text or JSON (default text)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", required=True, type=Path, help="agent config (TOML)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set schedule.upload_time=03:30")

    run = sub.add_parser("run", help="run the agent until stopped (SIGINT/SIGTERM)")
    common(run)
    run.add_argument("--model", metavar="MODULE:FUNCTION",
                     help="factory for the printer's DeviceModel (default: an emulated MFP "
                          "when device.profile is set)")
    run.add_argument("--send-now", action="store_true", help="sync once at start")
    run.set_defaults(func=_run)

    reg = sub.add_parser("register", help="register with the server now and print the device id")
    common(reg)
    reg.add_argument("--model", metavar="MODULE:FUNCTION", help="as for run")
    reg.set_defaults(func=_register)

    st = sub.add_parser("status", help="show the running agent's state as JSON")
    common(st)
    st.set_defaults(func=_status)

    sn = sub.add_parser("send-now", help="ask the running agent to sync at once")
    common(sn)
    sn.set_defaults(func=_send_now)

    from device_direct.manager.cli import add_manager_parser

    add_manager_parser(sub)  # the device manager (device_direct/manager/)
    au = sub.add_parser("audit", help="export what remote services sent and received "
                                      "(the audit log) as CSV or HTML")
    common(au)
    au.add_argument("--format", choices=("csv", "html"), default="csv",
                    help="csv (default) or one self-contained HTML page")
    au.add_argument("--output", "-o", type=Path, help="write to this file (default stdout)")
    au.set_defaults(func=_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``device-direct`` command; returns the exit code."""
    try:
        try:
            code = _main(argv)
        except SystemExit:  # --help and usage errors: their output is flushed here too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # while a closed pipe can still be caught
        return code
    except BrokenPipeError:
        # The reader went away (| head -1): no traceback, and nothing left for the
        # interpreter's own flush at exit to fail on.
        with contextlib.suppress(AttributeError, ValueError, OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return EXIT_OUTPUT_CLOSED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with command_logging(args.log_format, args.log_level):
            return int(asyncio.run(args.func(args)))
    except ConfigError as exc:
        if exc.path is None and exc.key is not None and getattr(args, "config", None):
            # Raised past the loading (the control socket's path): add the file.
            message = str(exc).removeprefix(f"key '{exc.key}': ")
            exc = ConfigError(message, path=args.config, key=exc.key)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceDirectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
