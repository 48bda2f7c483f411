"""Firmware sent as a print job (DLM on port 9100), through the same checks as downloads.

The 9100 server hands a parsed :class:`~emulator.jetdirect.jobs.DlmFile` to
:func:`dlm_installer`'s callback. It runs ``device_direct``'s own verification
(:func:`device_direct.core.firmware.verify_image`: Ed25519 signature with the pinned
key, this model, newer than the running version, size and hash), then writes the image
to the inactive bank, boots it on trial and commits it. A file that fails a check is
refused with the check's name and nothing is written.
"""

from __future__ import annotations

import logging

from device_direct.clock import Clock
from device_direct.core.firmware import DlmHeader, verify_image
from device_direct.errors import FirmwareError
from emulator.jetdirect.jobs import DlmFile
from emulator.jetdirect.server import DlmRejected, FirmwareHandler
from emulator.model.device import EmulatedDevice

log = logging.getLogger(__name__)


def dlm_installer(device: EmulatedDevice, public_key: str | bytes, clock: Clock
                  ) -> FirmwareHandler:
    """An ``on_firmware`` callback that verifies, then installs, a DLM file."""

    async def install(dlm: DlmFile) -> None:
        header = DlmHeader(name=dlm.name, version=dlm.version, signature=dlm.signature)
        state = device.firmware()
        try:
            verify_image(header, dlm.payload, public_key=public_key,
                         model=device.identity().model, running_version=state.running_version,
                         now=clock.now())
        except FirmwareError as exc:
            log.warning("DLM %s %s refused: %s", dlm.name, dlm.version, exc)
            raise DlmRejected(f"{exc.check}: {exc}") from exc
        await device.write_inactive_bank(dlm.version, dlm.payload)
        await device.boot_bank(device.firmware().inactive.name, trial=True)
        await device.commit_bank()
        log.info("DLM firmware %s installed and committed", dlm.version)

    return install
