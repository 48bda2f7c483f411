"""Proxy decisions without I/O: bypass lists, PAC answers, WPAD candidates, the route cache.

Everything here is pure: the shell (:mod:`device_direct.proxy`) resolves names, fetches
PAC files and runs them, then asks these functions and classes what to do.

* :func:`parse_bypass` / :func:`parse_no_proxy` turn a bypass list (config) or the
  ``NO_PROXY`` variable into a :class:`Bypass` that matches host names, domain suffixes
  and CIDR blocks.
* :func:`parse_pac_answer` reads what ``FindProxyForURL`` returned
  (``"PROXY a:3128; PROXY b:8080; DIRECT"``) into an ordered tuple of
  :class:`ProxyChoice`: the failover order.
* :func:`wpad_candidates` lists where to look for a PAC file: the DHCP option 252 URL
  first, then ``http://wpad.<domain>/wpad.dat`` walking up the device's domain, never as
  far as a public suffix (US-CERT TA16-144A: ``wpad.co.uk`` belongs to a stranger).
* :class:`RouteCache` remembers the answer and when it must be detected again.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from device_direct.errors import ConfigError, ProxyError

RouteSource = Literal["off", "manual", "env", "wpad-dhcp", "wpad-dns", "pac"]
# A host name: LDH labels; underscores are tolerated because real intranets use them.
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
# More labels than this in a device's domain is not a real network: stop walking.
MAX_WALK_LABELS = 10
DEFAULT_WPAD_PORT = 80


class ProxyDiscoveryError(ProxyError):
    """Automatic proxy discovery failed; ``reason`` says at which step.

    reason is one of: not-found, fetch, content-type, too-large, syntax, timeout,
    answer, missing-extra.
    """

    def __init__(self, message: str, *, reason: str, url: str | None = None) -> None:
        self.reason = reason
        self.url = url
        where = f" ({url})" if url else ""
        super().__init__(f"proxy discovery {reason}{where}: {message}")


# -- host names ----------------------------------------------------------------------------


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets: the form every rule compares."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_host_name(name: str) -> bool:
    """Whether ``name`` is a syntactically valid DNS name (not an address)."""
    name = normalise_host(name)
    if not name or len(name) > 253 or _ip(name) is not None:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


# -- bypass ----------------------------------------------------------------------------------


class RuleKind(enum.Enum):
    EXACT = "exact"  # that host only
    SUFFIX = "suffix"  # the domain and everything below it
    NETWORK = "network"  # an address inside the block
    LOCAL = "local"  # <local>: plain host names without a dot
    ALL = "all"  # *: every host


@dataclass(frozen=True, slots=True)
class BypassRule:
    """One entry of a bypass list: a host, a domain suffix or a network."""

    kind: RuleKind
    value: str = ""  # host or domain (normalised), or the network in CIDR form

    def __post_init__(self) -> None:
        if self.kind in (RuleKind.EXACT, RuleKind.SUFFIX) and not self.value:
            raise ValueError(f"a {self.kind.value} bypass rule needs a name")
        if self.kind is RuleKind.NETWORK:
            ipaddress.ip_network(self.value, strict=False)

    def matches(self, host: str, addresses: Sequence[str] = ()) -> bool:
        """Whether ``host`` (normalised) with its known ``addresses`` falls under this rule."""
        if self.kind is RuleKind.ALL:
            return True
        if self.kind is RuleKind.LOCAL:
            return "." not in host and ":" not in host and _ip(host) is None
        if self.kind is RuleKind.EXACT:
            return host == self.value
        if self.kind is RuleKind.SUFFIX:
            return host == self.value or host.endswith("." + self.value)
        network = ipaddress.ip_network(self.value, strict=False)
        for candidate in (host, *addresses):
            ip = _ip(candidate)
            if ip is not None and ip.version == network.version and ip in network:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Bypass:
    """Hosts that are reached directly, never through a proxy."""

    rules: tuple[BypassRule, ...] = ()

    def matches(self, host: str, addresses: Sequence[str] = ()) -> bool:
        """Whether ``host`` goes DIRECT. ``addresses``: what it resolved to, for CIDRs."""
        name = normalise_host(host)
        return any(rule.matches(name, addresses) for rule in self.rules)

    @property
    def needs_addresses(self) -> bool:
        """Whether a network rule exists, so the shell must resolve the host to decide."""
        return any(rule.kind is RuleKind.NETWORK for rule in self.rules)


def _rule(entry: str, *, names_are_suffixes: bool) -> BypassRule:
    text = entry.strip()
    if text == "*":
        return BypassRule(RuleKind.ALL)
    if text.lower() == "<local>":
        return BypassRule(RuleKind.LOCAL)
    if "/" in text:
        try:
            net = ipaddress.ip_network(normalise_host(text), strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not a CIDR block (like 10.0.0.0/8)") from None
        return BypassRule(RuleKind.NETWORK, str(net))
    bare = normalise_host(text)
    ip = _ip(bare)
    if ip is not None:
        return BypassRule(RuleKind.NETWORK, str(ipaddress.ip_network(ip)))
    suffix = names_are_suffixes
    for prefix in ("*.", "."):
        if bare.startswith(prefix):
            bare, suffix = bare[len(prefix) :], True
            break
    if not is_host_name(bare):
        raise ValueError(
            f"{entry!r} is not a host name, '.suffix', '*.suffix', address, CIDR, '<local>' or '*'"
        )
    return BypassRule(RuleKind.SUFFIX if suffix else RuleKind.EXACT, bare)


def parse_bypass(entries: Iterable[str], *, key: str = "proxy.bypass") -> Bypass:
    """The config's bypass list: ``host`` (that host only), ``.domain`` or ``*.domain``
    (the domain and below), ``10.0.0.0/8`` or an address, ``<local>``, ``*``.

    Raises :class:`ConfigError` naming ``key`` and the bad entry.
    """
    rules = []
    for entry in entries:
        try:
            rules.append(_rule(entry, names_are_suffixes=False))
        except ValueError as exc:
            raise ConfigError(str(exc), key=key) from None
    return Bypass(tuple(rules))


def parse_no_proxy(value: str) -> Bypass:
    """``NO_PROXY`` as curl and Python read it: comma- or space-separated; a name also
    covers everything below it; ``*`` is every host. Unreadable entries are skipped
    (an environment variable is not ours to reject)."""
    rules = []
    for entry in re.split(r"[,\s]+", value):
        if not entry:
            continue
        entry = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry  # host:port
        try:
            rules.append(_rule(entry, names_are_suffixes=True))
        except ValueError:
            continue
    return Bypass(tuple(rules))


# -- proxy choices -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """One way to the server: DIRECT, or an HTTP proxy reached with CONNECT."""

    host: str | None = None  # None: DIRECT
    port: int | None = None

    def __post_init__(self) -> None:
        if (self.host is None) != (self.port is None):
            raise ValueError("a proxy needs both host and port; DIRECT has neither")
        if self.host is not None:
            if not (is_host_name(self.host) or _ip(normalise_host(self.host)) is not None):
                raise ValueError(f"not a proxy host: {self.host!r}")
            if self.port is None or not 1 <= self.port <= 65535:
                raise ValueError(f"not a proxy port: {self.port!r}")

    @property
    def direct(self) -> bool:
        return self.host is None

    @property
    def hostport(self) -> str:
        """``host:port`` (IPv6 in brackets); empty for DIRECT."""
        if self.host is None:
            return ""
        host = normalise_host(self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str | None:
        """``http://host:port`` for the transport, None for DIRECT."""
        return None if self.host is None else f"http://{self.hostport}"

    @property
    def route(self) -> str:
        """``DIRECT`` or ``PROXY host:port`` (the payload's and the log's form)."""
        return "DIRECT" if self.host is None else f"PROXY {self.hostport}"


