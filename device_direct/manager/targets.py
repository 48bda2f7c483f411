"""Scan targets: ``10.0.0.5``, ``host:1161``, ``10.0.0.0/24``, ``10.0.0.10-40``, ``@file``.

Sans-I/O except for ``@file``, which is read here (the path is the user's input). A
CIDR block yields its host addresses (a /31 or /32 all of them); a range may be
``a.b.c.10-40`` (last octet) or ``a.b.c.10-a.b.d.20``. Host names are kept as given and
resolved (to IPv4) when scanned; IPv6 targets are refused, as the SNMP edge speaks IPv4
only. A scan is capped at :data:`MAX_ADDRESSES` addresses so a typo such as
``10.0.0.0/8`` is refused rather than sent 16 million probes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from device_direct.manager.errors import TargetError

MAX_ADDRESSES = 65_536
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Target:
    """One address to probe."""

    host: str
    port: int = 161

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise TargetError(f"port must be 1..65535, got {self.port}")

    def __str__(self) -> str:
        return self.host if self.port == 161 else f"{self.host}:{self.port}"


def _split_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or "/" in port or "-" in port:
        return text, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TargetError(f"target {text!r}: port must be 1..65535")
    return host, int(port)


def _range(text: str) -> list[str]:
    first, _, last = text.partition("-")
    try:
        start = ipaddress.IPv4Address(first.strip())
        if "." not in last:
            if not last.strip().isdigit() or int(last) > 255:
                raise TargetError(f"target {text!r}: the end of a range is 0..255 or an address")
            end = ipaddress.IPv4Address(".".join([*first.split(".")[:3], last.strip()]))
        else:
            end = ipaddress.IPv4Address(last.strip())
    except ipaddress.AddressValueError as exc:
        raise TargetError(f"target {text!r}: {exc}") from None
    if end < start:
        raise TargetError(f"target {text!r}: the range ends before it starts")
    if int(end) - int(start) >= MAX_ADDRESSES:
        raise TargetError(f"target {text!r}: more than {MAX_ADDRESSES} addresses")
    return [str(ipaddress.IPv4Address(i)) for i in range(int(start), int(end) + 1)]


def expand_one(text: str, default_port: int = 161) -> list[Target]:
    """The targets one command-line word stands for (``@file`` excluded)."""
    word = text.strip()
    if not word:
        raise TargetError("empty target")
    if word.count(":") > 1 or word.startswith("["):  # every IPv6 literal has two colons
        raise TargetError(f"target {word!r}: IPv6 is not supported (the manager speaks "
                          "SNMP over IPv4): give IPv4 addresses, blocks, ranges or host names")
    host, port = _split_port(word, default_port)
    if "/" in host:
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError as exc:
            raise TargetError(f"target {word!r}: {exc}") from None
        if net.num_addresses > MAX_ADDRESSES + 2:
            raise TargetError(f"target {word!r}: {net.num_addresses} addresses; "
                              f"at most {MAX_ADDRESSES} per scan")
        hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
        return [Target(str(a), port) for a in hosts]
    if "-" in host and re.match(r"^\d+\.\d+\.\d+\.\d+-", host):
        return [Target(a, port) for a in _range(host)]
    try:
        return [Target(str(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    if not _HOST.match(host) or re.match(r"^[\d.]+$", host):
        raise TargetError(f"target {word!r} is not an address, host name, range or "
                          "CIDR block (examples: 10.0.0.5, 10.0.0.0/24, 10.0.0.10-40, "
                          "printer.example.com:1161, @targets.txt)")
    return [Target(host, port)]


def read_target_file(path: Path, default_port: int = 161) -> list[Target]:
    """Targets from a file: one a line, ``#`` comments and blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"@{path}: cannot read: {exc}") from None
    out: list[Target] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.extend(expand_one(line, default_port))
        except TargetError as exc:
            raise TargetError(f"{path}:{n}: {exc}") from None
    return out


def parse_targets(words: Iterable[str], default_port: int = 161) -> list[Target]:
    """All targets, duplicates dropped, in the order given; TargetError names the bad one."""
    seen: set[Target] = set()
    out: list[Target] = []
    for word in words:
        found = (read_target_file(Path(word[1:]), default_port) if word.startswith("@")
                 else expand_one(word, default_port))
        for t in found:
            if t not in seen:
                seen.add(t)
                out.append(t)
        if len(out) > MAX_ADDRESSES:
            raise TargetError(f"more than {MAX_ADDRESSES} addresses in one scan")
    if not out:
        raise TargetError("no targets to scan")
    return out
