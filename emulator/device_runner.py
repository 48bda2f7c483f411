"""One emulated MFP on the network: SNMP agent, port 9100 and its Device Direct agent.

``python -m emulator device --profile office-color [--serial S] [--snmp-port 0]
[--jetdirect-port 0] [--server URL --ca FILE --registration-key KEY | --no-agent]
[--state-dir DIR]`` starts the device on the system clock, prints one line per port
and then one JSON line with everything a script needs, and serves until SIGINT or
SIGTERM, when it stops the agent, closes both ports and exits 0.

:class:`DeviceRunner` is the same thing for code: ``await start()``, read the ports,
``await stop()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from device_direct.agent import Agent
from device_direct.clock import Clock, SystemClock
from device_direct.config import AgentConfig, DeviceConfig, ServerConfig
from device_direct.errors import ConfigError
from emulator.closed_output import run_with_closed_output_quiet
from emulator.device_control import serve_control
from emulator.errors import EmulatorError, ProfileError, StateStorageError
from emulator.jetdirect import JetDirectConfig, JetDirectServer
from emulator.jetdirect.dlm_install import dlm_installer
from emulator.jetdirect.server import FirmwareHandler, reject_firmware
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.network_cut import NetworkLink, cut_network
from emulator.snmp import Community, SnmpAgent, SnmpAgentConfig, UsmUser
from emulator.web import PrinterWebServer, with_saved_settings

log = logging.getLogger("emulator.device")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUNTIME = 3


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """Where the Device Direct agent uploads to."""

    server_url: str
    ca_bundle: Path
    registration_key: str | None = None
    server_name: str = ""
    # The agent's zone (its daily upload time); None: where the printer stands.
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    profile: str = "office-color"
    serial: str = "EMU0000001"
    seed: int = 1
    host: str = "127.0.0.1"
    snmp: SnmpAgentConfig = field(default_factory=lambda: SnmpAgentConfig(port=0))
    jetdirect: JetDirectConfig = field(default_factory=lambda: JetDirectConfig(port=0))
    agent: AgentOptions | None = None
    state_dir: Path | None = None
    # Ed25519 public key (PEM) that DLM firmware sent to port 9100 must be signed with;
    # without it firmware by print job is refused.
    firmware_key: str | None = None
    control_port: int = 0  # the QA control API (127.0.0.1 only); 0: any free port
    web_port: int | None = 0  # the embedded web pages (emulator/web); None: none
    admin_password: str | None = None  # their admin login; None: the serial number
    # A used printer: days of its own use simulated before it starts (None: the
    # profile's [history] age_days). Only a new state is aged.
    age_days: int | None = None
    # Where the printer stands (IANA zone): its working hours, public holidays and the
    # history of age_days, and its agent's upload time. None: the profile's zone.
    time_zone: str | None = None

    def __post_init__(self) -> None:
        if not self.serial or not self.serial.isprintable() or len(self.serial) > 32:
            raise ValueError(f"serial must be 1..32 printable characters, got {self.serial!r}")
        if self.age_days is not None and not 0 <= self.age_days <= 7320:
            raise ValueError(f"--age-days must be 0..7320, got {self.age_days}")


class DeviceRunner:
    """Runs the device, its two ports and (optionally) its Device Direct agent."""

    def __init__(self, options: DeviceOptions, *, clock: Clock | None = None,
                 on_firmware: FirmwareHandler = reject_firmware) -> None:
        self.options = options
        self.clock: Clock = clock or SystemClock()
        self._on_firmware = on_firmware
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.device: EmulatedDevice | None = None
        self.snmp: SnmpAgent | None = None
        self.jetdirect: JetDirectServer | None = None
        self.agent: Agent | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self.web: PrinterWebServer | None = None
        self.network = NetworkLink()  # the cable the QA page can pull (network_cut)

    @property
    def state_dir(self) -> Path:
        if self.options.state_dir is not None:
            return self.options.state_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="emulated-device-")
        return Path(self._tmp.name)

    async def start(self) -> None:
        """Build the device and open its ports; start the agent when configured."""
        o = self.options
        state = self.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateStorageError(f"{state}: cannot use as the device's state directory "
                                    f"(--state-dir): {exc}") from exc
        self.device = EmulatedDevice(load_profile(o.profile), serial=o.serial, clock=self.clock,
                                     rng_seed=o.seed, state_dir=state / "model",
                                     age_days=o.age_days, time_zone=o.time_zone)
        self.snmp = SnmpAgent(self.device, clock=self.clock, config=o.snmp,
                              settings_path=state / "snmp-settings.json")
        on_firmware = self._on_firmware
        if on_firmware is reject_firmware and o.firmware_key is not None:
            on_firmware = dlm_installer(self.device, o.firmware_key, self.clock)
        self.snmp.reachable = lambda: self.network.up
        self.jetdirect = JetDirectServer(self.device, clock=self.clock, config=o.jetdirect,
                                         on_firmware=on_firmware)
        try:
            await self.snmp.start()
            await self.jetdirect.start()
            self._start_agent()
            if o.web_port is not None:
                self.web = PrinterWebServer(self, host=o.host, port=o.web_port,
                                            admin_password=o.admin_password)
                await self.web.start()
        except BaseException:
            await self.stop()
            raise

    def _start_agent(self) -> None:
        """A new agent from its data directory, as the device's boot starts it."""
        o = self.options
        if o.agent is None:
            return
        assert self.device is not None
        config = _agent_config(o.agent, self.state_dir / "device-direct",
                               self.device.time_zone)
        config = with_saved_settings(config, self.state_dir)  # changed on the web pages
        self.agent = Agent(config, self.device, clock=self.clock, rng=random.Random(o.seed))
        self._agent_task = asyncio.create_task(self.agent.run())

    async def _stop_agent(self) -> None:
        task, self._agent_task = self._agent_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop_agent(self) -> None:
        """Stop the agent task (the device stays up)."""
        await self._stop_agent()

    async def restart_agent(self) -> None:
        """Restart the agent task from its data directory, as a boot does."""
        await self._stop_agent()
        self._start_agent()

    async def cut_network(self, seconds: float) -> None:
        """SNMP, port 9100 and the agent off the network for ``seconds`` of the device's
        clock, then back (:func:`emulator.network_cut.cut_network`)."""
        await cut_network(self.network, self.clock, seconds, jetdirect=self.jetdirect,
                          stop_agent=self.stop_agent, restart_agent=self.restart_agent)

    async def power_off(self) -> None:
        """An orderly power off: the agent stops, then the device."""
        assert self.device is not None
        await self._stop_agent()
        await self.device.power_off()

    async def power_on(self) -> None:
        """Power on: the device boots, then its agent starts from what is on disk."""
        assert self.device is not None
        await self.device.power_on()
        if self._agent_task is None:
            self._start_agent()

    async def power_loss(self) -> None:
        """The plug is pulled mid-whatever, then put back: nothing in memory survives."""
        assert self.device is not None
        await self._stop_agent()
        self.device.power_loss()
        await self.power_on()

    def describe(self) -> dict[str, Any]:
        """What a script needs to talk to the device (the JSON line of the CLI)."""
        assert self.device is not None and self.snmp is not None and self.jetdirect is not None
        return {
            "serial": self.device.serial, "profile": self.device.profile.name,
            "host": self.options.host, "snmp_port": self.snmp.port,
            "jetdirect_port": self.jetdirect.port, "agent": self.agent is not None,
            "state_dir": str(self.state_dir),
            "web_port": self.web.port if self.web is not None else None,
        }

    async def stop(self) -> None:
        """Stop the agent, close the ports (safe to call twice)."""
        if self.web is not None:
            await self.web.stop()
            self.web = None
        await self._stop_agent()
        if self.jetdirect is not None:
            await self.jetdirect.stop()
        if self.snmp is not None:
            await self.snmp.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def agent_error(self) -> BaseException | None:
        """The exception the agent task ended with, if it ended."""
        task = self._agent_task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()


