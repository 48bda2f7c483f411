"""What a device's own settings pages call on a running agent.

Two entry points, for the printer's embedded web server (and any host UI):

* :func:`apply_settings` puts a new, already validated :class:`AgentConfig` in force on
  a running :class:`~device_direct.agent.Agent` without restarting it: the services
  section (allowed actions, locked-down mode, consents: the payload's privacy policy
  and the action admission policy) and the proxy section (a new route detector; the
  route that worked last is forgotten). Other sections (server, data directory,
  schedule, outbox, retry, alerts) are read once at start: a change there is refused
  with a :class:`ConfigError` naming the section. Switching remote services on or
  off changes whether the agent's loop runs at all, so :func:`apply_settings` returns
  True when the caller must restart the agent's task (from disk, as at boot) for it.
* :func:`check_connection` runs the agent's real connectivity check
  (``troubleshoot.self_test``: DNS, proxy, TCP, TLS with the server certificate checks,
  the mutual-TLS call) along the route the configuration gives, and returns each step
  with its cause when it failed, in the order a person reads them.

Both rely on these attributes of the agent: ``config``, ``policy``, ``proxy``,
``proxy_route``, ``actions.policy``, ``firmware.config``, ``identity``, ``model``,
``clock``, and ``_proxy_setting`` (the route remembered between sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from device_direct.config import AgentConfig
from device_direct.errors import ConfigError, DeviceDirectError
from device_direct.transport import Transport

if TYPE_CHECKING:
    from device_direct.agent import Agent

# Sections a running agent cannot take without a restart (read once when it starts).
RESTART_SECTIONS = ("server", "device", "schedule", "outbox", "retry", "alerts")


def apply_settings(agent: Agent, config: AgentConfig) -> bool:
    """Put ``config`` in force on ``agent``; True when its task must be restarted.

    Raises :class:`ConfigError` (naming the section) for a change only a restart takes."""
    old = agent.config
    for section in RESTART_SECTIONS:
        if getattr(old, section) != getattr(config, section):
            raise ConfigError("cannot be changed on a running agent", key=section)
    services = config.services
    agent.config = config
    agent.policy = services.privacy
    agent.actions.policy = replace(agent.actions.policy, locked_down=services.locked_down,
                                   disabled=frozenset(services.disabled_actions),
                                   consent_engineering=services.consent_engineering)
    agent.firmware.config = config
    if config.proxy != old.proxy:
        agent.proxy = None
        if config.proxy.mode != "off" or config.proxy.use_env:
            from device_direct.proxy import ProxyDetector

            agent.proxy = ProxyDetector(config.proxy, agent.clock)
        agent.proxy_route = None
        agent._proxy_setting = (None, None)  # the old route must not be reused
    return old.services.enabled != services.enabled


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One step of the connection test: ``ok`` None when it was not run on its own."""

    name: str
    title: str
    ok: bool | None
    detail: str

    def __post_init__(self) -> None:
        if not self.name or not self.title:
            raise ValueError("a check step needs a name and a title")


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """The connection test's outcome: the steps in order, and the first that failed."""

    ok: bool
    server: str
    steps: tuple[CheckStep, ...]
    raw: dict[str, Any]

    @property
    def failed_step(self) -> CheckStep | None:
        return next((s for s in self.steps if s.ok is False), None)


_TITLES = {
    "dns": "Name resolution (DNS)",
    "proxy": "Proxy",
    "tcp": "TCP connection",
    "tls": "TLS and server certificate",
    "registration": "Registration",
    "mtls_call": "Authenticated call (mutual TLS)",
    "clock": "Clock offset",
}


async def check_connection(agent: Agent) -> ConnectionCheck:
    """Run the agent's connectivity self-test now, along its configured route."""
    from device_direct.troubleshoot import self_test

    cfg = agent.config
    transport = Transport(cfg.server.url, cfg.server.ca_bundle, cfg.server.server_name,
                          agent.identity, agent.clock,
                          tls_library=cfg.server.tls_library)
    try:
        if agent.proxy is not None:
            try:
                decision = await agent.proxy.decide(cfg.server.url, agent.model.network())
                first = decision.choices[0]
                transport.set_proxy(first.url, None if first.direct else decision.credentials)
            except DeviceDirectError:
                pass  # the self-test's own steps say what is wrong with the way out
        route = agent.proxy.describe() if agent.proxy is not None else None
        report = await self_test(cfg, transport, agent.identity, agent.model, route=route)
    finally:
        await transport.close()
    steps = report["steps"]
    steps["registration"] = (
        {"ok": True, "device_id": agent.identity.device_id} if agent.identity.is_registered
        else {"ok": False, "error": "not registered yet: the device registers at its next "
                                    "sync (it needs a registration key)"})
    ordered = tuple(CheckStep(name, _TITLES[name], steps[name].get("ok"),
                              _detail(steps[name]))
                    for name in ("dns", "proxy", "tcp", "tls", "registration", "mtls_call",
                                 "clock") if name in steps)
    ok = all(s.ok is not False for s in ordered)
    return ConnectionCheck(ok=ok, server=str(report["server"]), steps=ordered, raw=report)


def _detail(step: dict[str, Any]) -> str:
    """One line a person reads: the error (with its reason) or what was found."""
    if step.get("ok") is False:
        reason = step.get("reason")
        error = str(step.get("error", "no answer from the server to compare with"))
        return f"{reason}: {error}" if reason else error
    parts = []
    for key in ("addresses", "target", "via", "mode", "version", "server_name", "note",
                "device_id", "offset_s"):
        if step.get(key) not in (None, "", []):
            value = step[key]
            parts.append(f"{key.replace('_', ' ')} "
                         f"{', '.join(value) if isinstance(value, list) else value}")
    return "; ".join(parts) or "ok"
