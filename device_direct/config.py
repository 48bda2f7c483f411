"""The agent's configuration: one TOML file, plus ``--set key=value`` overrides.

Errors name the file and the dotted key (``agent.toml: key 'server.url': must be an
https:// URL, got 'http://x'``); unknown keys are errors, so a typo is not silently
ignored. Relative paths are relative to the directory of the config file. Values are
frozen, slotted dataclasses validated in ``__post_init__``, so a config built in code
(tests, the fleet) is checked the same way.

Example (every key, with its default where it has one)::

    [server]
    url = "https://dd.example.com"          # https only; port 443 unless given
    ca_bundle = "certs/server-ca.pem"       # optional: the system trust store otherwise
    # server_name = "dd.example.com"        # expected certificate host name (URL host)
    registration_key = "ABCD-EFGH-1234"     # one-time key; not needed once registered

    [device]
    data_dir = "/var/lib/device-direct"     # outbox, identity, state
    time_zone = "Europe/Berlin"             # IANA name; default "UTC"
    # profile = "office-color"              # emulated MFP: office-color | office-mono | production

    [schedule]
    upload_time = "02:00"                   # device-local HH:MM
    missed = "skip"                         # skip | catch-up (device off at upload time)
    action_poll_interval_s = 0              # 0 = ask for actions only with the daily sync
    firmware_check = "daily"                # daily | off

    [services]
    enabled = true                          # remote services on/off
    security_mode = "normal"                # normal | locked-down
    consent_job_data = false                # user/job names, e-mails in the job log
    consent_engineering = false             # engineering (debug) log
    disabled_actions = []                   # action types refused, e.g. ["reboot"]
    auto_firmware = false                   # install firmware updates automatically
    # maintenance_window = "01:00-04:00"    # device-local; may cross midnight
    # firmware_public_key = "keys/fw.pem"   # Ed25519 PEM: a path, or the PEM text inline

    [outbox]
    budget_bytes = 8388608                  # disk budget for queued payloads

    [retry]
    base_s = 5.0
    cap_s = 3600.0

    [proxy]
    mode = "off"                            # off | manual | auto
    # host = "proxy.example.com"            # manual: required
    # port = 3128                           # manual: required
    bypass = []
    # username = "dd"
    # password = "secret"
    use_env = false                         # honour https_proxy / no_proxy
    allow_credentials_to_auto = false       # send credentials to a discovered proxy

    [alerts]
    recipients = []                         # e-mail addresses
    # smtp_host = "mail.example.com"        # required when there are recipients
    smtp_port = 25
    starttls = "opportunistic"              # opportunistic | required | off
    # username = "dd"                       # sent only over STARTTLS with a checked certificate
    # password = "secret"                   # (so not with starttls = "off")
    severities = ["critical"]               # critical | warning | warning-binary-change | other
    min_interval_s = 3600                   # at most one mail per alert per interval
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device_direct.core.privacy import PrivacyPolicy
from device_direct.core.proxy_rules import parse_bypass
from device_direct.core.retry import Backoff
from device_direct.core.schedule import DailySchedule, MissedPolicy, parse_wall_time
from device_direct.errors import ConfigError
from device_direct.tomlreader import Table, read_toml

SecurityMode = Literal["normal", "locked-down"]
FirmwareCheck = Literal["daily", "off"]
ProxyMode = Literal["off", "manual", "auto"]
StartTls = Literal["opportunistic", "required", "off"]
TlsLibrary = Literal["system", "bundled"]
SEVERITIES = ("critical", "warning", "warning-binary-change", "other")

_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$")
_PEM_MARK = "-----BEGIN"
DEFAULT_OUTBOX_BUDGET = 8 << 20
MAX_ALERT_INTERVAL_S = 365 * 86400


def _invalid(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _invalid(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _port(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _invalid(key, f"must be a port number 1-65535, got {value!r}")


def _host(key: str, value: str) -> None:
    if not value or not _HOST.match(value) or not _dns_labels_fit(value):
        raise _invalid(key, f"must be a host name or address, got {value!r}")


def _dns_labels_fit(name: str) -> bool:
    """Whether a name's dot-separated labels are 1-63 characters (253 in all), as DNS
    wants: the resolver refuses ``a..b`` or a 64-character label with a UnicodeError
    (not an OSError), which would otherwise surface at the first connection."""
    if ":" in name:  # an IPv6 address: no labels
        return True
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and all(1 <= len(label) <= 63 for label in labels)


def _check_firmware_key(pem: str) -> None:
    # Imported here: cryptography's key loaders bring its Rust bindings (several MiB),
    # which a device without a pinned firmware key never needs.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise _invalid("services.firmware_public_key", f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _invalid("services.firmware_public_key", "must be an Ed25519 public key")


# -- sections ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The communication server: URL, trust anchors, expected name, registration key."""

    url: str
    ca_bundle: Path | None = None
    server_name: str = ""  # "" -> the URL's host
    registration_key: str | None = None
    # Whose OpenSSL the TLS runs on: "system" (Python's ssl) or "bundled" (the one the
    # cryptography package ships; device_direct/tls_bundled.py). Same checks either way.
    tls_library: TlsLibrary = "system"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "https":
            raise _invalid("server.url", f"must be an https:// URL, got {self.url!r}")
        try:
            port = parts.port
        except ValueError:
            raise _invalid("server.url", f"has a bad port: {self.url!r}") from None
        if not parts.hostname:
            raise _invalid("server.url", f"has no host: {self.url!r}")
        if not _dns_labels_fit(parts.hostname):
            raise _invalid("server.url", f"has a malformed host name: {self.url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise _invalid("server.url", "must not carry credentials, a query or a fragment")
        if port is not None:
            _port("server.url", port)
        if not self.server_name:
            if ":" in parts.hostname:  # an [IPv6] literal: not checked as a name or address
                raise _invalid("server.url", f"an IPv6 address literal is not supported; "
                               f"give the server's host name: {self.url!r}")
            object.__setattr__(self, "server_name", parts.hostname)
        _host("server.server_name", self.server_name)
        if self.registration_key is not None and not self.registration_key.strip():
            raise _invalid("server.registration_key", "must not be empty")
        _choice("server.tls_library", self.tls_library, get_args(TlsLibrary))

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash, to which ``/dd/v1/...`` is appended."""
        return self.url.rstrip("/")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Where the agent keeps its state, and the device's time zone."""

    data_dir: Path
    time_zone: str = "UTC"
    profile: str | None = None

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid(
                "device.time_zone", f"unknown IANA time zone {self.time_zone!r}"
            ) from None
        if self.profile is not None and not self.profile:
            raise _invalid("device.profile", "must not be empty")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When the daily sync runs, and how often actions and firmware are checked."""

    upload_time: time = time(2, 0)
    missed: MissedPolicy = "skip"
    action_poll_interval_s: float = 0.0
    firmware_check: FirmwareCheck = "daily"

    def __post_init__(self) -> None:
        if not isinstance(self.upload_time, time) or self.upload_time.tzinfo is not None:
            raise _invalid("schedule.upload_time", "must be a device-local HH:MM")
        _choice("schedule.missed", self.missed, get_args(MissedPolicy))
        if not 0 <= self.action_poll_interval_s <= 7 * 86400:
            raise _invalid(
                "schedule.action_poll_interval_s",
                f"must be 0 (daily only) or up to a week, got {self.action_poll_interval_s}",
            )
        if 0 < self.action_poll_interval_s < 60:
            raise _invalid(
                "schedule.action_poll_interval_s",
                "polling more often than once a minute is refused, "
                f"got {self.action_poll_interval_s}",
            )
        _choice("schedule.firmware_check", self.firmware_check, get_args(FirmwareCheck))

    def daily(self, tz: ZoneInfo) -> DailySchedule:
        """The sans-I/O schedule for this config in the device's zone."""
        return DailySchedule(self.upload_time, tz, self.missed)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A device-local time window; ``end`` before ``start`` crosses midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise _invalid("services.maintenance_window", "start and end must differ")

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """Parse ``"HH:MM-HH:MM"``."""
        start, sep, end = text.partition("-")
        try:
            if not sep:
                raise ValueError("expected HH:MM-HH:MM")
            return cls(parse_wall_time(start.strip()), parse_wall_time(end.strip()))
        except ValueError:
            raise _invalid(
                "services.maintenance_window", f"expected HH:MM-HH:MM, got {text!r}"
            ) from None


@dataclass(frozen=True, slots=True)
class ServicesConfig:
    """Which remote services run, with which consents and security mode."""

    enabled: bool = True
    security_mode: SecurityMode = "normal"
    consent_job_data: bool = False
    consent_engineering: bool = False
    disabled_actions: tuple[str, ...] = ()
    auto_firmware: bool = False
    maintenance_window: MaintenanceWindow | None = None
    firmware_public_key: str | None = None  # PEM text of an Ed25519 public key

    def __post_init__(self) -> None:
        _choice("services.security_mode", self.security_mode, get_args(SecurityMode))
        for name in self.disabled_actions:
            if not _ACTION_NAME.match(name):
                raise _invalid("services.disabled_actions", f"not an action type name: {name!r}")
        if self.firmware_public_key is not None:
            _check_firmware_key(self.firmware_public_key)

    @property
    def locked_down(self) -> bool:
        return self.security_mode == "locked-down"

    @property
    def privacy(self) -> PrivacyPolicy:
        """What the payload may carry under this configuration."""
        return PrivacyPolicy(
            send_job_data=self.consent_job_data,
            send_engineering=self.consent_engineering,
            locked_down=self.locked_down,
        )


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The disk budget for payloads waiting to be sent."""

    budget_bytes: int = DEFAULT_OUTBOX_BUDGET

    def __post_init__(self) -> None:
        if self.budget_bytes < 64 << 10:
            raise _invalid("outbox.budget_bytes", f"must be >= 65536, got {self.budget_bytes}")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """The backoff band for failed uploads and registrations."""

    base_s: float = 5.0
    cap_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.base_s <= 3600.0:
            raise _invalid("retry.base_s", f"must be between 1 and 3600, got {self.base_s}")
        if not self.base_s <= self.cap_s <= 86400.0:
            raise _invalid(
                "retry.cap_s", f"must be between base_s ({self.base_s}) and 86400, got {self.cap_s}"
            )

    def backoff(self) -> Backoff:
        """The first backoff value for this policy."""
        return Backoff(base_s=self.base_s, cap_s=self.cap_s)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """How the server is reached: directly, through a given proxy, or discovered."""

    mode: ProxyMode = "off"
    host: str | None = None
    port: int | None = None
    bypass: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_env: bool = False
    allow_credentials_to_auto: bool = False

    def __post_init__(self) -> None:
        _choice("proxy.mode", self.mode, get_args(ProxyMode))
        if self.mode == "manual":
            if self.host is None:
                raise _invalid("proxy.host", "is required when proxy.mode is manual")
            if self.port is None:
                raise _invalid("proxy.port", "is required when proxy.mode is manual")
        if self.host is not None:
            _host("proxy.host", self.host)
        if self.port is not None:
            _port("proxy.port", self.port)
        # Refused here, not when the agent first picks a route (the web page saved a
        # bad entry, then failed putting it in force).
        parse_bypass(self.bypass)
        if self.password is not None and self.username is None:
            raise _invalid("proxy.password", "given without proxy.username")


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """E-mail alerts: recipients, SMTP server and which severities to mail."""

    recipients: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    starttls: StartTls = "opportunistic"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    severities: tuple[str, ...] = ("critical",)
    min_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        for address in self.recipients:
            if not _EMAIL.match(address):
                raise _invalid("alerts.recipients", f"not an e-mail address: {address!r}")
        if self.recipients and self.smtp_host is None:
            raise _invalid("alerts.smtp_host", "is required when alerts.recipients is set")
        if self.smtp_host is not None:
            _host("alerts.smtp_host", self.smtp_host)
        _port("alerts.smtp_port", self.smtp_port)
        _choice("alerts.starttls", self.starttls, get_args(StartTls))
        for severity in self.severities:
            _choice("alerts.severities", severity, SEVERITIES)
        if self.password is not None and self.username is None:
            raise _invalid("alerts.password", "given without alerts.username")
        if self.username is not None and self.starttls == "off":
            raise _invalid("alerts.username", 'a password is never sent without TLS: set '
                           'alerts.starttls to "required" (or "opportunistic")')
        # NaN fails both comparisons; a year bounds the rate limit's timedelta and the
        # "now - min_interval" horizon the mailer computes after each mail.
        if not 0 <= self.min_interval_s <= MAX_ALERT_INTERVAL_S:
            raise _invalid("alerts.min_interval_s", f"must be between 0 and "
                           f"{MAX_ALERT_INTERVAL_S} (a year), got {self.min_interval_s}")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole agent configuration (one TOML file)."""

    server: ServerConfig
    device: DeviceConfig
    schedule: ScheduleConfig = ScheduleConfig()
    services: ServicesConfig = ServicesConfig()
    outbox: OutboxConfig = OutboxConfig()
    retry: RetryConfig = RetryConfig()
    proxy: ProxyConfig = ProxyConfig()
    alerts: AlertsConfig = AlertsConfig()
    source: str = ""  # the file it was loaded from

    def __post_init__(self) -> None:
        if self.services.locked_down and self.services.consent_job_data:
            raise _invalid(
                "services.consent_job_data", "cannot be true in locked-down security mode"
            )


# -- overrides -----------------------------------------------------------------------------

# The kind of every key, so a ``--set`` string becomes the right type before the file's
# own checks run (and a misspelled override key is caught at once).
KEYS: dict[str, str] = {
    "server.url": "str",
    "server.ca_bundle": "str",
    "server.server_name": "str",
    "server.registration_key": "str",
    "device.data_dir": "str",
    "device.time_zone": "str",
    "device.profile": "str",
    "schedule.upload_time": "str",
    "schedule.missed": "str",
    "schedule.action_poll_interval_s": "float",
    "schedule.firmware_check": "str",
    "services.enabled": "bool",
    "services.security_mode": "str",
    "services.consent_job_data": "bool",
    "services.consent_engineering": "bool",
    "services.disabled_actions": "list",
    "services.auto_firmware": "bool",
    "services.maintenance_window": "str",
    "services.firmware_public_key": "str",
    "outbox.budget_bytes": "int",
    "retry.base_s": "float",
    "retry.cap_s": "float",
    "proxy.mode": "str",
    "proxy.host": "str",
    "proxy.port": "int",
    "proxy.bypass": "list",
    "proxy.username": "str",
    "proxy.password": "str",
    "proxy.use_env": "bool",
    "proxy.allow_credentials_to_auto": "bool",
    "alerts.recipients": "list",
    "alerts.smtp_host": "str",
    "alerts.smtp_port": "int",
    "alerts.starttls": "str",
    "alerts.username": "str",
    "alerts.password": "str",
    "alerts.severities": "list",
    "alerts.min_interval_s": "float",
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(key: str, kind: str, text: str, source: str) -> Any:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"override expected {what}, got {text!r}", path=source, key=key)

    if kind == "str":
        return text
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad("true or false")
    # list: a TOML array, or comma-separated words
    if text.strip().startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise bad("a list") from None
    return [item.strip() for item in text.split(",") if item.strip()]


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, object], *, source: str
) -> dict[str, Any]:
    """Apply dotted-key overrides (``{"server.url": "https://..."}``) to parsed TOML.

    String values are converted to the key's type (``"false"``, ``"8192"``,
    ``"a,b"``); other values are used as they are.
    """
    for key, value in overrides.items():
        kind = KEYS.get(key)
        if kind is None:
            raise ConfigError("unknown key in override (--set)", path=source, key=key)
        section, name = key.split(".", 1)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError("is not a table", path=source, key=section)
        table[name] = _convert(key, kind, value, source) if isinstance(value, str) else value
    return data


