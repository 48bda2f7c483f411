"""What the fault-injecting TCP proxy does to a connection (sans-I/O).

Theory of operation
-------------------
A :class:`NetFaults` value says how the network between devices and server misbehaves
right now: refuse new connections (``cut``), accept and never forward (``blackhole``),
delay every chunk (``latency_s``), limit throughput (``bandwidth_bps``), or reset a
connection once ``reset_after_bytes`` bytes went upstream (mid-upload). It is
immutable; the proxy swaps in a new value when a scenario changes it, and a connection
reads the value current when each chunk arrives.

:class:`ChunkPlan` turns a value and a chunk into a decision (forward how many bytes
after how long, then reset or not), so the byte arithmetic is tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NetFaults:
    """The network's misbehaviour; the default is a healthy network."""

    cut: bool = False  # new connections are refused (reset at once)
    blackhole: bool = False  # connections are accepted, nothing is forwarded
    latency_s: float = 0.0  # added before each chunk, both directions
    bandwidth_bps: int = 0  # bytes per second per direction; 0 = unlimited
    reset_after_bytes: int | None = None  # reset once this many bytes went upstream

    def __post_init__(self) -> None:
        if self.latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {self.latency_s}")
        if self.bandwidth_bps < 0:
            raise ValueError(f"bandwidth_bps must be >= 0, got {self.bandwidth_bps}")
        if self.reset_after_bytes is not None and self.reset_after_bytes < 0:
            raise ValueError(f"reset_after_bytes must be >= 0, got {self.reset_after_bytes}")

    @property
    def healthy(self) -> bool:
        return self == NetFaults()


@dataclass(frozen=True, slots=True)
class ChunkDecision:
    forward: int  # how many bytes of the chunk to pass on
    delay_s: float  # wait this long first
    reset: bool  # then reset the connection


def plan_chunk(faults: NetFaults, *, size: int, upstream: bool,
               sent_upstream: int) -> ChunkDecision:
    """Decide what happens to a chunk of ``size`` bytes.

    ``sent_upstream`` counts bytes this connection already passed towards the server.
    """
    delay = faults.latency_s
    if faults.bandwidth_bps:
        delay += size / faults.bandwidth_bps
    if upstream and faults.reset_after_bytes is not None:
        room = faults.reset_after_bytes - sent_upstream
        if room <= size:
            return ChunkDecision(forward=max(0, room), delay_s=delay, reset=True)
    return ChunkDecision(forward=size, delay_s=delay, reset=False)
