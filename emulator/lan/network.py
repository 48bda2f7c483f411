"""A simulated office network in one process: printers, other SNMP hosts, silent addresses.

Theory of operation
-------------------
:func:`emulator.lan.plan.plan_lan` decides what sits on each address; :class:`EmulatedLan`
starts it. Every printer is an :class:`EmulatedDevice` with its own SNMP agent and port
9100 bound to its own loopback address (Linux routes all of 127.0.0.0/8 to ``lo``, so
127.0.1.17 needs no set-up), all on the same SNMP port, as on a real network where
every printer answers on 161. A share of the printers also runs its Device Direct
agent against a communication server (the combination model). Before the network
opens, each printer lives ``days_of_use`` days, so meters and supply levels differ
from printer to printer.

Port 0 means "a free port": the first address binds port 0 and every other host then
binds the port it got; if that port is taken on another address, the whole start is
retried with a fresh port (a few times).

Each printer can also serve its embedded web pages (:mod:`emulator.lan.web`) on its
address, one TCP port for all (``web_port``; -1, the default here, for none).

Everything runs on one event loop; many printers per process are cheap because a
printer does nothing between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import resource
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from device_direct.agent import Agent
from device_direct.clock import Clock, SystemClock
from device_direct.config import AgentConfig, DeviceConfig, ServerConfig
from device_direct.model import PowerState
from emulator.errors import EmulatorError
from emulator.jetdirect import JetDirectConfig, JetDirectServer
from emulator.lan.hosts import LanHostError, SilentAddress, StaticSnmpHost, reject_write
from emulator.lan.multihome import MultiHomedSnmp
from emulator.lan.plan import HostKind, HostPlan, LanPlan, LanSpec, plan_lan
from emulator.lan.web import LanPrinterHost, start_printer_web, stop_printer_web
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.network_cut import NetworkLink
from emulator.snmp import Community, SnmpAgent, SnmpAgentConfig, SnmpAgentError
from emulator.snmp.instrum import LiveMibInstrum
from emulator.web import PrinterWebServer

log = logging.getLogger("emulator.lan")

_PORT_ATTEMPTS = 4
# Descriptors the process needs besides the hosts' sockets: stdio, the event loop's,
# the SNMP engine's, imported modules' files, an agent's connection and database.
_OTHER_FILES = 64
_FILES_PER_AGENT = 4


class LanStartError(EmulatorError):
    """The simulated LAN could not start (address or port unavailable); says which."""


@dataclass(frozen=True, slots=True)
class LanAgentOptions:
    """Where the printers that run Device Direct upload to."""

    server_url: str
    ca_bundle: Path
    # One single-use key per printer with an agent, in address order (the server's
    # keys are single-use); none when the agents' identities are already on disk.
    registration_keys: tuple[str, ...] = ()
    server_name: str = ""  # TLS name of the server ("" -> the URL's host)
    state_dir: Path | None = None  # the agents' data directories live under it


@dataclass(frozen=True, slots=True)
class LanOptions:
    spec: LanSpec
    snmp_port: int = 161  # 0: a free port, the same on every address
    jetdirect_port: int = 9100  # 0: likewise
    community: str = "public"
    days_of_use: int = 30
    agents: LanAgentOptions | None = None
    web_port: int = -1  # each printer's web pages (emulator/web); 0: a free port; -1: none

    def __post_init__(self) -> None:
        if not -1 <= self.web_port <= 65535:
            raise ValueError(f"web_port must be -1 (none) or 0..65535, got {self.web_port}")
        if not 0 <= self.snmp_port <= 65535 or not 0 <= self.jetdirect_port <= 65535:
            raise ValueError("ports must be 0..65535")
        if not 0 <= self.days_of_use <= 3650:
            raise ValueError(f"days_of_use must be 0..3650, got {self.days_of_use}")
        if self.spec.agents > 0 and self.agents is None:
            raise ValueError("a share of printers with agents needs the server options")


def open_files_needed(options: LanOptions) -> int:
    """File descriptors the LAN holds open: a UDP socket per address, a port 9100 and
    a web listener per printer, a few per Device Direct agent, and the process's own."""
    spec = options.spec
    per_printer = 2 if options.web_port < 0 else 3
    agents = round(spec.printers * spec.agents)
    return (spec.printers * per_printer + spec.non_printers + spec.silent
            + agents * _FILES_PER_AGENT + _OTHER_FILES)


def check_open_files(options: LanOptions) -> None:
    """LanStartError, at once, when the LAN needs more descriptors than the process may
    open (``ulimit -n``): binding would otherwise run for minutes before it fails."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = open_files_needed(options)
    if limit != resource.RLIM_INFINITY and needed > limit:
        raise LanStartError(
            f"{options.spec.printers} printers, {options.spec.non_printers} other hosts and "
            f"{options.spec.silent} silent addresses need about {needed} open files; this "
            f"process may open {limit} (ulimit -n): ask for fewer or raise the limit")


def _port_taken(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a bind refused because the port is in use."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return True
        cause = cause.__cause__
    return False


def gateway_of(net: ipaddress.IPv4Network) -> str:
    """The LAN's router: the last host address of the block (hosts fill it from the start)."""
    return str(net.broadcast_address - 1) if net.prefixlen < 31 else ""


