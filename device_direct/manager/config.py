"""``manager.toml``: what ``device-direct manager run`` needs.

Errors name the file and the dotted key (``manager.toml: key 'scan.targets': ...``);
unknown keys are errors. A complete file::

    [server]
    url = "https://dd.example.com"          # required, https
    ca_bundle = "/etc/dd/ca.pem"             # the server's CA (required)
    server_name = "dd.example.com"           # default: the URL's host
    registration_key = "..."                 # used once, at the first run
    proxy = "http://proxy:3128"              # optional
    proxy_username = "u"                     # optional, with proxy_password
    proxy_password = "p"

    [manager]
    data_dir = "/var/lib/dd-manager"         # required: identity, outboxes, readings
    location = "Building 2, floor 3"         # required (sent at registration)
    contact_email = "it@example.com"         # required (sent at registration)
    hostname = "pc-17"                       # default: this host's name
    ip = "10.0.0.17"                         # default: the address used to reach the server
    time_zone = "Europe/Berlin"              # default UTC
    scan_time = "02:30"                      # local time of the daily scan (default 02:00)
    security_mode = "normal"                 # or "locked-down": data sync only, no actions

    [scan]
    targets = ["10.0.0.0/24", "10.0.1.5"]    # required; as `manager scan` takes them
    out_of_scope = ["10.0.0.9"]              # optional: found but not reported
    snmp_port = 161
    communities = ["public"]                 # v2c, tried in order; [] for v3 only
    snmp_v1 = "fallback"                     # v1 too (old printers); "off" or "only"
    resolve_names = true                     # reverse DNS lookup of each printer
    timeout = 1.0                            # seconds to wait for each answer
    retries = 1
    concurrency = 32                         # printers read at the same time
    [[scan.v3_users]]                        # optional, tried after the communities
    user = "monitor"                         # (after the [scan] keys: TOML puts what
    auth_key = "........"                    # follows a [[table]] header in it)
    priv_key = "........"                    # AES, optional (authNoPriv without it)

    [actions]                                # each may be disabled (default: enabled)
    send_meters_now = true
    get_status = true
    print_test_page = true
    test_page_port = 9100
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device_direct.core.schedule import parse_wall_time
from device_direct.errors import ConfigError
from device_direct.manager.errors import TargetError
from device_direct.manager.targets import parse_targets
from device_direct.tomlreader import Table, load_toml

SECURITY_MODES = ("normal", "locked-down")


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """A checked ``manager.toml``."""

    source: str
    url: str
    ca_bundle: Path
    server_name: str
    registration_key: str | None
    proxy: str | None
    proxy_credentials: tuple[str, str] | None
    data_dir: Path
    location: str
    contact_email: str
    hostname: str
    ip: str | None
    time_zone: ZoneInfo
    scan_time: time
    security_mode: str
    targets: tuple[str, ...]
    out_of_scope: tuple[str, ...]
    snmp_port: int
    communities: tuple[str, ...]
    timeout: float
    retries: int
    concurrency: int
    v3_users: tuple[tuple[str, str, str | None], ...] = ()
    snmp_v1: str = "fallback"
    resolve_names: bool = True
    actions: frozenset[str] = field(default_factory=frozenset)
    test_page_port: int = 9100

    def __post_init__(self) -> None:
        if self.security_mode not in SECURITY_MODES:
            raise ConfigError(f"must be one of {', '.join(SECURITY_MODES)}",
                              path=self.source, key="manager.security_mode")

    @property
    def locked_down(self) -> bool:
        return self.security_mode == "locked-down"

    def action_enabled(self, name: str) -> bool:
        """Whether an action may run: never locked down, else as configured."""
        return not self.locked_down and name in self.actions


def _nonempty(t: Table, name: str, default: Any = ...) -> str:
    value: str = t.str(name) if default is ... else t.str(name, default)
    if value is not None and not value.strip():
        raise t.error(name, "must not be empty")
    return value


def load_config(path: Path | str) -> ManagerConfig:
    """Read and check ``manager.toml`` (:class:`ConfigError` naming file and key)."""
    root = load_toml(path)
    source = str(path)
    server = root.table("server")
    url = _nonempty(server, "url")
    if not url.startswith("https://"):
        raise server.error("url", f"must be an https:// URL, got {url!r}")
    ca_bundle = Path(_nonempty(server, "ca_bundle"))
    from urllib.parse import urlsplit

    server_name = server.str("server_name", urlsplit(url).hostname or "")
    registration_key = server.str("registration_key", None)
    proxy = server.str("proxy", None)
    if proxy is not None and not proxy.startswith("http://"):
        raise server.error("proxy", f"must be http://host:port, got {proxy!r}")
    user, password = server.str("proxy_username", None), server.str("proxy_password", None)
    if (user is None) != (password is None):
        raise server.error("proxy_username" if user is None else "proxy_password",
                           "proxy_username and proxy_password go together")
    if user is not None and proxy is None:
        raise server.error("proxy_username", "given without server.proxy")
    server.done()

    mgr = root.table("manager")
    data_dir = Path(_nonempty(mgr, "data_dir"))
    location = _nonempty(mgr, "location")
    contact = _nonempty(mgr, "contact_email")
    if "@" not in contact:
        raise mgr.error("contact_email", f"must be an e-mail address, got {contact!r}")
    hostname = _nonempty(mgr, "hostname", socket.gethostname() or "manager")
    ip = mgr.str("ip", None)
    tz_name = mgr.str("time_zone", "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise mgr.error("time_zone", f"unknown time zone {tz_name!r}") from None
    try:
        scan_time = parse_wall_time(mgr.str("scan_time", "02:00"))
    except ValueError as exc:
        raise mgr.error("scan_time", str(exc)) from None
    mode = mgr.str("security_mode", "normal")
    if mode not in SECURITY_MODES:
        raise mgr.error("security_mode", f"must be one of {', '.join(SECURITY_MODES)}")
    mgr.done()

    scan = root.table("scan")
    targets = tuple(scan.str_list("targets"))
    if not targets:
        raise scan.error("targets", "give at least one target")
    out_of_scope = tuple(scan.str_list("out_of_scope", []))
    snmp_port = scan.int("snmp_port", 161)
    if not 1 <= snmp_port <= 65535:
        raise scan.error("snmp_port", "must be 1..65535")
    for key, words in (("targets", targets), ("out_of_scope", out_of_scope)):
        try:  # a bad target is refused now, not after registering at the first run
            if words:
                parse_targets(words, snmp_port)
        except TargetError as exc:
            raise scan.error(key, str(exc)) from None
    communities = tuple(scan.str_list("communities", ["public"]))
    resolve_names = scan.bool("resolve_names", True)
    snmp_v1 = scan.str("snmp_v1", "fallback")
    if snmp_v1 not in ("fallback", "off", "only"):
        raise scan.error("snmp_v1", "must be one of fallback, off, only")
    v3_users: list[tuple[str, str, str | None]] = []
    for entry in scan.tables("v3_users", []):
        name, auth = _nonempty(entry, "user"), entry.str("auth_key")
        priv = entry.str("priv_key", None)
        if len(auth) < 8:
            raise entry.error("auth_key", "needs 8+ characters")
        if priv is not None and len(priv) < 8:
            raise entry.error("priv_key", "needs 8+ characters")
        entry.done()
        v3_users.append((name, auth, priv))
    if not communities and not v3_users:
        raise scan.error("communities", "give at least one community or [[scan.v3_users]]")
    timeout = scan.float("timeout", 1.0)
    if timeout <= 0:
        raise scan.error("timeout", "must be > 0")
    retries = scan.int("retries", 1)
    if retries < 0:
        raise scan.error("retries", "must be >= 0")
    concurrency = scan.int("concurrency", 32)
    if concurrency < 1:
        raise scan.error("concurrency", "must be >= 1")
    scan.done()

    acts = root.table("actions", {}) if "actions" in root else None
    enabled = {"send-meters-now", "get-status", "print-test-page"}
    test_page_port = 9100
    if acts is not None:
        for key in ("send_meters_now", "get_status", "print_test_page"):
            if not acts.bool(key, True):
                enabled.discard(key.replace("_", "-"))
        test_page_port = acts.int("test_page_port", 9100)
        if not 1 <= test_page_port <= 65535:
            raise acts.error("test_page_port", "must be 1..65535")
        acts.done()
    root.done()
    return ManagerConfig(
        source=source, url=url, ca_bundle=ca_bundle, server_name=server_name,
        registration_key=registration_key, proxy=proxy,
        proxy_credentials=(user, password) if user is not None and password is not None
        else None,
        data_dir=data_dir, location=location, contact_email=contact, hostname=hostname,
        ip=ip, time_zone=tz, scan_time=scan_time, security_mode=mode, targets=targets,
        out_of_scope=out_of_scope, snmp_port=snmp_port, communities=communities,
        timeout=timeout, retries=retries, concurrency=concurrency, snmp_v1=snmp_v1,
        resolve_names=resolve_names,
        v3_users=tuple(v3_users), actions=frozenset(enabled), test_page_port=test_page_port)
