"""Which event loop an emulator process runs on (``--loop auto|uvloop|asyncio``).

The fleet's default is auto: uvloop when it is installed, else asyncio's own. The
reference server's default is asyncio (``server run --loop``), for the TLS alerts of
refused handshakes (``emulator/server/tls_listener.py``); uvloop measured no cheaper there.

A fleet is thousands of agents on one loop in one process, and it is CPU-bound: the
loop's own work (scheduling, sockets, the TLS transport of every daily connection) is a
large share of each device-day. uvloop (libuv, with its TLS transport in Cython) does
that work with about an eighth less CPU per device-day than asyncio's pure-Python
selector loop and ``sslproto`` (``bench/fleet_bench.py``). The agents are the same code
on either loop: they use only the asyncio API.

The on-device module never needs uvloop; it is in the ``emulator`` extra. ``--loop
asyncio`` runs a fleet on the standard loop, to compare or to rule the loop out.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopName = Literal["auto", "uvloop", "asyncio"]
LOOP_NAMES: tuple[LoopName, ...] = ("auto", "uvloop", "asyncio")


class LoopUnavailable(RuntimeError):
    """``--loop uvloop`` was asked for and uvloop is not installed."""


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(name: LoopName) -> Literal["uvloop", "asyncio"]:
    """The loop ``name`` means here: ``auto`` is uvloop when installed."""
    if name == "asyncio":
        return "asyncio"
    if uvloop_installed():
        return "uvloop"
    if name == "uvloop":
        raise LoopUnavailable("--loop uvloop: uvloop is not installed "
                              "(pip install 'device-direct[emulator]')")
    return "asyncio"


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner`; None means asyncio's default loop."""
    if resolve(name) == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


def run(main: Coroutine[Any, Any, T], loop: LoopName = "auto") -> T:
    """:func:`asyncio.run` on the chosen loop."""
    try:
        factory = loop_factory(loop)
    except LoopUnavailable:
        main.close()  # never awaited: say so quietly, not with a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
