"""Pulling a printer's network cable for a while: nothing on the network reaches it.

Theory of operation
-------------------
A :class:`NetworkLink` is the device's cable: up, or down until a time on the device's
clock. The device's faces consult it: the SNMP instrumentation drops every request
while the link is down (as it does when the power is off: the manager's snmpget times
out), port 9100 stops listening and drops its open connections (a client's connect
fails; loopback cannot swallow a TCP SYN without a firewall, so "refused" stands in
for "no answer"), and the Device Direct agent is stopped (its task, not its data).
:func:`cut_network` does all of that, sleeps on the device's clock (a virtual clock
jumps over the cut) and brings everything back: port 9100 listens again on the same
port, SNMP answers, the agent restarts from its data directory as after a boot.

The printer's own web pages stay reachable: they are the emulator's control surface
(the QA page that started the cut shows the device meanwhile).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from device_direct.clock import Clock
    from emulator.jetdirect import JetDirectServer

MAX_CUT_S = 24 * 3600


class NetworkCutError(EmulatorError):
    """A cut that cannot be made (already cut, bad duration); says which."""


class NetworkLink:
    """Whether the device is on the network (see module doc)."""

    def __init__(self) -> None:
        self.down_until: datetime | None = None
        self.cuts = 0

    @property
    def up(self) -> bool:
        return self.down_until is None


async def cut_network(link: NetworkLink, clock: Clock, seconds: float, *,
                      jetdirect: JetDirectServer | None,
                      stop_agent: Callable[[], Awaitable[None]],
                      restart_agent: Callable[[], Awaitable[None]]) -> None:
    """Cut the network for ``seconds`` of the device's clock; returns when it is back.

    Cancelled (the device stops meanwhile): the link is marked up again and nothing is
    restarted; the device's own stop closes the rest."""
    if not 0 < seconds <= MAX_CUT_S:
        raise NetworkCutError(f"a network cut lasts 1 s..24 h, got {seconds} s")
    if not link.up:
        raise NetworkCutError(f"the network is already cut until {link.down_until}")
    link.down_until = clock.now() + timedelta(seconds=seconds)
    link.cuts += 1
    try:
        await stop_agent()
        if jetdirect is not None:
            await jetdirect.pause()
        await clock.sleep(seconds)
    finally:
        link.down_until = None
    if jetdirect is not None:
        await jetdirect.resume()
    await restart_agent()
