"""DLM firmware over port 9100 goes through device_direct's firmware verification."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_direct.core.firmware import DlmHeader, dlm_signed_bytes
from emulator.clock import VirtualClock
from emulator.device_runner import DeviceOptions, DeviceRunner
from emulator.jetdirect import JetDirectServer
from emulator.model.device import EmulatedDevice

UEL = b"\x1b%-12345X"
FF = b"\x0c"
KEY = Ed25519PrivateKey.generate()
PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
IMAGE = bytes(range(256)) * 64


def dlm(model: str, version: str, *, key: Ed25519PrivateKey = KEY,
        payload: bytes = IMAGE) -> bytes:
    sig = key.sign(dlm_signed_bytes(DlmHeader(model, version, b""), payload)).hex()
    return (b"%%XRXbegin\n%%OID_ATT_JOB_TYPE OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE\n"
            + f'%%OID_ATT_DLM_NAME "{model}"\n%%OID_ATT_DLM_VERSION "{version}"\n'.encode()
            + f'%%OID_ATT_DLM_SIGNATURE "{sig}"\n%%XRXend\n'.encode() + payload)


async def push(port: int, data: bytes) -> None:
    """Send a job the way a print tool does and wait for the ECHO (job processed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UEL + data + UEL + b"@PJL ECHO DONE42\r\n" + UEL)
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"@PJL ECHO DONE42\r\n" + FF), timeout=20)
    writer.close()


@contextlib.asynccontextmanager
async def printer(state_dir: Path) -> AsyncIterator[tuple[EmulatedDevice, JetDirectServer]]:
    """A device with port 9100 and the firmware key, on a virtual clock with no
    participants (boots and flash writes take no real time): (device, 9100 server)."""
    runner = DeviceRunner(DeviceOptions(state_dir=state_dir, firmware_key=PEM),
                          clock=VirtualClock())
    await runner.start()
    try:
        assert runner.device is not None and runner.jetdirect is not None
        yield runner.device, runner.jetdirect
    finally:
        await runner.stop()


async def test_signed_newer_dlm_is_installed_and_bad_ones_are_not(tmp_path: Path) -> None:
    async with printer(tmp_path) as (device, server):
        model = device.identity().model
        before = device.firmware().running_version
        newer = before + ".1"

        cases = [
            (dlm(model, newer, key=Ed25519PrivateKey.generate()), "signature"),
            (dlm("Some Other Model", newer), "model"),
            (dlm(model, "0.0.1"), "version"),
            (dlm(model, newer)[:-1] + b"!", "signature"),  # payload changed after signing
        ]
        for data, check in cases:
            await push(server.port, data)
            outcome = server.stats.firmware[-1]
            assert not outcome.accepted and outcome.reason.startswith(check), outcome.reason
            assert device.firmware().running_version == before
            assert device.firmware().inactive.version != newer

        await push(server.port, dlm(model, newer))
        assert server.stats.firmware[-1].accepted, server.stats.firmware[-1].reason
        state = device.firmware()
        assert state.running_version == newer and not state.trial
        assert device.counters().total_impressions == 0  # firmware is never printed


async def test_two_dlm_files_at_once_install_one_after_the_other(tmp_path: Path) -> None:
    # Interleaved, the second file overwrote the first one's bank while it was being
    # flashed: port 9100 reported the newer version installed, the older one ran.
    async with printer(tmp_path) as (device, server):
        model, before = device.identity().model, device.firmware().running_version
        await asyncio.gather(push(server.port, dlm(model, before + ".2")),
                             push(server.port, dlm(model, before + ".1")))
        outcomes = {o.version: o for o in server.stats.firmware}
        assert outcomes[before + ".2"].accepted
        assert outcomes[before + ".1"].reason.startswith("version")  # older than .2 now
        state = device.firmware()
        assert state.running_version == before + ".2" and not state.trial


async def test_a_dlm_file_the_device_cannot_take_now_is_refused_with_its_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with printer(tmp_path) as (device, server):
        before = device.firmware().running_version
        await device.power_off()
        with caplog.at_level(logging.WARNING):
            await push(server.port, dlm(device.identity().model, before + ".1"))
        outcome = server.stats.firmware[-1]
        assert not outcome.accepted and outcome.reason.startswith("device: cannot write")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback
        await device.power_on()
        assert device.firmware().running_version == before
