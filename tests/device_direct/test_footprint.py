"""The agent's start-up footprint: which modules an idle agent has loaded.

Issue 4's goal (at most 5 MiB and 50 ms over ``import aiohttp, cryptography``) is
measured by ``bench/agent_footprint.py``; timings do not belong in tests. What the
tests guard is the cause: a fresh interpreter that builds and starts an agent with a
stored identity, no proxy and no alert mail, and lets it park until its next sync, has
not imported cryptography's x509 or key code (its Rust bindings are most of the
memory), the SMTP mailer, zipfile or ElementTree (payload building), proxy discovery or
the self-test, nor aiohttp. A second run with a proxy and alert mail configured checks that the
probe does see those modules when they are in use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tlsfixtures import TestCA

from device_direct.identity import IdentityStore

ROOT = Path(__file__).resolve().parents[2]

# Not loaded by an idle agent configured without proxy and alerts. (email.message is
# not in the list: aiohttp itself imports it; smtplib and email.generator are the
# mailer's own.)
HEAVY = (
    "cryptography.x509",
    "cryptography.hazmat.bindings._rust",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.serialization",
    "smtplib",
    "email.generator",
    "zipfile",
    "xml.etree.ElementTree",
    "device_direct.certificates",
    "device_direct.proxy",
    "device_direct.pac",
    "device_direct.alerts",
    "device_direct.troubleshoot",
    # The transport speaks HTTP/1.1 itself (device_direct.core.http1); aiohttp is only
    # the PAC fetch's, which an agent without proxy discovery never imports.
    "aiohttp",
)

# Runs in a fresh interpreter: build the agent from a config file, start it, wait until
# it parks on the clock (the clock tells, no sleeping), report what is loaded.
PROBE = r"""
import asyncio, json, sys
from datetime import UTC, datetime
from device_direct.agent import Agent
from device_direct.clock import SystemClock
from device_direct.config import load_config
from device_direct.model import (Counters, DeviceSnapshot, FirmwareBank, FirmwareState,
    Identity, NetworkInfo, PowerState)

class StaticModel:
    power = PowerState.READY
    def identity(self): return Identity("Acme", "Probe 1", "PROBE001", "P1", {"system": "1.0"})
    def network(self): return NetworkInfo("02:00:00:00:00:01", "10.0.0.2", "255.255.255.0")
    def counters(self): return Counters()
    def alerts(self): return ()
    def firmware(self): return FirmwareState("A", (FirmwareBank("A", "1.0"), FirmwareBank("B", "")))
    def engineering_log(self): return ""
    def snapshot(self):
        return DeviceSnapshot(datetime.now(UTC), self.power, self.identity(), self.network(),
            (), (), (), self.counters(), (), (), (), self.firmware())

class ParkingClock(SystemClock):
    def __init__(self):
        super().__init__()
        self.parked = asyncio.Event()
    async def sleep_until(self, when):
        self.parked.set()
        await super().sleep_until(when)

async def main():
    clock = ParkingClock()
    agent = Agent(load_config(sys.argv[1]), StaticModel(), clock=clock)
    task = asyncio.create_task(agent.run())
    await clock.parked.wait()
    loaded = sorted(sys.modules)
    task.cancel()
    return {"registered": agent.identity.is_registered, "loaded": loaded,
            "next_sync": agent.next_sync.isoformat() if agent.next_sync else None}

print(json.dumps(asyncio.run(main())))
"""


def _registered_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    store = IdentityStore(data / "identity")
    ca = TestCA()
    cert = ca.sign_csr(store.create_csr("PROBE001").encode())
    store.store_registration("probe-1", cert.decode(), ca.cert_pem.decode())
    return data


def _probe(tmp_path: Path, extra: str = "") -> dict[str, object]:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[server]\nurl = "https://dd.example.com"\n'
        f'[device]\ndata_dir = "{_registered_data_dir(tmp_path)}"\n'
        f'time_zone = "Europe/Berlin"\n{extra}',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(cfg)], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"the probe interpreter failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_an_idle_registered_agent_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    loaded = set(result["loaded"])  # type: ignore[call-overload]
    assert result["registered"] is True  # the stored identity was read, not ignored
    assert result["next_sync"] is not None  # it got as far as parking until the sync
    assert {"device_direct.agent", "device_direct.identity", "device_direct.transport"} <= loaded
    assert sorted(loaded.intersection(HEAVY)) == []


def test_the_probe_sees_proxy_and_mailer_when_they_are_configured(tmp_path: Path) -> None:
    result = _probe(tmp_path, (
        '[proxy]\nmode = "manual"\nhost = "proxy.example.com"\nport = 3128\n'
        '[alerts]\nrecipients = ["keyholder@example.com"]\nsmtp_host = "mail.example.com"\n'
    ))
    loaded = set(result["loaded"])  # type: ignore[call-overload]
    assert {"device_direct.proxy", "device_direct.alerts", "smtplib"} <= loaded
    # Neither needs the certificate machinery.
    assert "cryptography.x509" not in loaded
