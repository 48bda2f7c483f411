"""Finding the way out: proxy off, manual, from the environment, or discovered (WPAD + PAC).

How a route is chosen for the communication server URL (``decide``):

1. a host on the config's bypass list goes DIRECT;
2. ``use_env`` (and no ``REQUEST_METHOD``, see httpoxy): ``https_proxy``/``HTTPS_PROXY``,
   minus the hosts in ``no_proxy``/``NO_PROXY``, wins over auto-detection (not over a
   manual proxy);
3. manual: the configured proxy;
4. auto: the DHCP option 252 URL, then ``wpad.<domain>`` walking up to (not into) a
   public suffix; the first PAC file that can be fetched (timeout, size limit,
   content type) and run gives the failover list. Nothing found: DIRECT, and the
   problems met are kept for the troubleshoot result.

The answer is cached (:class:`~device_direct.core.proxy_rules.RouteCache`) and detected
again when the network info changes, after ``ttl``, or when every entry failed.
:meth:`ProxyDetector.call` runs one transport call along the list: a proxy that cannot
be reached (or refuses with 5xx) hands over to the next entry; a 407 is not failed over,
it is a configuration problem and is raised as it is. Credentials go to a manually
configured proxy; to a discovered one only with ``allow_credentials_to_auto``.

Name resolution is a callable (``host -> list of addresses``, sync or async) so tests and
the emulator control DNS; the PAC fetch uses it through an aiohttp resolver.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from device_direct.clock import Clock
from device_direct.config import ProxyConfig
from device_direct.core.payload import ProxyRoute
from device_direct.core.proxy_rules import (
    DEFAULT_WPAD_PORT,
    DIRECT,
    Bypass,
    Detection,
    ProxyChoice,
    ProxyDiscoveryError,
    RouteCache,
    RouteSource,
    normalise_host,
    pac_target,
    parse_bypass,
    parse_no_proxy,
    parse_pac_answer,
    wpad_candidates,
)
from device_direct.errors import ConnectError, ProxyError, TimeoutError_
from device_direct.model import NetworkInfo
from device_direct.pac import INSTALL_HINT, PacEvaluator, SubprocessPacEvaluator

log = logging.getLogger(__name__)

T = TypeVar("T")
Resolver = Callable[[str], Awaitable[Sequence[str]] | Sequence[str]]
PAC_CONTENT_TYPES = frozenset(
    {"application/x-ns-proxy-autoconfig", "application/x-javascript-config"}
)
MAX_PAC_BYTES = 256 * 1024  # real PAC files are a few kB; anything this big is not one
FETCH_TIMEOUT_S = 10.0
_CHUNK = 16 * 1024


# -- resolution ----------------------------------------------------------------------------------


async def system_resolver(host: str) -> list[str]:
    """The OS resolver (``getaddrinfo``); an unknown name gives an empty list."""
    import asyncio

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(resolver: Resolver, host: str) -> list[str]:
    """Call ``resolver`` (sync or async); failures and non-answers become an empty list."""
    try:
        answer = resolver(host)
        if inspect.isawaitable(answer):
            answer = await answer
    except OSError:
        return []
    return [str(a) for a in answer]


class InjectedResolver(AbstractResolver):
    """aiohttp's resolver interface over a :data:`Resolver` callable."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve(self._resolver, host)
        if not addresses:
            raise OSError(socket.EAI_NONAME, f"{host}: name not known")
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in addresses
        ]

    async def close(self) -> None:
        return None


# -- fetching the PAC file -----------------------------------------------------------------------


