"""Port 9100 of the emulated printer: PJL, print jobs that move the meters, DLM files.

``JetDirectServer(device, clock=..., config=JetDirectConfig(port=0), on_firmware=...)``,
``await start()``, read ``port``, ``await stop()``.
"""

from __future__ import annotations

from emulator.jetdirect.jobs import DlmError, DlmFile, parse_dlm
from emulator.jetdirect.server import (
    DlmRejected,
    JetDirectConfig,
    JetDirectError,
    JetDirectServer,
    reject_firmware,
)

__all__ = [
    "DlmError",
    "DlmFile",
    "DlmRejected",
    "JetDirectConfig",
    "JetDirectError",
    "JetDirectServer",
    "parse_dlm",
    "reject_firmware",
]