# -- loading ---------------------------------------------------------------------------------


def _path(t: Table, name: str, base: Path, *, must_exist: bool) -> Path | None:
    text = t.str(name, None)
    if text is None:
        return None
    if not text:
        raise t.error(name, "must not be empty")
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if must_exist and not path.is_file():
        raise t.error(name, f"file not found: {path}")
    return path


def _server(t: Table, base: Path) -> ServerConfig:
    cfg = ServerConfig(
        url=t.str("url"),
        ca_bundle=_path(t, "ca_bundle", base, must_exist=True),
        server_name=t.str("server_name", ""),
        registration_key=t.str("registration_key", None),
        tls_library=t.choice("tls_library", get_args(TlsLibrary), "system"),
    )
    t.done()
    return cfg


def _device(t: Table, base: Path) -> DeviceConfig:
    data_dir = _path(t, "data_dir", base, must_exist=False)
    if data_dir is None:
        raise t.error("data_dir", "is required")
    # It is created when missing; a file in its place (or in its parent's) would
    # otherwise surface as a NotADirectoryError in whichever command touched it first.
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise t.error("data_dir", f"not a directory: {existing}")
    cfg = DeviceConfig(
        data_dir=data_dir,
        time_zone=t.str("time_zone", "UTC"),
        profile=t.str("profile", None),
    )
    t.done()
    return cfg


