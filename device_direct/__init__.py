"""Device Direct: the remote-services module that runs inside a networked printer.

The package talks to its host only through :class:`device_direct.model.DeviceModel`
and reads time only from an injected :class:`device_direct.clock.Clock`.
"""

from __future__ import annotations

__version__ = "0.1.0"
