"""The reference communication server (aiohttp over mutual TLS, SQLite storage).

``ReferenceServer`` is the entry point; see ``docs/protocol.md`` for the wire contract.
"""

from __future__ import annotations

from emulator.server.app import ReferenceServer
from emulator.server.faults import FaultPlan, TlsFault
from emulator.server.storage import Storage

__all__ = ["FaultPlan", "ReferenceServer", "Storage", "TlsFault"]