def _schedule(t: Table) -> ScheduleConfig:
    text = t.str("upload_time", "02:00")
    try:
        upload_time = parse_wall_time(text)
    except ValueError as exc:
        raise t.error("upload_time", str(exc)) from None
    cfg = ScheduleConfig(
        upload_time=upload_time,
        missed=t.choice("missed", get_args(MissedPolicy), "skip"),
        action_poll_interval_s=t.float("action_poll_interval_s", 0.0, min=0.0),
        firmware_check=t.choice("firmware_check", get_args(FirmwareCheck), "daily"),
    )
    t.done()
    return cfg


def _firmware_key(t: Table, base: Path) -> str | None:
    value: str | None = t.str("firmware_public_key", None)
    if value is None or value.lstrip().startswith(_PEM_MARK):
        return value
    path = _path(t, "firmware_public_key", base, must_exist=True)
    assert path is not None
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise t.error("firmware_public_key", f"cannot read {path}: {exc}") from exc


def _services(t: Table, base: Path) -> ServicesConfig:
    window = t.str("maintenance_window", None)
    cfg = ServicesConfig(
        enabled=t.bool("enabled", True),
        security_mode=t.choice("security_mode", get_args(SecurityMode), "normal"),
        consent_job_data=t.bool("consent_job_data", False),
        consent_engineering=t.bool("consent_engineering", False),
        disabled_actions=t.str_list("disabled_actions", ()),
        auto_firmware=t.bool("auto_firmware", False),
        maintenance_window=MaintenanceWindow.parse(window) if window is not None else None,
        firmware_public_key=_firmware_key(t, base),
    )
    t.done()
    return cfg