async def fetch_pac(
    url: str,
    *,
    resolver: Resolver,
    timeout_s: float = FETCH_TIMEOUT_S,
    max_bytes: int = MAX_PAC_BYTES,
) -> str:
    """GET a PAC file: no proxy, no redirects, ``timeout_s`` for the whole exchange, at
    most ``max_bytes``, and one of the two PAC content types.

    Raises :class:`ProxyDiscoveryError` with reason not-found (no such name, 404),
    fetch (refused, other status), timeout, too-large or content-type.
    """
    host = urlsplit(url).hostname or ""
    if not await resolve(resolver, host):
        raise ProxyDiscoveryError(f"{host} does not resolve", reason="not-found", url=url)
    connector = aiohttp.TCPConnector(resolver=InjectedResolver(resolver), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=timeout, trust_env=False, auto_decompress=False
            ) as session,
            session.get(url, allow_redirects=False, headers={"Accept-Encoding": "identity"}) as r,
        ):
            if r.status == 404:
                raise ProxyDiscoveryError("404 Not Found", reason="not-found", url=url)
            if r.status != 200:
                raise ProxyDiscoveryError(f"answered {r.status}", reason="fetch", url=url)
            if r.content_type not in PAC_CONTENT_TYPES:
                raise ProxyDiscoveryError(
                    f"content type {r.content_type!r} is not a PAC file (expected one of "
                    f"{', '.join(sorted(PAC_CONTENT_TYPES))})",
                    reason="content-type",
                    url=url,
                )
            if r.content_length is not None and r.content_length > max_bytes:
                raise ProxyDiscoveryError(
                    f"{r.content_length} bytes is over the {max_bytes}-byte limit",
                    reason="too-large",
                    url=url,
                )
            body = bytearray()
            while chunk := await r.content.read(min(_CHUNK, max_bytes + 1 - len(body))):
                body += chunk
                if len(body) > max_bytes:
                    raise ProxyDiscoveryError(
                        f"body is over the {max_bytes}-byte limit", reason="too-large", url=url
                    )
    except TimeoutError:
        raise ProxyDiscoveryError(
            f"no complete answer within {timeout_s:g} s", reason="timeout", url=url
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ProxyDiscoveryError(str(exc) or type(exc).__name__, reason="fetch", url=url) from exc
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("latin-1")


# -- environment ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnvProxy:
    """The proxy the environment (https_proxy, no_proxy) names for a host."""

    choice: ProxyChoice
    credentials: tuple[str, str] | None = None


def env_proxy(environ: Mapping[str, str], host: str) -> EnvProxy | None:
    """The proxy ``https_proxy``/``HTTPS_PROXY`` names for ``host``, DIRECT if ``no_proxy``
    covers it, None if unset or unreadable.

    Ignored entirely when ``REQUEST_METHOD`` is set: inside a CGI request any client can
    set ``Proxy:`` and so ``HTTP_PROXY`` (httpoxy); urllib makes the same call.
    """
    if "REQUEST_METHOD" in environ:
        return None
    value = environ.get("https_proxy") or environ.get("HTTPS_PROXY")
    if not value:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if parse_no_proxy(no_proxy).matches(host):
        return EnvProxy(DIRECT)
    text = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(text)  # raises on a bracket left open: "http://[::1"
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise ValueError("only http:// proxies are supported")
        choice = ProxyChoice(normalise_host(parts.hostname), parts.port or 80)
    except ValueError as exc:
        log.warning("https_proxy=%r ignored: %s", _without_password(value), exc)
        return None
    credentials = None
    if parts.username:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
    return EnvProxy(choice, credentials)


def _without_password(value: str) -> str:
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
    except ValueError:  # unparsable: whatever precedes an "@" may hold a password
        return f"***@{value.rpartition('@')[2]}" if "@" in value else value
    if parts.password is None:
        return value
    return value.replace(f":{parts.password}@", ":***@")


# -- public suffixes ------------------------------------------------------------------------------


def bundled_public_suffixes() -> Callable[[str], bool]:
    """``is_public_suffix(name)`` from publicsuffixlist's bundled snapshot (no download).

    Unknown top-level names count as public (the list's ``*`` rule), so ``wpad.corp``
    is never asked. Raises :class:`ProxyDiscoveryError` (missing-extra) without it.
    """
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError:
        raise ProxyDiscoveryError(
            f"the public suffix list is not installed; {INSTALL_HINT}", reason="missing-extra"
        ) from None
    psl = PublicSuffixList()

    def is_public_suffix(name: str) -> bool:
        return bool(psl.is_public(name))

    return is_public_suffix


# -- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The failover list for one server URL, how it was found, and what to send."""

    choices: tuple[ProxyChoice, ...]
    source: RouteSource
    credentials: tuple[str, str] | None = None  # for the proxies in ``choices``
    pac_url: str | None = None
    problems: tuple[str, ...] = ()  # discovery steps that failed, for troubleshooting

    def route(self, choice: ProxyChoice) -> ProxyRoute:
        """What the payload's network section and the log say about ``choice``."""
        return ProxyRoute(choice.route, self.source)


class Proxied(Protocol):
    """What :meth:`ProxyDetector.call` needs of a transport (``Transport`` has it)."""

    def set_proxy(self, proxy: str | None, credentials: tuple[str, str] | None = None) -> None:
        """Send later requests through ``proxy`` (``http://host:port``) or directly."""
        ...


def _network_key(network: NetworkInfo) -> tuple[object, ...]:
    # What a re-detection depends on: a new lease, domain, WPAD URL or DNS server.
    return (network.ipv4, network.gateway, network.domain, network.wpad_url, network.dns_servers)


def _fail_over(exc: BaseException) -> bool:
    """Whether a failed call should move to the next route (not for 407 or server errors)."""
    if isinstance(exc, ProxyError):
        if exc.status is not None:
            return exc.status != 407 and exc.status >= 500
        return True  # the proxy could not be reached
    return False


def _proxy_status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ProxyError) else None


