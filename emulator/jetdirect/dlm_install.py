"""Firmware sent as a print job (DLM on port 9100), through the same checks as downloads.

The 9100 server hands a parsed :class:`~emulator.jetdirect.jobs.DlmFile` to
:func:`dlm_installer`'s callback. It runs ``device_direct``'s own verification
(:func:`device_direct.core.firmware.verify_image`: Ed25519 signature with the pinned
key, this model, newer than the running version, size and hash), then writes the image
to the inactive bank, boots it on trial and commits it. A file that fails a check is
refused with the check's name and nothing is written; so is a file the device cannot
take now (powered off, booting, a trial bank running), with the device's reason.

One file is installed at a time, as a printer's job queue takes them: a second file
sent on another connection meanwhile waits, then is checked against the version the
first one installed (two interleaved installs would boot one file's bank under the
other's name).
"""

from __future__ import annotations

import asyncio
import logging

from device_direct.clock import Clock
from device_direct.core.firmware import DlmHeader, verify_image
from device_direct.errors import FirmwareError, ModelError
from emulator.jetdirect.jobs import DlmFile
from emulator.jetdirect.server import DlmRejected, FirmwareHandler
from emulator.model.device import EmulatedDevice

log = logging.getLogger(__name__)


def dlm_installer(device: EmulatedDevice, public_key: str | bytes, clock: Clock
                  ) -> FirmwareHandler:
    """An ``on_firmware`` callback that verifies, then installs, a DLM file."""

    lock = asyncio.Lock()

    async def install(dlm: DlmFile) -> None:
        async with lock:
            await _install(dlm)

    async def _install(dlm: DlmFile) -> None:
        header = DlmHeader(name=dlm.name, version=dlm.version, signature=dlm.signature)
        state = device.firmware()
        try:
            verify_image(header, dlm.payload, public_key=public_key,
                         model=device.identity().model, running_version=state.running_version,
                         now=clock.now())
        except FirmwareError as exc:
            log.warning("DLM %s %s refused: %s", dlm.name, dlm.version, exc)
            raise DlmRejected(f"{exc.check}: {exc}") from exc
        try:
            await device.write_inactive_bank(dlm.version, dlm.payload)
            await device.boot_bank(device.firmware().inactive.name, trial=True)
            await device.commit_bank()
        except ModelError as exc:
            log.warning("DLM %s %s not installed: %s", dlm.name, dlm.version, exc)
            raise DlmRejected(f"device: {exc}") from exc
        log.info("DLM firmware %s installed and committed", dlm.version)

    return install
