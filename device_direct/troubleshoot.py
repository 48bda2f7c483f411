"""The ``troubleshoot`` action: a connectivity self-test plus the device's latest status.

Each step is tried on its own and reported as ``{"ok": bool, ...}`` so a support agent
sees where the path to the server breaks: name resolution of the server host, a TCP
connection (to the proxy when one is configured, then a CONNECT through it), a TLS
handshake with the same checks as uploads (CA bundle, host name, TLS >= 1.2, the
device's client certificate), and the server clock's offset from the ``Date`` header of
an mTLS call. Failures are described, never raised: the self-test itself succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

from device_direct.config import AgentConfig
from device_direct.errors import DeviceDirectError
from device_direct.identity import IdentityStore
from device_direct.model import DeviceModel
from device_direct.transport import Transport, build_tls_context, tls_reason

STEP_TIMEOUT_S = 15.0
LATEST_FAULTS = 5


async def self_test(
    config: AgentConfig, transport: Transport, identity: IdentityStore, model: DeviceModel,
    *, route: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the connectivity self-test and collect the latest status, as a JSON object.

    ``route`` is how the agent reaches the server (the proxy detector's description)."""
    host, port = config.server.host, config.server.port
    proxy = config.proxy
    via_proxy = proxy.mode == "manual" and proxy.host is not None and proxy.port is not None
    steps: dict[str, Any] = {}
    steps["dns"] = await _resolve(host)
    if via_proxy:
        assert proxy.host is not None and proxy.port is not None
        steps["proxy"] = await _tcp(proxy.host, proxy.port)
        steps["tcp"] = {"ok": steps["proxy"]["ok"], "via": "proxy"}
    else:
        steps["proxy"] = {"ok": True, "mode": proxy.mode, "used": False}
        steps["tcp"] = await _tcp(host, port)
    if via_proxy:
        # The TLS checks through a tunnel are what the mTLS call below exercises.
        steps["tls"] = {"ok": None, "note": "checked through the proxy by the mTLS call"}
    else:
        steps["tls"] = await _tls(config, identity, host, port)
    steps["mtls_call"] = await _mtls_call(transport, model)
    if route is not None:
        steps["proxy"]["route"] = route
    offset = transport.clock_offset()
    steps["clock"] = {"ok": offset is not None and abs(offset.total_seconds()) < 300,
                      "offset_s": round(offset.total_seconds(), 3) if offset else None}
    ok = all(step.get("ok") is not False for step in steps.values())
    return {"ok": ok, "server": f"{host}:{port}", "steps": steps, "status": status(model)}


def status(model: DeviceModel) -> dict[str, Any]:
    """Power, alerts, the latest faults and firmware: the device's status as JSON."""
    fw = model.firmware()
    snap = model.snapshot()
    return {
        "power": model.power.value,
        "alerts": [{"code": a.code, "severity": a.severity.name.lower(),
                    "description": a.description, "raised_at": a.raised_at.isoformat()}
                   for a in model.alerts()],
        "faults": [{"code": f.code, "description": f.description, "at": f.at.isoformat(),
                    "impressions": f.impressions} for f in snap.faults[:LATEST_FAULTS]],
        "firmware": {"running": fw.running_version, "bank": fw.active, "trial": fw.trial},
        "total_impressions": snap.counters.total_impressions,
    }


async def _resolve(host: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), STEP_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return {"ok": False, "host": host, "error": _failed(exc, "no answer from the resolver")}
    addresses = sorted({str(info[4][0]) for info in infos})
    return {"ok": True, "host": host, "addresses": addresses}


async def _tcp(host: str, port: int) -> dict[str, Any]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return {"ok": False, "target": f"{host}:{port}",
                "error": _failed(exc, "no connection")}
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return {"ok": True, "target": f"{host}:{port}"}


async def _tls(config: AgentConfig, identity: IdentityStore, host: str, port: int
               ) -> dict[str, Any]:
    library = config.server.tls_library
    try:
        client = identity.client_cert_files() if identity.is_registered else None
        ctx = build_tls_context(library, config.server.ca_bundle, client)
    except DeviceDirectError as exc:
        return {"ok": False, "reason": "config", "error": str(exc)}
    try:
        if isinstance(ctx, ssl.SSLContext):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx,
                                        server_hostname=config.server.server_name),
                STEP_TIMEOUT_S)
            ssl_object = writer.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        else:
            from device_direct.tls_bundled import open_tls

            end = _TlsEnd()
            await asyncio.wait_for(open_tls(asyncio.get_running_loop(), end, host, port,
                                            ctx, config.server.server_name), STEP_TIMEOUT_S)
            assert end.transport is not None
            version = end.transport.get_extra_info("tls_version")
            end.transport.close()
    except ssl.SSLCertVerificationError as exc:
        return {"ok": False, "reason": tls_reason(exc.verify_code, exc.reason),
                "error": exc.verify_message or str(exc)}
    except ssl.SSLError as exc:
        return {"ok": False, "reason": tls_reason(None, exc.reason), "error": str(exc)}
    except (OSError, TimeoutError) as exc:
        return {"ok": False, "reason": "connect",
                "error": _failed(exc, "no TLS handshake")}
    return {"ok": True, "version": version, "server_name": config.server.server_name,
            "client_certificate": client is not None, "library": library}


def _failed(exc: BaseException, missing: str) -> str:
    """A step's error text; a timeout (whose own text is empty) says what it missed."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: {missing} within {STEP_TIMEOUT_S:g} s"
    return f"{type(exc).__name__}: {exc}"


class _TlsEnd(asyncio.Protocol):
    """The TLS step's end of a connection on the bundled library: it only says hello."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def _mtls_call(transport: Transport, model: DeviceModel) -> dict[str, Any]:
    try:
        await transport.check_firmware(model.identity().model,
                                       model.firmware().running_version)
    except DeviceDirectError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True}