def _outbox(t: Table) -> OutboxConfig:
    cfg = OutboxConfig(budget_bytes=t.int("budget_bytes", DEFAULT_OUTBOX_BUDGET))
    t.done()
    return cfg


def _retry(t: Table) -> RetryConfig:
    cfg = RetryConfig(base_s=t.float("base_s", 5.0), cap_s=t.float("cap_s", 3600.0))
    t.done()
    return cfg


def _proxy(t: Table) -> ProxyConfig:
    cfg = ProxyConfig(
        mode=t.choice("mode", get_args(ProxyMode), "off"),
        host=t.str("host", None),
        port=t.int("port", None),
        bypass=t.str_list("bypass", ()),
        username=t.str("username", None),
        password=t.str("password", None),
        use_env=t.bool("use_env", False),
        allow_credentials_to_auto=t.bool("allow_credentials_to_auto", False),
    )
    t.done()
    return cfg


def _alerts(t: Table) -> AlertsConfig:
    cfg = AlertsConfig(
        recipients=t.str_list("recipients", ()),
        smtp_host=t.str("smtp_host", None),
        smtp_port=t.int("smtp_port", 25),
        starttls=t.choice("starttls", get_args(StartTls), "opportunistic"),
        username=t.str("username", None),
        password=t.str("password", None),
        severities=t.str_list("severities", ("critical",)),
        min_interval_s=t.float("min_interval_s", 3600.0, min=0.0),
    )
    t.done()
    return cfg