def _auth_refused(
    choice: ProxyChoice, credentials: tuple[str, str] | None, status: int, source: str
) -> ProxyError:
    # Some proxies (tinyproxy) answer a CONNECT without credentials with 401, not 407.
    if credentials is None and source in ("wpad-dhcp", "wpad-dns"):
        hint = (
            "no credentials were sent: the proxy was discovered automatically and "
            "proxy.allow_credentials_to_auto is false"
        )
    elif credentials is None:
        hint = "no credentials are configured: set proxy.username and proxy.password"
    else:
        hint = f"it refused the credentials of user {credentials[0]!r}: check proxy.password"
    return ProxyError(f"proxy {choice.hostport} requires authentication ({status}); {hint}",
                      status=status)


class ProxyDetector:
    """Chooses and remembers the route to the communication server.

    ``resolver``: ``host -> addresses`` (default: the OS). ``environ``: the environment
    (default ``os.environ``), read only with ``config.use_env``. ``evaluator`` runs PAC
    files (default: :class:`~device_direct.pac.SubprocessPacEvaluator`).
    ``is_public_suffix`` bounds the WPAD walk (default: publicsuffixlist's snapshot).
    ``wpad_port`` is the port of the DNS-walk URLs: 80 on real networks, another
    port in labs and tests.
    """

    def __init__(
        self,
        config: ProxyConfig,
        clock: Clock,
        *,
        resolver: Resolver = system_resolver,
        environ: Mapping[str, str] | None = None,
        evaluator: PacEvaluator | None = None,
        is_public_suffix: Callable[[str], bool] | None = None,
        wpad_port: int = DEFAULT_WPAD_PORT,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
        max_pac_bytes: int = MAX_PAC_BYTES,
        ttl: timedelta = timedelta(hours=1),
        penalty: timedelta = timedelta(minutes=30),
    ) -> None:
        self._config = config
        self._clock = clock
        self._resolver = resolver
        self._environ = environ if environ is not None else os.environ
        self._evaluator = evaluator
        self._is_public_suffix = is_public_suffix
        self._wpad_port = wpad_port
        self._fetch_timeout_s = fetch_timeout_s
        self._max_pac_bytes = max_pac_bytes
        self._bypass: Bypass = parse_bypass(config.bypass)
        self._cache = RouteCache(ttl=ttl, penalty=penalty)
        self._problems: tuple[str, ...] = ()
        self._last: ProxyRoute | None = None

    @property
    def last_route(self) -> ProxyRoute | None:
        """The route of the last call made through :meth:`call` (for the payload)."""
        return self._last

    def describe(self) -> dict[str, Any]:
        """The proxy part of a troubleshoot result (no credentials)."""
        detection = self._cache.detection
        return {
            "mode": self._config.mode,
            "route": self._last.route if self._last else None,
            "source": self._last.source if self._last else None,
            "pac_url": detection.pac_url if detection else None,
            "cache": self._cache.state.value,
            "problems": list(self._problems),
        }

    async def decide(self, server_url: str, network: NetworkInfo) -> RouteDecision:
        """The failover list for ``server_url`` on ``network`` (detecting if needed)."""
        cfg = self._config
        host = normalise_host(urlsplit(server_url).hostname or "")
        manual_credentials = (
            (cfg.username, cfg.password or "") if cfg.username is not None else None
        )
        addresses: Sequence[str] = ()
        if self._bypass.needs_addresses:
            addresses = await resolve(self._resolver, host)
        if self._bypass.matches(host, addresses):
            # The bypass list is set by hand, whatever the mode: say so.
            return RouteDecision((DIRECT,), "off" if cfg.mode == "off" else "manual")
        if cfg.mode == "manual":
            assert cfg.host is not None and cfg.port is not None  # ProxyConfig checks it
            return RouteDecision(
                (ProxyChoice(normalise_host(cfg.host), cfg.port),), "manual", manual_credentials
            )
        if cfg.use_env:
            found = env_proxy(self._environ, host)
            if found is not None:
                return RouteDecision((found.choice,), "env", found.credentials)
        if cfg.mode == "off":
            return RouteDecision((DIRECT,), "off")
        now = self._clock.now()
        self._cache = self._cache.refresh(now, _network_key(network))
        if self._cache.needs_detection:
            detection = await self._detect(server_url, host, network)
            self._cache = self._cache.detected(now, detection)
            log.info(
                "proxy auto-detection: %s (%s%s)",
                "; ".join(c.route for c in detection.choices),
                detection.source,
                f" {detection.pac_url}" if detection.pac_url else "",
            )
        cached = self._cache.detection
        assert cached is not None
        credentials = manual_credentials if cfg.allow_credentials_to_auto else None
        return RouteDecision(
            self._cache.order(now), cached.source, credentials, cached.pac_url, self._problems
        )

    async def _detect(self, server_url: str, host: str, network: NetworkInfo) -> Detection:
        if self._is_public_suffix is None:
            # Parsing the bundled list takes tens of milliseconds: not on the loop.
            self._is_public_suffix = await asyncio.to_thread(bundled_public_suffixes)
        is_public = self._is_public_suffix
        evaluator = self._evaluator or SubprocessPacEvaluator()
        problems: list[str] = []
        candidates = wpad_candidates(
            network.wpad_url, network.domain, is_public, port=self._wpad_port
        )
        if network.wpad_url and not any(c.source == "wpad-dhcp" for c in candidates):
            problems.append(f"DHCP option 252 value {network.wpad_url!r} is not an http URL")
        for candidate in candidates:
            try:
                pac = await fetch_pac(
                    candidate.url,
                    resolver=self._resolver,
                    timeout_s=self._fetch_timeout_s,
                    max_bytes=self._max_pac_bytes,
                )
                url, pac_host = pac_target(server_url)
                answer = await evaluator.find_proxy(
                    pac,
                    url,
                    pac_host,
                    hosts={host: await resolve(self._resolver, host)},
                    my_ip=network.ipv4,
                    now=self._clock.now(),
                )
                choices = parse_pac_answer(answer)
            except ProxyDiscoveryError as exc:
                if exc.reason == "missing-extra":
                    raise
                if exc.reason != "not-found":
                    log.warning("%s", exc)
                problems.append(str(exc) if exc.url else f"{exc} ({candidate.url})")
                continue
            self._problems = tuple(problems)
            return Detection(choices, candidate.source, candidate.url)
        self._problems = tuple(problems)
        log.info("proxy auto-detection found no PAC file; going DIRECT")
        return Detection((DIRECT,), "wpad-dns")

    async def call(
        self,
        transport: Proxied,
        server_url: str,
        network: NetworkInfo,
        operation: Callable[[], Awaitable[T]],
    ) -> T:
        """Run ``operation`` (a transport call) along the failover list.

        ``transport`` needs ``set_proxy(url, credentials)``. Moves to the next entry when
        a proxy cannot be reached or fails with 5xx, or DIRECT cannot connect; raises
        the last such error when all fail, and anything else (407, TLS, 4xx) at once.
        """
        decision = await self.decide(server_url, network)
        error: BaseException | None = None
        for choice in decision.choices:
            credentials = None if choice.direct else decision.credentials
            transport.set_proxy(choice.url, credentials)
            route = decision.route(choice)
            try:
                result = await operation()
            except (ProxyError, ConnectError, TimeoutError_) as exc:
                moves_on = _fail_over(exc) or (
                    choice.direct and isinstance(exc, ConnectError | TimeoutError_)
                )
                if not moves_on:
                    self._last = route
                    status = _proxy_status(exc)
                    if status in (401, 407):
                        raise _auth_refused(choice, credentials, status, decision.source) from exc
                    raise
                log.warning("route %s failed: %s", choice.route, exc)
                self._cache = self._cache.failed(self._clock.now(), choice)
                error = exc
                continue
            self._cache = self._cache.succeeded(choice)
            if route != self._last:
                log.info("proxy route in use: %s (%s)", route.route, route.source)
            self._last = route
            return result
        assert error is not None
        raise error