DIRECT = ProxyChoice()


def _proxy_from_hostport(text: str) -> ProxyChoice:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{text!r} is not host:port")
    return ProxyChoice(normalise_host(host), int(port))


def parse_pac_answer(answer: str | None) -> tuple[ProxyChoice, ...]:
    """``FindProxyForURL``'s answer as the failover order.

    ``PROXY``/``HTTP`` entries become proxies (tunnelled with CONNECT), ``DIRECT`` is
    direct; an empty or null answer means DIRECT. ``HTTPS`` (TLS to the proxy) and
    ``SOCKS`` entries are skipped: the transport speaks neither. Duplicates keep their
    first place. Raises :class:`ProxyDiscoveryError` (reason ``answer``) when nothing
    usable is left.
    """
    if answer is None or not answer.strip():
        return (DIRECT,)
    choices: list[ProxyChoice] = []
    skipped: list[str] = []
    for element in answer.split(";"):
        words = element.split()
        if not words:
            continue
        keyword = words[0].upper()
        try:
            if keyword == "DIRECT" and len(words) == 1:
                choice = DIRECT
            elif keyword in ("PROXY", "HTTP") and len(words) == 2:
                choice = _proxy_from_hostport(words[1])
            else:
                skipped.append(element.strip())
                continue
        except ValueError:
            skipped.append(element.strip())
            continue
        if choice not in choices:
            choices.append(choice)
    if not choices:
        raise ProxyDiscoveryError(
            f"FindProxyForURL answered {answer!r}: no PROXY host:port or DIRECT entry "
            f"the device can use (skipped: {', '.join(skipped) or 'all'})",
            reason="answer",
        )
    return tuple(choices)