def _empty(t: Table, name: str) -> Table:
    table: Table = t.table(name, None) or Table({}, source=t.source, prefix=name)
    return table


def parse_config(
    data: dict[str, Any], *, source: str, base: Path, overrides: Mapping[str, object] | None = None
) -> AgentConfig:
    """Build an :class:`AgentConfig` from parsed TOML (``base``: for relative paths)."""
    if overrides:
        data = apply_overrides(data, overrides, source=source)
    root = Table(data, source=source, prefix="")
    try:
        cfg = AgentConfig(
            server=_server(root.table("server"), base),
            device=_device(root.table("device"), base),
            schedule=_schedule(_empty(root, "schedule")),
            services=_services(_empty(root, "services"), base),
            outbox=_outbox(_empty(root, "outbox")),
            retry=_retry(_empty(root, "retry")),
            proxy=_proxy(_empty(root, "proxy")),
            alerts=_alerts(_empty(root, "alerts")),
            source=source,
        )
        root.done()
    except ConfigError as exc:
        if exc.path is not None:
            raise
        # Raised by a dataclass check, which knows the key but not the file.
        message = str(exc).removeprefix(f"key '{exc.key}': ")
        raise ConfigError(message, path=source, key=exc.key) from None
    return cfg


def load_config(path: Path | str, overrides: Mapping[str, object] | None = None) -> AgentConfig:
    """Load the agent config from a TOML file, with optional dotted-key overrides."""
    p = Path(path)
    return parse_config(read_toml(p), source=str(p), base=p.resolve().parent,
                        overrides=overrides)
