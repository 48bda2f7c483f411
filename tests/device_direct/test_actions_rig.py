"""Shared set-up for the action and firmware tests (no tests in here).

A :class:`Rig` is a reference server over real TLS, an emulated MFP with its state on
disk and an agent, all on one virtual clock. The tests drive the agent step by step
(``sync``, ``run_background``) instead of its loop, so each step's effect is checked
right after it; ``restart`` builds a new agent on the same data directory, as a reboot
of the device's software does. :class:`PowerCut` is a BaseException: nothing in the
agent catches it, so raising it mid-step is what a power cut does to the process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from device_direct.agent import Agent
from device_direct.config import AgentConfig, load_config
from device_direct.model import DeviceModel
from device_direct.transport import Transport
from emulator.clock import VirtualClock
from emulator.model.device import EmulatedDevice
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_device, write_agent_config

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


TransportFactory = Callable[[Agent], Transport]


class PowerCut(BaseException):
    """The power went off: unwinds the agent like a dead process."""


class CutModel:
    """An emulated device that loses power at a chosen command (before or after it)."""

    def __init__(self, device: EmulatedDevice) -> None:
        self.device = device
        self.cut_at: str | None = None  # e.g. "boot_bank:before", "commit_bank:after"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.device, name)
        if not callable(attr) or name not in _CUTTABLE:
            return attr

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.cut_at == f"{name}:before":
                self._cut()
            result = await attr(*args, **kwargs)
            if self.cut_at == f"{name}:after":
                self._cut()
            return result

        return wrapped

    @property
    def power(self) -> Any:
        return self.device.power

    def _cut(self) -> None:
        self.cut_at = None
        self.device.power_loss()
        raise PowerCut


_CUTTABLE = frozenset({"reboot", "print_configuration_report", "write_inactive_bank",
                       "boot_bank", "commit_bank", "rollback_bank"})


@dataclass
class Rig:
    tmp: Path
    server: ReferenceServer
    clock: VirtualClock
    device: EmulatedDevice
    model: CutModel
    config: AgentConfig
    agent: Agent
    transport_factory: TransportFactory | None = None

    @property
    def device_id(self) -> str:
        device_id = self.agent.identity.device_id
        assert device_id is not None
        return device_id

    def restart(self) -> Agent:
        """A new agent on the same data directory (the device's software restarted)."""
        self.agent = Agent(self.config, cast(DeviceModel, self.model), clock=self.clock,
                           rng=random.Random(2), transport_factory=self.transport_factory)
        self.agent.firmware.on_boot()
        self.agent.actions.on_boot(self.clock.now())
        return self.agent

    async def power_on_and_restart(self) -> Agent:
        """Power comes back: the device boots, then its agent starts."""
        await self.device.power_on()
        return self.restart()

    def results(self) -> dict[str, dict[str, Any]]:
        """Server-side actions of this device by id: result status and detail."""
        return {a["id"]: a for a in self.server.storage.actions(self.device_id)}

    def enqueue(self, type_: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
        return self.server.enqueue_action(self.device_id, type_, params, **kw)


async def make_rig(
    tmp: Path, server: ReferenceServer, clock: VirtualClock, *, extra: str = "",
    transport_factory: TransportFactory | None = None, serial: str = "ACT0001",
    tls_library: str = "system",
) -> Rig:
    """Server, device and a registered agent (first sync done)."""
    device = make_device(clock, tmp / "model", serial=serial)
    key = server.create_registration_key()
    path = write_agent_config(tmp / "agent.toml", server, tmp / "data", key=key, extra=extra,
                              tls_library=tls_library)
    config = load_config(path)
    model = CutModel(device)
    agent = Agent(config, cast(DeviceModel, model), clock=clock, rng=random.Random(1),
                  transport_factory=transport_factory)
    rig = Rig(tmp, server, clock, device, model, config, agent, transport_factory)
    agent.firmware.on_boot()
    agent.actions.on_boot(clock.now())
    assert await agent.sync("on-demand"), agent.stats.last_error
    return rig


def pem_setting(pem: bytes) -> str:
    """A TOML line pinning a firmware key (inline PEM)."""
    return f'firmware_public_key = """{pem.decode()}"""\n'