# -- WPAD ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WpadCandidate:
    """A URL where a PAC file may be, and how it was found."""

    url: str
    source: Literal["wpad-dhcp", "wpad-dns"]


def dhcp_wpad_url(raw: str | None) -> str | None:
    """The DHCP option 252 value as a URL, or None if absent or not an http(s) URL.

    Servers often send the string with a trailing NUL (C-style) or newline: both go.
    """
    if raw is None:
        return None
    text = raw.rstrip("\x00 \t\r\n").lstrip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return text


def wpad_dns_names(domain: str, is_public_suffix: Callable[[str], bool]) -> tuple[str, ...]:
    """``wpad.<d>`` for ``d`` from ``domain`` upwards, stopping before a public suffix.

    ``corp.example.co.uk`` gives ``wpad.corp.example.co.uk`` and ``wpad.example.co.uk``
    but never ``wpad.co.uk``. A domain that is not a valid DNS name gives nothing.
    """
    name = normalise_host(domain)
    if not is_host_name(name):
        return ()
    labels = name.split(".")
    if len(labels) > MAX_WALK_LABELS:
        labels = labels[-MAX_WALK_LABELS:]
    names = []
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        if "." not in candidate or is_public_suffix(candidate):
            break
        names.append(f"wpad.{candidate}")
    return tuple(names)


def wpad_candidates(
    dhcp_url: str | None,
    domain: str,
    is_public_suffix: Callable[[str], bool],
    *,
    port: int = DEFAULT_WPAD_PORT,
) -> tuple[WpadCandidate, ...]:
    """Where to look for the PAC file, in order: option 252, then the DNS walk."""
    found: list[WpadCandidate] = []
    url = dhcp_wpad_url(dhcp_url)
    if url is not None:
        found.append(WpadCandidate(url, "wpad-dhcp"))
    suffix = "" if port == DEFAULT_WPAD_PORT else f":{port}"
    for name in wpad_dns_names(domain, is_public_suffix):
        found.append(WpadCandidate(f"http://{name}{suffix}/wpad.dat", "wpad-dns"))
    return tuple(found)


def pac_target(url: str) -> tuple[str, str]:
    """``(url, host)`` to hand to FindProxyForURL: scheme and host only, no path.

    The full URL would leak the device id in the path to whoever wrote the PAC file.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"not an absolute URL: {url!r}")
    host = normalise_host(parts.hostname)
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown}/", host


# -- the route cache ------------------------------------------------------------------------------

# Theory of operation. Detection is costly (DNS, HTTP, a JavaScript run) and its answer
# holds until the network changes, so it is cached:
#
#   EMPTY --detected--> FRESH --expired/network-changed/exhausted--> STALE --detected--> FRESH
#
# FRESH serves the cached failover list; a proxy that fails moves to the end of the list
# for ``penalty`` (as browsers keep a "bad proxy" list). When every entry has failed in a
# row the list is "exhausted" and the next request detects again. STALE also serves the
# old answer while the new detection runs, so a WPAD server that is down does not stop a
# working proxy from being used. Any pair missing from the table is a bug.


class CacheState(enum.Enum):
    EMPTY = "empty"
    FRESH = "fresh"
    STALE = "stale"


class CacheEvent(enum.Enum):
    DETECTED = "detected"
    EXPIRED = "expired"
    NETWORK_CHANGED = "network-changed"
    EXHAUSTED = "exhausted"


TRANSITIONS: dict[tuple[CacheState, CacheEvent], CacheState] = {
    (CacheState.EMPTY, CacheEvent.DETECTED): CacheState.FRESH,
    (CacheState.EMPTY, CacheEvent.NETWORK_CHANGED): CacheState.EMPTY,
    (CacheState.FRESH, CacheEvent.DETECTED): CacheState.FRESH,
    (CacheState.FRESH, CacheEvent.EXPIRED): CacheState.STALE,
    (CacheState.FRESH, CacheEvent.NETWORK_CHANGED): CacheState.STALE,
    (CacheState.FRESH, CacheEvent.EXHAUSTED): CacheState.STALE,
    (CacheState.STALE, CacheEvent.DETECTED): CacheState.FRESH,
    (CacheState.STALE, CacheEvent.EXPIRED): CacheState.STALE,
    (CacheState.STALE, CacheEvent.NETWORK_CHANGED): CacheState.STALE,
    (CacheState.STALE, CacheEvent.EXHAUSTED): CacheState.STALE,
}


def transition(state: CacheState, event: CacheEvent) -> CacheState:
    """The next cache state; a pair not in :data:`TRANSITIONS` raises ValueError."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(
            f"route cache: no transition from {state.value} on {event.value}"
        ) from None