class LanPrinter:
    """One printer of the LAN: the model, its SNMP agent, its port 9100, maybe its agent."""

    def __init__(self, plan: HostPlan, *, clock: Clock, options: LanOptions) -> None:
        self.plan = plan
        self.address = plan.address
        net = options.spec.network
        self.device = EmulatedDevice(
            load_profile(plan.profile), serial=plan.serial, clock=clock, rng_seed=plan.seed,
            state_dir=None, ipv4=plan.address, hostname=f"prn-{plan.address.replace('.', '-')}",
            domain="lan.example", subnet_mask=str(net.netmask), gateway=gateway_of(net))
        self.snmp = SnmpAgent(self.device, clock=clock, config=SnmpAgentConfig(
            host=plan.address, port=options.snmp_port,
            communities=(Community(options.community),)))
        self.jetdirect = JetDirectServer(self.device, clock=clock, config=JetDirectConfig(
            host=plan.address, port=options.jetdirect_port, firmware_by_print_job=False))
        self.agent: Agent | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self.network = NetworkLink()  # its cable (emulator.network_cut)
        self.web: PrinterWebServer | None = None
        self._web_host: LanPrinterHost | None = None

    async def start_web(self, port: int, clock: Clock, state_dir: Path | None) -> int:
        """Serve this printer's web pages on its address; returns the port."""
        self.web, self._web_host = await start_printer_web(self, clock=clock, port=port,
                                                           state_dir=state_dir)
        return self.web.port

    def live(self, days: int, clock: Clock) -> None:
        """Run ``days`` days of use ending yesterday (device-local day = UTC here)."""
        today = clock.now().date()
        for back in range(days, 0, -1):
            self.device.run_day(today - timedelta(days=back))

    async def start(self, snmp: MultiHomedSnmp, snmp_port: int) -> int:
        """Answer SNMP through the LAN's engine, open port 9100; returns the SNMP port."""
        device, network = self.device, self.network
        port = snmp.add(self.address, snmp_port, self.snmp.instrum,
                        lambda: device.power is not PowerState.OFF and network.up,
                        v1_only=self.plan.v1_only)
        await self.jetdirect.start()
        return port

    def start_agent(self, options: LanAgentOptions, key: str | None, state_root: Path,
                    clock: Clock) -> None:
        """Boot this printer's Device Direct agent (a participant of a virtual clock)."""
        data_dir = state_root / self.plan.serial
        config = AgentConfig(
            server=ServerConfig(url=options.server_url, ca_bundle=options.ca_bundle,
                                server_name=options.server_name, registration_key=key),
            device=DeviceConfig(data_dir=data_dir), source="python -m emulator lan")
        self.run_agent(Agent(config, self.device, clock=clock,
                             rng=random.Random(self.plan.seed)), clock)

    @property
    def agent_running(self) -> bool:
        return self._agent_task is not None and not self._agent_task.done()

    def run_agent(self, agent: Agent, clock: Clock) -> None:
        """Run ``agent`` as this printer's agent (the web pages' restart after a change)."""
        self.agent = agent
        register, unregister = getattr(clock, "register", None), getattr(clock, "unregister",
                                                                          None)
        if register is not None:
            register()

        async def run() -> None:
            try:
                await agent.run()
            finally:
                if unregister is not None:
                    unregister()

        self._agent_task = asyncio.create_task(run())

    async def stop_agent_task(self) -> None:
        """Stop the agent's task (the printer keeps answering)."""
        task, self._agent_task = self._agent_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop(self) -> None:
        web, host, self.web, self._web_host = self.web, self._web_host, None, None
        if web is not None and host is not None:
            await stop_printer_web(web, host)
        await self.stop_agent_task()
        await self.jetdirect.stop()


