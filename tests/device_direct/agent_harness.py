"""Shared set-up for agent tests: a reference server, an emulated MFP and an agent."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from device_direct.agent import Agent
from device_direct.clock import Clock
from device_direct.config import AgentConfig, load_config
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.server.app import ReferenceServer


def write_agent_config(
    path: Path,
    server: ReferenceServer,
    data_dir: Path,
    *,
    key: str,
    upload_time: str = "02:00",
    missed: str = "skip",
    time_zone: str = "Europe/Berlin",
    extra: str = "",
    tls_library: str = "system",
) -> Path:
    """An agent config for ``server`` (TOML, as a user would write it)."""
    path.write_text(
        f"""
[server]
url = "https://127.0.0.1:{server.port}/"
ca_bundle = "{server.ca_cert_path}"
server_name = "localhost"
registration_key = "{key}"
tls_library = "{tls_library}"

[device]
data_dir = "{data_dir}"
time_zone = "{time_zone}"

[schedule]
upload_time = "{upload_time}"
missed = "{missed}"

[retry]
base_s = 5.0
cap_s = 3600.0
{extra}
""",
        encoding="utf-8",
    )
    return path


def make_device(
    clock: Clock, state_dir: Path | None, *, serial: str = "E2E0001", profile: str = "office-color",
    seed: int = 7,
) -> EmulatedDevice:
    return EmulatedDevice(
        load_profile(profile), serial=serial, clock=clock, rng_seed=seed, state_dir=state_dir,
        fsync=False,
    )


def make_agent(
    tmp: Path, server: ReferenceServer, model: EmulatedDevice, clock: Clock, *,
    seed: int = 1, **cfg: Any,
) -> tuple[Agent, AgentConfig]:
    key = server.create_registration_key()
    cfg_path = write_agent_config(tmp / "agent.toml", server, tmp / "data", key=key, **cfg)
    config = load_config(cfg_path)
    return Agent(config, model, clock=clock, rng=random.Random(seed)), config