@dataclass(frozen=True, slots=True)
class Detection:
    """The outcome of one detection: the failover list and how it was found."""

    choices: tuple[ProxyChoice, ...]
    source: RouteSource
    pac_url: str | None = None  # where the PAC file came from (auto mode)

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("a detection needs at least one choice (DIRECT counts)")


@dataclass(frozen=True, slots=True)
class RouteCache:
    """The cached detection for one network, immutable: every method returns a new one."""

    ttl: timedelta = timedelta(hours=1)
    penalty: timedelta = timedelta(minutes=30)
    state: CacheState = CacheState.EMPTY
    detection: Detection | None = None
    network: tuple[object, ...] = ()  # the fingerprint the detection was made for
    detected_at: datetime | None = None
    failed_at: tuple[tuple[ProxyChoice, datetime], ...] = field(default=())
    failures_in_row: int = 0

    def __post_init__(self) -> None:
        if self.ttl <= timedelta(0) or self.penalty < timedelta(0):
            raise ValueError("RouteCache ttl must be > 0 and penalty >= 0")
        if (self.state is CacheState.EMPTY) != (self.detection is None):
            raise ValueError("RouteCache: EMPTY exactly when there is no detection")

    def _go(self, event: CacheEvent, **changes: object) -> RouteCache:
        return replace(self, state=transition(self.state, event), **changes)  # type: ignore[arg-type]

    def refresh(self, now: datetime, network: tuple[object, ...]) -> RouteCache:
        """Mark the cache stale if the network changed or the answer is too old."""
        cache = self
        if network != self.network:
            cache = cache._go(CacheEvent.NETWORK_CHANGED, network=network)
        if (
            cache.state is CacheState.FRESH
            and cache.detected_at is not None
            and now - cache.detected_at >= cache.ttl
        ):
            cache = cache._go(CacheEvent.EXPIRED)
        return cache

    @property
    def needs_detection(self) -> bool:
        return self.state is not CacheState.FRESH

    def detected(self, now: datetime, detection: Detection) -> RouteCache:
        """Store a new detection; earlier failures are forgotten."""
        return self._go(
            CacheEvent.DETECTED,
            detection=detection,
            detected_at=now,
            failed_at=(),
            failures_in_row=0,
        )

    def order(self, now: datetime) -> tuple[ProxyChoice, ...]:
        """The failover list, proxies that failed within ``penalty`` moved to the end."""
        if self.detection is None:
            return ()
        recent = {c for c, at in self.failed_at if now - at < self.penalty}
        good = [c for c in self.detection.choices if c not in recent]
        bad = [c for c in self.detection.choices if c in recent]
        return (*good, *bad)

    def failed(self, now: datetime, choice: ProxyChoice) -> RouteCache:
        """``choice`` could not be used; when every entry failed in a row, detect again."""
        failed = (*((c, at) for c, at in self.failed_at if c != choice), (choice, now))
        cache = replace(self, failed_at=failed, failures_in_row=self.failures_in_row + 1)
        total = len(self.detection.choices) if self.detection else 0
        if cache.failures_in_row >= total and self.state is not CacheState.EMPTY:
            cache = cache._go(CacheEvent.EXHAUSTED)
        return cache

    def succeeded(self, choice: ProxyChoice) -> RouteCache:
        """``choice`` worked: it is no longer marked bad."""
        failed = tuple((c, at) for c, at in self.failed_at if c != choice)
        return replace(self, failed_at=failed, failures_in_row=0)