def _agent_config(a: AgentOptions, data_dir: Path, printer_zone: str) -> AgentConfig:
    return AgentConfig(
        server=ServerConfig(url=a.server_url, ca_bundle=a.ca_bundle,
                            server_name=a.server_name, registration_key=a.registration_key),
        device=DeviceConfig(data_dir=data_dir, time_zone=a.time_zone or printer_zone),
        source="python -m emulator device")


# -- command line -------------------------------------------------------------------------


def add_device_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``device`` to the ``python -m emulator`` sub-commands; returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "device", help="run one emulated MFP (SNMP, port 9100, Device Direct agent)",
        description="Run one emulated MFP with its SNMP agent, its port 9100 and its Device "
                    "Direct agent on the system clock. Prints one line per port and a JSON "
                    "line, then serves until SIGINT/SIGTERM.")
    p.add_argument("--profile", default="office-color", help="device profile (name or file)")
    p.add_argument("--serial", default="EMU0000001", help="serial number")
    p.add_argument("--seed", type=int, default=1, help="random seed of the model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--snmp-port", type=int, default=0, help="UDP port (0: any free port)")
    p.add_argument("--jetdirect-port", type=int, default=0, help="TCP port (0: any free port)")
    p.add_argument("--community", default="public", help="read-only community")
    p.add_argument("--write-community", default="private",
                   help="read-write community ('' for none)")
    p.add_argument("--v3-user", help="SNMPv3 user (authPriv, SHA + AES, read-write)")
    p.add_argument("--v3-auth-key", help="its authentication pass phrase (8+ characters)")
    p.add_argument("--v3-priv-key", help="its privacy pass phrase (8+ characters)")
    p.add_argument("--no-firmware-by-print-job", action="store_true",
                   help="refuse DLM firmware files sent as print jobs")
    p.add_argument("--control-port", type=int, default=0,
                   help="QA control API port on 127.0.0.1 (default: any free port)")
    p.add_argument("--firmware-key", type=Path,
                   help="Ed25519 public key (PEM) DLM firmware on port 9100 must be signed "
                        "with (default: firmware by print job is refused)")
    p.add_argument("--web-port", type=int, default=0,
                   help="port of the embedded web pages (default: any free port; -1: none)")
    p.add_argument("--admin-password", help="admin password of the web pages "
                   "(default: the serial number)")
    p.add_argument("--server", help="communication server URL (https://...)")
    p.add_argument("--ca", type=Path, help="CA bundle that signed the server certificate")
    p.add_argument("--server-name", default="", help="TLS name of the server (default: URL host)")
    p.add_argument("--registration-key", help="one-time registration key")
    p.add_argument("--time-zone", help="where the printer stands (IANA name): its working "
                   "hours, public holidays and --age-days history, and its agent's upload "
                   "time (default: the profile's zone)")
    p.add_argument("--age-days", type=int, default=None, metavar="DAYS",
                   help="start as a used printer with DAYS days of its own use simulated "
                        "(meters, wear counters, supplies, fault history); default: the "
                        "profile's [history] age_days")
    p.add_argument("--no-agent", action="store_true", help="run without Device Direct")
    p.add_argument("--state-dir", type=Path, help="keep the device's state here "
                   "(default: a temporary directory, removed at exit)")
    return p


