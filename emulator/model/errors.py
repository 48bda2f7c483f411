"""Errors of the emulated device that both exception trees must be able to catch.

Device Direct talks to the model through ``device_direct.model.DeviceModel`` and catches
``device_direct.errors.ModelError``; emulator code (fleet, scenarios) catches
``emulator.errors.EmulatorError``. A refused command is both, so each class below
inherits from one class of each tree.
"""

from __future__ import annotations

from device_direct.errors import ModelError
from emulator.errors import EmulatorError, ModelStateError


class DeviceStateError(ModelStateError, ModelError):
    """The command is not allowed in the device's current power/engine state."""


class DeviceCommandError(EmulatorError, ModelError):
    """The command's arguments are wrong (unknown NVM id, value out of range, ...)."""
