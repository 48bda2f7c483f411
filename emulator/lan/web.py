"""The printers' embedded web pages on the simulated LAN.

Theory of operation
-------------------
Each printer of :class:`emulator.lan.network.EmulatedLan` serves the same pages as
``python -m emulator device`` (:mod:`emulator.web`) on its own loopback address, all on
one TCP port (like its SNMP and port 9100). The pages need a
:class:`~emulator.web.server.PrinterHost`; :class:`LanPrinterHost` is that host for a
:class:`~emulator.lan.network.LanPrinter`: the printer's model, SNMP agent, port 9100
and (when it runs one) its Device Direct agent, which the QA page can stop, restart or
power-cycle like the device runner does.

What many printers share: the Jinja2 environment and its compiled templates (one per
process, :func:`emulator.web.server.environment`), and the event loop. What each
printer has: one small aiohttp application and listening socket, its sessions and its
admin password's hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_direct.agent import Agent
from emulator.network_cut import cut_network
from emulator.web import PrinterWebServer, with_saved_settings

if TYPE_CHECKING:
    from device_direct.clock import Clock
    from emulator.jetdirect import JetDirectServer
    from emulator.lan.network import LanPrinter
    from emulator.model.device import EmulatedDevice
    from emulator.snmp import SnmpAgent


class LanPrinterHost:
    """A LAN printer as the web pages see it (:class:`emulator.web.server.PrinterHost`)."""

    def __init__(self, printer: LanPrinter, clock: Clock, state_dir: Path | None) -> None:
        self.printer = printer
        self._clock = clock
        self._state_dir = state_dir
        self._tmp: Any = None

    @property
    def device(self) -> EmulatedDevice | None:
        return self.printer.device

    @property
    def snmp(self) -> SnmpAgent | None:
        return self.printer.snmp

    @property
    def jetdirect(self) -> JetDirectServer | None:
        return self.printer.jetdirect

    @property
    def agent(self) -> Agent | None:
        return self.printer.agent

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def state_dir(self) -> Path:
        """The agent's data directory's parent (settings saved on the pages go there);
        a temporary directory, made on first use, for a printer without an agent."""
        agent = self.printer.agent
        if agent is not None:
            return agent.data_dir
        if self._state_dir is not None:
            return self._state_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="emulated-lan-web-")
        return Path(self._tmp.name)

    async def stop_agent(self) -> None:
        await self.printer.stop_agent_task()

    async def restart_agent(self) -> None:
        """Restart the agent task from its data directory with the pages' settings."""
        agent = self.printer.agent
        if agent is None:
            return
        await self.printer.stop_agent_task()
        config = with_saved_settings(agent.config, self.state_dir)
        new = Agent(config, self.printer.device, clock=self._clock,
                    rng=random.Random(self.printer.plan.seed))
        self.printer.run_agent(new, self._clock)

    async def cut_network(self, seconds: float) -> None:
        """This printer off the LAN for ``seconds``: its SNMP (the shared engine's gate
        for its address), port 9100 and agent; the other printers keep answering."""
        p = self.printer
        await cut_network(p.network, self._clock, seconds, jetdirect=p.jetdirect,
                          stop_agent=self.stop_agent, restart_agent=self.restart_agent)

    async def power_off(self) -> None:
        await self.printer.stop_agent_task()
        await self.printer.device.power_off()

    async def power_on(self) -> None:
        await self.printer.device.power_on()
        if self.printer.agent is not None and not self.printer.agent_running:
            await self.restart_agent()

    def cleanup(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


async def start_printer_web(printer: LanPrinter, *, clock: Clock, port: int,
                            state_dir: Path | None) -> tuple[PrinterWebServer, LanPrinterHost]:
    """Serve ``printer``'s pages on its address, port ``port`` (0: a free one)."""
    host = LanPrinterHost(printer, clock, state_dir)
    server = PrinterWebServer(host, host=printer.address, port=port)
    await server.start()
    return server, host


async def stop_printer_web(server: PrinterWebServer, host: LanPrinterHost) -> None:
    await server.stop()
    host.cleanup()
    await asyncio.sleep(0)