class EmulatedLan:
    """Start and stop every host of a planned LAN. ``async with EmulatedLan(...)`` works."""

    def __init__(self, options: LanOptions, *, clock: Clock | None = None) -> None:
        self.options = options
        self.clock: Clock = clock or SystemClock()
        self.plan: LanPlan = plan_lan(options.spec)
        self.printers: list[LanPrinter] = []
        self.others: list[StaticSnmpHost] = []
        self.silent: list[SilentAddress] = []
        self.snmp_port = options.snmp_port
        self.jetdirect_port = options.jetdirect_port
        self.web_port: int | None = None if options.web_port < 0 else options.web_port
        self._tmp: Any = None
        self._snmp: MultiHomedSnmp | None = None

    async def __aenter__(self) -> EmulatedLan:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def printer_at(self, address: str) -> LanPrinter:
        for p in self.printers:
            if p.address == address:
                return p
        raise KeyError(address)

    async def start(self) -> None:
        """Bind every address (retrying with new ports when 0 was asked and one collides)."""
        check_open_files(self.options)
        o = self.options
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                await self._start_once()
                return
            except LanStartError:
                await self._stop_hosts()
                raise
            except (SnmpAgentError, LanHostError, EmulatorError, OSError) as exc:
                await self._stop_hosts()
                # Only a free port (0) that turns out taken on another address is worth
                # a fresh try; anything else (a fixed port in use, no descriptors left)
                # would fail the same way again.
                fixed = o.snmp_port and o.jetdirect_port and o.web_port != 0
                if fixed or not _port_taken(exc) or attempt == _PORT_ATTEMPTS:
                    raise LanStartError(f"the simulated LAN could not start: {exc}") from exc

    async def _start_once(self) -> None:
        o = self.options
        self.snmp_port, self.jetdirect_port = o.snmp_port, o.jetdirect_port
        self._snmp = snmp = MultiHomedSnmp(o.community)
        for plan in self.plan.of(HostKind.PRINTER):
            printer = LanPrinter(plan, clock=self.clock, options=LanOptions(
                spec=o.spec, snmp_port=self.snmp_port, jetdirect_port=self.jetdirect_port,
                community=o.community, days_of_use=o.days_of_use, agents=o.agents))
            printer.live(o.days_of_use, self.clock)
            self.printers.append(printer)
            self.snmp_port = await printer.start(snmp, self.snmp_port)
            self.jetdirect_port = printer.jetdirect.port
        if o.web_port >= 0:
            self.web_port = o.web_port
            state_root = o.agents.state_dir if o.agents is not None else None
            for printer in self.printers:
                self.web_port = await printer.start_web(
                    self.web_port, self.clock,
                    state_root / printer.plan.serial if state_root is not None else None)
        for i, plan in enumerate(self.plan.of(HostKind.OTHER)):
            host = StaticSnmpHost(plan.profile, plan.address, self.snmp_port, index=i)
            self.others.append(host)
            instrum = LiveMibInstrum(host.table_now, reject_write, frozenset(), frozenset())
            self.snmp_port = host.port = snmp.add(plan.address, self.snmp_port, instrum,
                                                  lambda: True)
        for plan in self.plan.of(HostKind.SILENT):
            hole = SilentAddress(plan.address, self.snmp_port)
            self.silent.append(hole)
            await hole.start()
            self.snmp_port = hole.port
        if o.agents is not None:
            root = o.agents.state_dir
            if root is None:
                import tempfile

                self._tmp = tempfile.TemporaryDirectory(prefix="emulated-lan-")
                root = Path(self._tmp.name)
            with_agent = [p for p in self.printers if p.plan.agent]
            keys = o.agents.registration_keys
            if keys and len(keys) < len(with_agent):
                raise LanStartError(f"{len(with_agent)} printers run an agent but only "
                                    f"{len(keys)} registration keys were given (keys are "
                                    "single-use: give one per agent)")
            for i, printer in enumerate(with_agent):
                printer.start_agent(o.agents, keys[i] if keys else None, root, self.clock)
        log.info("LAN up: %d printers, %d other hosts, %d silent on %s (snmp %d, 9100 %d, "
                 "web %s)", len(self.printers), len(self.others), len(self.silent),
                 o.spec.subnet, self.snmp_port, self.jetdirect_port, self.web_port)

    async def _stop_hosts(self) -> None:
        hosts: list[Any] = [*self.printers, *self.silent]
        self.printers, self.others, self.silent = [], [], []
        for host in hosts:
            with contextlib.suppress(Exception):
                await host.stop()
        snmp, self._snmp = self._snmp, None
        if snmp is not None:
            snmp.close()

    async def stop(self) -> None:
        """Stop every host and agent (safe to call twice)."""
        await self._stop_hosts()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def describe(self) -> dict[str, Any]:
        """What was started, for people (as a table) and scripts (as JSON)."""
        hosts: list[dict[str, Any]] = []
        for p in self.printers:
            ident = p.device.identity()
            hosts.append({"address": p.address, "kind": "printer", "profile": p.plan.profile,
                          "serial": p.plan.serial, "model": ident.model,
                          "snmp_port": self.snmp_port, "jetdirect_port": p.jetdirect.port,
                          "agent": p.agent is not None, "snmp_v1_only": p.plan.v1_only,
                          "web_port": p.web.port if p.web is not None else None})
        for h in self.others:
            hosts.append({"address": h.address, "kind": "other", "profile": h.kind,
                          "snmp_port": h.port})
        for s in self.silent:
            hosts.append({"address": s.address, "kind": "silent", "snmp_port": s.port})
        hosts.sort(key=lambda h: tuple(int(x) for x in h["address"].split(".")))
        return {"subnet": self.options.spec.subnet, "snmp_port": self.snmp_port,
                "jetdirect_port": self.jetdirect_port, "web_port": self.web_port,
                "community": self.options.community,
                "printers": len(self.printers), "non_printers": len(self.others),
                "silent": len(self.silent), "hosts": hosts}
