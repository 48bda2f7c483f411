"""A simulated office network: emulated printers on their own loopback addresses.

``EmulatedLan(LanOptions(LanSpec(printers=50), snmp_port=0))``, ``await start()``,
``describe()``, ``await stop()``; or ``python -m emulator lan --printers 50``.
"""

from __future__ import annotations

from emulator.lan.network import EmulatedLan, LanAgentOptions, LanOptions, LanPrinter
from emulator.lan.plan import HostKind, LanSpec, LanSpecError, plan_lan

__all__ = ["EmulatedLan", "HostKind", "LanAgentOptions", "LanOptions", "LanPrinter",
           "LanSpec", "LanSpecError", "plan_lan"]
