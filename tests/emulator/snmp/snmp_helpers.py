"""Running net-snmp's command-line tools against the agent, and reading their output."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

import pytest

from emulator.clock import VirtualClock
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.snmp import SnmpAgent, SnmpAgentConfig, UsmUser
from emulator.snmp.oid_table import Oid, parse_oid

AUTH_KEY = "auth-pass-1"
PRIV_KEY = "priv-pass-1"
USERS = (UsmUser("admin", AUTH_KEY, PRIV_KEY, write=True), UsmUser("reader", AUTH_KEY, PRIV_KEY))


def tool(name: str) -> str:
    """The path of a net-snmp tool; fails (not skips) with the fix when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package 'snmp' (net-snmp tools); "
                    f"these tests need a real SNMP manager")
    return path


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    out: str
    err: str


async def run(name: str, *args: str, timeout_s: float = 2.0, retries: int = 1) -> ToolResult:
    """Run ``name`` with ``args`` (and -t/-r so a lost datagram cannot hang a test)."""
    proc = await asyncio.create_subprocess_exec(
        tool(name), "-t", str(timeout_s), "-r", str(retries), "-m", "", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return ToolResult(proc.returncode, out.decode(), err.decode())


def parse_walk(text: str) -> list[tuple[Oid, str]]:
    """``-On`` output -> [(oid, "TYPE: value")], continuation lines joined."""
    rows: list[tuple[Oid, str]] = []
    for line in text.splitlines():
        if line.startswith(".") and " = " in line:
            oid, value = line.split(" = ", 1)
            rows.append((parse_oid(oid), value))
        elif rows:
            rows[-1] = (rows[-1][0], rows[-1][1] + "\n" + line)
    return rows


def v2c(port: int, community: str = "public") -> list[str]:
    return ["-v2c", "-c", community, "-On", f"127.0.0.1:{port}"]


def v3(port: int, user: str = "admin", auth: str = AUTH_KEY, priv: str = PRIV_KEY) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", auth, "-x", "AES",
            "-X", priv, "-On", f"127.0.0.1:{port}"]


def make_device(clock: VirtualClock, serial: str = "SNMP0001",
                profile: str = "office-color") -> EmulatedDevice:
    return EmulatedDevice(load_profile(profile), serial=serial, clock=clock, rng_seed=3,
                          state_dir=None)


def make_agent(device: EmulatedDevice, clock: VirtualClock) -> SnmpAgent:
    return SnmpAgent(device, clock=clock, config=SnmpAgentConfig(port=0, users=USERS))
