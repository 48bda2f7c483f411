"""The emulated printer's SNMP agent: Printer-MIB and HOST-RESOURCES-MIB over pysnmp.

``SnmpAgent(device, clock=..., config=SnmpAgentConfig(port=0))``, ``await start()``,
read ``port``, ``await stop()``.
"""

from __future__ import annotations

from emulator.snmp.agent import Community, SnmpAgent, SnmpAgentConfig, SnmpAgentError, UsmUser

__all__ = ["Community", "SnmpAgent", "SnmpAgentConfig", "SnmpAgentError", "UsmUser"]
