"""The one exception tree of the emulator, server and fleet runner."""

from __future__ import annotations


class EmulatorError(Exception):
    """Root of every error raised by the emulator package."""


class ProfileError(EmulatorError):
    """A device profile is wrong; the message names the file and the key."""


class ModelStateError(EmulatorError):
    """The model refused a command in its current state (e.g. print while off)."""


class StateStorageError(EmulatorError):
    """The model's or server's persistent state could not be read or written."""


class ServerError(EmulatorError):
    """The reference server could not start or its state directory is unusable."""


class ScenarioError(EmulatorError):
    """A scenario file is wrong, or an expectation failed."""
