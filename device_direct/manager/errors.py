"""The manager's errors: all are :class:`device_direct.errors.DeviceDirectError`.

Split by cause: a bad target or vendor file is the user's (``ConfigError``, exit 2);
an SNMP failure belongs to one address and goes into the scan report instead of
stopping the scan (:class:`SnmpError` and its kinds carry the address).
"""

from __future__ import annotations

from device_direct.errors import ConfigError, DeviceDirectError


class ManagerError(DeviceDirectError):
    """Root of the device manager's own errors."""


class TargetError(ConfigError):
    """A scan target is not an address, range, block or readable @file."""


class VendorFileError(ConfigError):
    """A vendor definition file is wrong; names the file and the key."""


class SnmpError(ManagerError):
    """One address could not be read; ``kind`` says why, ``address`` says where."""

    kind = "snmp"

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        self.message = message
        super().__init__(f"{address}: {message}")


class SnmpTimeout(SnmpError):
    """No answer in time (after the retries)."""

    kind = "timeout"


class SnmpRemoteError(SnmpError):
    """The agent broke the protocol: garbage, error-status, non-increasing walk, too much."""

    kind = "protocol"


class SnmpLocalError(SnmpError):
    """Our side could not send (bad address, socket error)."""

    kind = "local"
