"""Plug an emulated MFP into ``device-direct run`` (``device.profile`` in the config).

``device_direct`` never imports the emulator; its CLI loads this factory by name.
"""

from __future__ import annotations

import hashlib
import os

from device_direct.clock import Clock
from device_direct.config import AgentConfig
from device_direct.errors import ConfigError
from emulator.errors import ProfileError
from emulator.model.device import EmulatedDevice
from emulator.model.profile import available_profiles, load_profile


def emulated_serial(config: AgentConfig) -> str:
    """A serial that stays the same across restarts of the same data directory."""
    explicit = os.environ.get("DD_EMULATED_SERIAL")
    if explicit:
        return explicit
    digest = hashlib.sha256(str(config.device.data_dir.resolve()).encode()).hexdigest()
    return "EMU" + digest[:9].upper()


def make_model(config: AgentConfig, clock: Clock) -> EmulatedDevice:
    """An emulated MFP of ``device.profile`` whose state lives next to the agent's data."""
    name = config.device.profile or "office-color"
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        # A config mistake: the CLI adds the file name and exits 2.
        known = ", ".join(available_profiles()) or "none"
        raise ConfigError(f"no device profile {name!r} ({exc}); known profiles: {known}",
                          key="device.profile") from exc
    return EmulatedDevice(
        profile,
        serial=emulated_serial(config),
        clock=clock,
        rng_seed=0,
        state_dir=config.device.data_dir / "model",
        time_zone=config.device.time_zone,  # the printer works where its agent schedules
    )
