"""The remote-services settings a person changes on the printer's web pages.

A form is turned into dotted config keys (``services.enabled``, ``proxy.port``...) and
checked exactly as the agent's TOML file is: :func:`device_direct.config.apply_overrides`
converts each value to its key's type, and the frozen config dataclasses validate
them in ``__post_init__``. The first bad value comes back as a :class:`ConfigError`
naming its key, which the page shows next to that field; nothing is changed then.

What was accepted is persisted in ``<state_dir>/web-settings.toml`` (0600: it may hold
the proxy password) and laid over the command-line configuration every time the agent
starts (:func:`with_saved_settings`), so a change survives a power cycle.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from device_direct.config import (
    AgentConfig,
    ProxyConfig,
    ServicesConfig,
    apply_overrides,
)
from device_direct.core.actions import ACTION_TYPES
from device_direct.errors import ConfigError
from device_direct.tomlreader import read_toml

log = logging.getLogger("emulator.web.settings")

SETTINGS_FILE = "web-settings.toml"
SOURCE = "web form"
# The keys the remote-services page edits, in the order of the form.
FORM_KEYS = ("services.enabled", "services.security_mode", "services.consent_engineering",
             "services.disabled_actions", "proxy.mode", "proxy.host", "proxy.port",
             "proxy.bypass", "proxy.username", "proxy.password")
REMOTE_ACTIONS = tuple(sorted(ACTION_TYPES))


def values_of(config: AgentConfig) -> dict[str, Any]:
    """The form's current values (the proxy password is never sent back to a page)."""
    s, p = config.services, config.proxy
    return {
        "services.enabled": s.enabled, "services.security_mode": s.security_mode,
        "services.consent_engineering": s.consent_engineering,
        "services.disabled_actions": list(s.disabled_actions),
        "proxy.mode": p.mode, "proxy.host": p.host or "",
        "proxy.port": "" if p.port is None else str(p.port),
        "proxy.bypass": ", ".join(p.bypass), "proxy.username": p.username or "",
        "proxy.password_set": p.password is not None,
    }


def parse_form(form: dict[str, str], allowed: list[str]) -> dict[str, Any]:
    """Dotted keys from the posted form (checkboxes absent mean off; ``allowed`` is the
    list of action types left ticked). Blank text fields mean "not set"."""
    def text(key: str) -> str | None:
        value = form.get(key, "").strip()
        return value or None

    changes: dict[str, Any] = {
        "services.enabled": "services.enabled" in form,
        "services.security_mode": "locked-down" if "locked_down" in form else "normal",
        "services.consent_engineering": "services.consent_engineering" in form,
        "services.disabled_actions": [a for a in REMOTE_ACTIONS if a not in allowed],
        "proxy.mode": form.get("proxy.mode", "off"),
        "proxy.host": text("proxy.host"),
        "proxy.port": text("proxy.port"),
        "proxy.bypass": form.get("proxy.bypass", ""),
        "proxy.username": text("proxy.username"),
    }
    if form.get("proxy.password"):
        changes["proxy.password"] = form["proxy.password"]
    elif "proxy.clear_password" in form or changes["proxy.username"] is None:
        changes["proxy.password"] = None
    return changes


def apply_changes(config: AgentConfig, changes: dict[str, Any], *, source: str = SOURCE
                  ) -> AgentConfig:
    """``config`` with ``changes`` (dotted keys) applied, validated as the TOML file is.

    A ``None`` value unsets an optional key. Raises :class:`ConfigError` naming the key."""
    unknown = set(changes) - set(FORM_KEYS)
    if unknown:
        raise ConfigError("not a setting of the web pages", path=source,
                          key=sorted(unknown)[0])
    typed = apply_overrides({}, {k: v for k, v in changes.items() if v is not None},
                            source=source)
    unset = {k for k, v in changes.items() if v is None}
    services = _section(config.services, "services", typed, unset)
    proxy = _section(config.proxy, "proxy", typed, unset)
    try:
        assert isinstance(services, ServicesConfig) and isinstance(proxy, ProxyConfig)
        return replace(config, services=services, proxy=proxy)
    except ConfigError as exc:
        if exc.path is not None:
            raise
        raise ConfigError(str(exc).removeprefix(f"key '{exc.key}': "), path=source,
                          key=exc.key) from None


def _section(current: Any, name: str, typed: dict[str, Any], unset: set[str]) -> Any:
    fields = dict(typed.get(name, {}))
    for key in unset:
        section, field = key.split(".", 1)
        if section == name:
            fields[field] = None
    for field in ("disabled_actions", "bypass"):
        if isinstance(fields.get(field), list):
            fields[field] = tuple(fields[field])
    for field, value in fields.items():
        if field == "port" and value is not None and not isinstance(value, int):
            raise ConfigError(f"must be a port number 1-65535, got {value!r}", path=SOURCE,
                              key=f"{name}.{field}")
    try:
        return replace(current, **fields)
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix(f"key '{exc.key}': "), path=SOURCE,
                          key=exc.key) from None
    except TypeError as exc:  # a value of the wrong kind for the dataclass
        raise ConfigError(f"bad value ({exc})", path=SOURCE, key=name) from None


# -- persistence ---------------------------------------------------------------------------


def save_settings(state_dir: Path, config: AgentConfig) -> Path:
    """Write the page's keys of ``config`` to ``state_dir/web-settings.toml`` (atomic)."""
    s, p = config.services, config.proxy
    lines = ["# Remote-services settings changed on the printer's web pages.",
             "[services]",
             f"enabled = {_toml(s.enabled)}",
             f"security_mode = {_toml(s.security_mode)}",
             f"consent_engineering = {_toml(s.consent_engineering)}",
             f"disabled_actions = {_toml(list(s.disabled_actions))}",
             "", "[proxy]", f"mode = {_toml(p.mode)}",
             f"bypass = {_toml(list(p.bypass))}"]
    for key in ("host", "port", "username", "password"):
        value = getattr(p, key)
        if value is not None:
            lines.append(f"{key} = {_toml(value)}")
    path = state_dir / SETTINGS_FILE
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _toml(value: object) -> str:
    # JSON strings, booleans, integers and arrays of strings are valid TOML values.
    return json.dumps(value, ensure_ascii=False)


def with_saved_settings(config: AgentConfig, state_dir: Path) -> AgentConfig:
    """``config`` with the settings saved by the web pages laid over it.

    A damaged settings file is logged (naming the file and key) and left aside: the
    agent then starts with its command-line configuration."""
    path = state_dir / SETTINGS_FILE
    if not path.exists():
        return config
    try:
        data = read_toml(path)
        changes: dict[str, Any] = {}
        for section in ("services", "proxy"):
            table = data.get(section, {})
            if not isinstance(table, dict):
                raise ConfigError("is not a table", path=str(path), key=section)
            for key, value in table.items():
                changes[f"{section}.{key}"] = value
        for key in FORM_KEYS:  # keys absent from the file are unset
            if key.startswith("proxy.") and key not in changes:
                changes[key] = None
        return apply_changes(config, changes, source=str(path))
    except ConfigError as exc:
        log.error("web settings %s not applied: %s", path, exc)
        return config
