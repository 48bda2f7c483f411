"""What a simulated office network holds: which address is which kind of host.

Sans-I/O: :func:`plan_lan` turns a :class:`LanSpec` into a :class:`LanPlan`, one
:class:`HostPlan` per address, the same plan for the same spec (the seed decides the
shuffle). Printers, non-printer SNMP hosts and silent addresses are spread through the
subnet in a seeded order, as on a real office network where the printers do not sit
in one block; discovery must find them wherever they are.

Profiles follow the mix by largest remainder (``office-color:70,office-mono:30`` over 10
printers gives exactly 7 and 3); a share ``agents`` of the printers also run their own
Device Direct agent (the combination model: one printer, two data paths); a share
``v1_only`` are old printers whose agent speaks SNMPv1 only.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from dataclasses import dataclass

from emulator.errors import EmulatorError

DEFAULT_MIX: tuple[tuple[str, int], ...] = (("office-color", 60), ("office-mono", 35),
                                            ("production", 5))
# Non-printer SNMP hosts, in the order they are handed out (emulator/lan/hosts.py).
OTHER_KINDS = ("switch", "linux-server", "ups", "nas", "access-point")


class LanSpecError(EmulatorError):
    """The LAN cannot be planned as asked (subnet too small, bad share); says why."""


class HostKind(enum.Enum):
    PRINTER = "printer"
    OTHER = "other"  # answers SNMP, but is not a printer
    SILENT = "silent"  # an address that never answers


@dataclass(frozen=True, slots=True)
class LanSpec:
    """How many of each host, where, and how they are set up."""

    printers: int
    subnet: str = "127.0.1.0/24"
    non_printers: int = 5
    silent: int = 20
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    agents: float = 0.0  # share of printers that also run their Device Direct agent
    v1_only: float = 0.0  # share of printers whose agent speaks SNMPv1 only (old ones)
    seed: int = 1
    serial_prefix: str = "LAN"

    def __post_init__(self) -> None:
        if self.printers < 0 or self.non_printers < 0 or self.silent < 0:
            raise LanSpecError("printers, non-printers and silent must be >= 0")
        if not 0.0 <= self.agents <= 1.0:
            raise LanSpecError(f"agents must be a share in [0, 1], got {self.agents}")
        if not 0.0 <= self.v1_only <= 1.0:
            raise LanSpecError(f"v1_only must be a share in [0, 1], got {self.v1_only}")
        if not self.mix or sum(w for _, w in self.mix) <= 0 or any(w < 0 for _, w in self.mix):
            raise LanSpecError("mix: needs at least one profile with a positive weight")
        if not self.serial_prefix.isalnum() or len(self.serial_prefix) > 8:
            raise LanSpecError("serial_prefix: 1..8 letters or digits")
        net = self.network
        if not net.is_loopback:
            raise LanSpecError(f"subnet {self.subnet} is not a loopback block (127.0.0.0/8): "
                               "the simulated LAN lives on this machine only")
        hosts = net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses
        wanted = self.printers + self.non_printers + self.silent
        if wanted > hosts:
            raise LanSpecError(f"subnet {self.subnet} has {hosts} host addresses; "
                               f"{wanted} are needed (printers + non-printers + silent)")

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(self.subnet, strict=False)
        except ValueError as exc:
            raise LanSpecError(f"subnet: {exc}") from None


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One address of the LAN and what sits there."""

    address: str
    kind: HostKind
    profile: str = ""  # printers: the device profile; others: the host kind
    serial: str = ""
    agent: bool = False
    seed: int = 0
    v1_only: bool = False  # printers: its SNMP agent answers SNMPv1 only


@dataclass(frozen=True, slots=True)
class LanPlan:
    spec: LanSpec
    hosts: tuple[HostPlan, ...]

    def of(self, kind: HostKind) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.kind is kind)


def split_by_mix(n: int, mix: tuple[tuple[str, int], ...]) -> list[str]:
    """``n`` profile names following the weights exactly (largest remainder)."""
    total = sum(w for _, w in mix)
    exact = [(name, n * w / total) for name, w in mix]
    counts = {name: int(share) for name, share in exact}
    left = n - sum(counts.values())
    for name, _share in sorted(exact, key=lambda e: (-(e[1] - int(e[1])), e[0]))[:left]:
        counts[name] += 1
    return [name for name, _ in mix for _ in range(counts[name])]


def plan_lan(spec: LanSpec) -> LanPlan:
    """Place every host of ``spec`` on an address of its subnet."""
    rng = random.Random(spec.seed)
    net = spec.network
    hosts = list(net.hosts()) if net.prefixlen < 31 else list(net)
    wanted = spec.printers + spec.non_printers + spec.silent
    # Use the first addresses of the block (a /24 with 75 hosts keeps .1-.75), shuffled.
    addresses = [str(a) for a in hosts[:wanted]]
    rng.shuffle(addresses)
    profiles = split_by_mix(spec.printers, spec.mix)
    rng.shuffle(profiles)
    with_agent = set(rng.sample(range(spec.printers), round(spec.printers * spec.agents)))
    old = round(spec.printers * spec.v1_only)
    # Drawn only when asked, so every plan without v1-only printers stays as it was.
    v1_only = set(rng.sample(range(spec.printers), old)) if old else set()
    plans: list[HostPlan] = []
    for i, profile in enumerate(profiles):
        plans.append(HostPlan(addresses[i], HostKind.PRINTER, profile,
                              serial=f"{spec.serial_prefix}{spec.seed % 1000:03d}{i:05d}",
                              agent=i in with_agent, seed=spec.seed * 100_003 + i,
                              v1_only=i in v1_only))
    base = spec.printers
    for j in range(spec.non_printers):
        plans.append(HostPlan(addresses[base + j], HostKind.OTHER,
                              OTHER_KINDS[j % len(OTHER_KINDS)], seed=j))
    base += spec.non_printers
    for k in range(spec.silent):
        plans.append(HostPlan(addresses[base + k], HostKind.SILENT))
    plans.sort(key=lambda h: ipaddress.IPv4Address(h.address))
    return LanPlan(spec, tuple(plans))
