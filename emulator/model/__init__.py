"""The emulated MFP: print engine, meters, supplies, HFSI, NVM, faults, power states,
firmware banks. :class:`EmulatedDevice` implements ``device_direct.model.DeviceModel``.
"""

from __future__ import annotations

from emulator.model.device import EmulatedDevice
from emulator.model.errors import DeviceCommandError, DeviceStateError
from emulator.model.profile import Profile, available_profiles, load_profile
from emulator.model.usage import DayResult

__all__ = [
    "DayResult",
    "DeviceCommandError",
    "DeviceStateError",
    "EmulatedDevice",
    "Profile",
    "available_profiles",
    "load_profile",
]
