"""What the agent's helpers may use of the agent: the :class:`AgentHost` protocol.

The action runner (``actions.py``) works for the agent (``agent.py``) and needs a few of
its parts: the clock, the config, the model, the outbox, a way to queue and flush a
payload. It takes them through this protocol instead of importing the agent, so the
two modules do not import each other: ``agent`` imports ``actions``, and both import
this module. :class:`device_direct.agent.Agent` satisfies it (a type checker proves it
where the agent hands itself to the runner).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from device_direct.audit import AuditLog
    from device_direct.clock import Clock
    from device_direct.config import AgentConfig
    from device_direct.core.payload import Trigger
    from device_direct.firmware import FirmwareUpdater
    from device_direct.identity import IdentityStore
    from device_direct.model import DeviceModel
    from device_direct.outbox_store import OutboxStore
    from device_direct.transport import Transport


class HostStats(Protocol):
    """The agent's counters, as far as its helpers read them."""

    last_error: str


class AgentHost(Protocol):
    """The parts of the agent its helpers use."""

    config: AgentConfig
    model: DeviceModel
    clock: Clock
    rng: random.Random
    data_dir: Path
    identity: IdentityStore
    outbox: OutboxStore
    audit: AuditLog
    firmware: FirmwareUpdater

    @property
    def stats(self) -> HostStats: ...

    def send_now(self, trigger: Trigger = "on-demand") -> None: ...

    def status(self) -> dict[str, Any]: ...

    def proxy_info(self) -> dict[str, Any]: ...

    async def queue_payload(self, trigger: Trigger) -> str | None: ...

    async def flush(self, transport: Transport) -> bool: ...