def options_from_args(args: argparse.Namespace) -> DeviceOptions:
    """Turn parsed arguments into options; ConfigError names the bad option."""
    def bad(option: str, message: str) -> ConfigError:
        return ConfigError(message, key=option)

    try:
        # A wrong --profile is a usage error, found before start.
        zone = args.time_zone or load_profile(args.profile).usage.timezone
    except ProfileError as exc:
        raise bad("--profile", str(exc)) from None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad("--time-zone", f"unknown IANA time zone {zone!r}") from None
    if args.no_agent and args.server:
        raise bad("--server", "give either --server (with --ca) or --no-agent, not both")
    if not args.no_agent and not args.server:
        raise bad("--server", "is required unless --no-agent is given")
    agent = None
    if args.server:
        if args.ca is None:
            raise bad("--ca", "is required with --server")
        agent = AgentOptions(server_url=args.server, ca_bundle=args.ca,
                             registration_key=args.registration_key,
                             server_name=args.server_name)
        _agent_config(agent, Path("."), zone)  # checks URL and name now, not at run time
    try:
        communities = [Community(args.community)]
        if args.write_community:
            communities.append(Community(args.write_community, write=True))
        users: tuple[UsmUser, ...] = ()
        if args.v3_user:
            if not args.v3_auth_key or not args.v3_priv_key:
                raise bad("--v3-user", "needs --v3-auth-key and --v3-priv-key")
            users = (UsmUser(args.v3_user, args.v3_auth_key, args.v3_priv_key, write=True),)
        snmp = SnmpAgentConfig(host=args.host, port=args.snmp_port,
                               communities=tuple(communities), users=users)
        jetdirect = JetDirectConfig(host=args.host, port=args.jetdirect_port,
                                    firmware_by_print_job=not args.no_firmware_by_print_job)
        firmware_key = None
        if args.firmware_key is not None:
            try:
                firmware_key = args.firmware_key.read_text(encoding="utf-8")
            except OSError as exc:
                raise bad("--firmware-key", f"cannot read {args.firmware_key}: {exc}") from None
        return DeviceOptions(profile=args.profile, serial=args.serial, seed=args.seed,
                             host=args.host, snmp=snmp, jetdirect=jetdirect, agent=agent,
                             state_dir=args.state_dir, firmware_key=firmware_key,
                             control_port=args.control_port,
                             web_port=None if args.web_port < 0 else args.web_port,
                             admin_password=args.admin_password,
                             age_days=args.age_days, time_zone=args.time_zone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run_device_cli(args: argparse.Namespace) -> int:
    """``python -m emulator device``: run until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = options_from_args(args)
    return asyncio.run(_serve(options))


async def _serve(options: DeviceOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = DeviceRunner(options)
    await runner.start()
    control: web.AppRunner | None = None
    try:
        control, control_port = await serve_control(runner, options.control_port)
        info = {**runner.describe(), "control_port": control_port}
        print(f"snmp udp {info['host']}:{info['snmp_port']}", flush=True)
        print(f"jetdirect tcp {info['host']}:{info['jetdirect_port']}", flush=True)
        print(f"control http 127.0.0.1:{control_port}", flush=True)
        print(json.dumps(info, sort_keys=True), flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        if control is not None:
            await control.cleanup()
        await runner.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m emulator.device_runner ...``: the same as ``python -m emulator device``."""
    def run() -> int:
        parser = argparse.ArgumentParser(prog="python -m emulator")
        add_device_parser(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["device", *(sys.argv[1:] if argv is None else argv)])
        try:
            return run_device_cli(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except EmulatorError as exc:  # a port in use, an unusable state directory
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        except KeyboardInterrupt:
            return 130

    return run_with_closed_output_quiet(run)


if __name__ == "__main__":
    sys.exit(main())
