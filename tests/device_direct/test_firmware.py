"""Firmware updates end to end over real TLS, and the attack matrix.

Every case ends by checking three things: which firmware runs (and that no trial is
left), what result the server got for the ``upgrade_firmware`` action, and that no
bank holds an image that should not be there.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_direct.agent import Agent
from device_direct.config import MaintenanceWindow
from device_direct.transport import Transport
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from emulator.server.firmware import make_manifest, sign_manifest
from tests.device_direct.test_actions_rig import (
    PowerCut,
    Rig,
    make_rig,
    pem_setting,
)

OLD = "100.002.057.09608"  # office-color's shipped system firmware
NEW = "100.003.000.00001"
IMAGE = bytes(range(256)) * 1200  # 300 KiB: several download chunks



async def fw_rig(tmp_path: Path, server: ReferenceServer, clock: VirtualClock, *,
                 extra: str = "", transport_factory: Any = None) -> Rig:
    services = "[services]\n" + pem_setting(server.firmware_public_key_pem) + extra
    return await make_rig(tmp_path, server, clock, extra=services,
                          transport_factory=transport_factory)


def model_name(rig: Rig) -> str:
    return rig.device.identity().model


def banks(rig: Rig) -> dict[str, str]:
    return {b.name: b.version for b in rig.device.firmware().banks}


def assert_runs(rig: Rig, version: str) -> None:
    fw = rig.device.firmware()
    assert fw.running_version == version
    assert fw.trial is False


async def upgrade(rig: Rig, params: dict[str, Any] | None = None) -> str:
    aid = rig.enqueue("upgrade_firmware", params if params is not None else {"install": "now"})
    assert await rig.agent.sync("on-demand")
    return aid


def result(rig: Rig, aid: str) -> tuple[str | None, dict[str, Any]]:
    row = rig.results()[aid]
    return row["result_status"], row["result_detail"] or {}


# -- the good path --------------------------------------------------------------------------


async def test_signed_newer_image_is_installed_trial_booted_checked_and_committed(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert status == "succeeded", detail
    assert detail["version"] == NEW and detail["previous"] == OLD
    assert_runs(rig, NEW)
    assert banks(rig)["B"] == NEW and banks(rig)["A"] == OLD
    assert rig.device.firmware().banks[1].sha256 == hashlib.sha256(IMAGE).hexdigest()
    assert not (tmp_path / "data" / "firmware" / "image.part").exists()
    # The next upload reports the new firmware.
    await rig.agent.queue_payload("on-demand")
    assert await rig.agent.sync(None)
    assert "trial bank B was not committed" not in rig.device.engineering_log()


async def test_up_to_date_is_a_success_without_touching_the_banks(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    aid = await upgrade(rig)
    assert result(rig, aid) == ("succeeded", {"message": "up to date", "running": OLD})
    assert banks(rig)["B"] in ("", OLD)


# -- bad manifests: the attack matrix ---------------------------------------------------------


def _offer(server: ReferenceServer, model: str, *, version: str = NEW, image: bytes = IMAGE,
           served: bytes | None = None, expires_in: timedelta = timedelta(days=1),
           key: Ed25519PrivateKey | None = None, tamper: dict[str, Any] | None = None) -> None:
    manifest = make_manifest(model, version, image, expires_at=server.clock.now() + expires_in)
    signature = sign_manifest(manifest, key or server.pki.firmware_key)
    if tamper:
        manifest = {**manifest, **tamper}
    server.firmware_qa.force_offer(model, manifest, signature,
                                   image=served if served is not None else image)


BAD_OFFERS: dict[str, tuple[dict[str, Any], str]] = {
    "bad-signature": ({"tamper": {"size": len(IMAGE) + 1}}, "signature"),
    "wrong-key": ({"key": Ed25519PrivateKey.generate()}, "signature"),
    "older-version": ({"version": "100.001.000"}, "version"),
    "same-version": ({"version": OLD}, "version"),
    "expired": ({"expires_in": timedelta(seconds=-1)}, "expired"),
    "hash-mismatch": ({"served": bytes(len(IMAGE))}, "sha256"),
}


@pytest.mark.parametrize("case", sorted(BAD_OFFERS))
async def test_bad_manifest_or_image_is_refused_and_nothing_installed(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock, case: str
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    kwargs, check = BAD_OFFERS[case]
    _offer(server, model_name(rig), **kwargs)
    before = banks(rig)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert status == "failed"
    assert detail["check"] == check, detail
    assert_runs(rig, OLD)
    assert banks(rig) == before
    assert not (tmp_path / "data" / "firmware" / "image.part").exists()
    assert not rig.agent.firmware.busy


async def test_image_for_another_model_is_refused(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    manifest = make_manifest("Other Model 9000", NEW, IMAGE,
                             expires_at=clock.now() + timedelta(days=1))
    server.firmware_qa.force_offer(model_name(rig), manifest,
                                   sign_manifest(manifest, server.pki.firmware_key), IMAGE)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert (status, detail["check"]) == ("failed", "model")
    assert_runs(rig, OLD)


async def test_endless_body_is_cut_at_the_manifest_size_and_refused(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    server.firmware_qa.set_image_fault(extra_bytes=8 << 20)
    before = banks(rig)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert (status, detail["check"]) == ("failed", "size"), detail
    assert_runs(rig, OLD)
    assert banks(rig) == before
    assert not (tmp_path / "data" / "firmware" / "image.part").exists()


async def test_truncated_download_resumes_with_range_after_a_restart(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    server.firmware_qa.set_image_fault(truncate_next=1)
    aid = await upgrade(rig)
    assert server.firmware_qa.truncated == 1
    assert result(rig, aid)[0] is None  # still in progress
    part = tmp_path / "data" / "firmware" / "image.part"
    have = part.stat().st_size
    assert 0 < have < len(IMAGE)
    assert rig.agent.firmware.record.state.value == "downloading"
    agent = rig.restart()  # the partial download survives a restart
    due = agent.firmware.next_due(clock.now())
    assert due is not None and due > clock.now()
    clock.advance_to(due)
    await agent.run_background()  # resumes, installs, commits
    await agent.run_background()  # reports
    status, detail = result(rig, aid)
    assert status == "succeeded", detail
    assert detail["resumed_from"] == [have]
    assert_runs(rig, NEW)


# -- power loss at each step -------------------------------------------------------------------


@pytest.mark.parametrize("cut, expect_version, expect_status", [
    ("write_inactive_bank:after", NEW, "succeeded"),  # written again after the boot
    ("boot_bank:before", OLD, "failed"),
    ("boot_bank:after", OLD, "failed"),  # on trial, not committed: the loader falls back
    ("commit_bank:before", OLD, "failed"),
    ("commit_bank:after", NEW, "succeeded"),
])
async def test_power_loss_at_each_step_leaves_old_or_new_committed_firmware(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock, cut: str,
    expect_version: str, expect_status: str,
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    rig.model.cut_at = cut
    aid = rig.enqueue("upgrade_firmware", {"install": "now"})
    with pytest.raises(PowerCut):
        await rig.agent.sync("on-demand")
    agent = await rig.power_on_and_restart()
    for _ in range(3):
        await agent.run_background()
    status, detail = result(rig, aid)
    assert status == expect_status, detail
    assert_runs(rig, expect_version)
    assert not agent.firmware.busy
    if expect_status == "failed":
        assert detail["check"] == "interrupted"


async def test_power_loss_while_downloading_keeps_the_part_and_resumes(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    server.firmware_qa.set_image_fault(truncate_next=1)
    aid = await upgrade(rig)
    rig.device.power_loss()  # while waiting to retry the download
    agent = await rig.power_on_and_restart()
    due = agent.firmware.next_due(clock.now())
    assert due is not None
    clock.advance_to(max(due, clock.now()))
    await agent.run_background()
    await agent.run_background()
    assert result(rig, aid)[0] == "succeeded"
    assert_runs(rig, NEW)


async def test_power_loss_after_the_last_byte_is_stored_finishes_without_asking_again(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    # The whole image reached image.part, then the power went off before the record
    # said "downloaded". The resume asked for bytes=<size>- and took the server's 416
    # as a refused download: the update failed and the image was thrown away.
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    server.firmware_qa.set_image_fault(truncate_next=1)
    aid = await upgrade(rig)
    assert rig.agent.firmware.record.state.value == "downloading"
    (tmp_path / "data" / "firmware" / "image.part").write_bytes(IMAGE)
    rig.device.power_loss()
    agent = await rig.power_on_and_restart()
    due = agent.firmware.next_due(clock.now())
    assert due is not None
    clock.advance_to(max(due, clock.now()))
    await agent.run_background()
    await agent.run_background()
    status, detail = result(rig, aid)
    assert status == "succeeded", detail
    assert_runs(rig, NEW)


# -- health check --------------------------------------------------------------------------


async def test_image_that_fails_its_health_check_is_rolled_back_and_reported(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    def broken_on_trial(agent: Agent) -> Transport:
        # The new firmware's network stack is broken: on trial, nothing reaches the server.
        cfg = agent.config.server
        url = "https://127.0.0.1:9/" if agent.model.firmware().trial else cfg.url
        return Transport(url, cfg.ca_bundle, cfg.server_name, agent.identity, agent.clock)

    rig = await fw_rig(tmp_path, server, clock, transport_factory=broken_on_trial)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert status == "failed"
    assert detail["check"] == "health"
    assert "rolled back" in detail["message"]
    assert_runs(rig, OLD)
    assert "rollback to bank A" in rig.device.engineering_log()


async def test_power_loss_during_rollback_still_ends_on_the_old_firmware(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    def broken_on_trial(agent: Agent) -> Transport:
        cfg = agent.config.server
        url = "https://127.0.0.1:9/" if agent.model.firmware().trial else cfg.url
        return Transport(url, cfg.ca_bundle, cfg.server_name, agent.identity, agent.clock)

    rig = await fw_rig(tmp_path, server, clock, transport_factory=broken_on_trial)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    rig.model.cut_at = "rollback_bank:before"
    aid = rig.enqueue("upgrade_firmware", {"install": "now"})
    with pytest.raises(PowerCut):
        await rig.agent.sync("on-demand")
    agent = await rig.power_on_and_restart()
    await agent.run_background()
    status, detail = result(rig, aid)
    assert (status, detail["check"]) == ("failed", "health")
    assert_runs(rig, OLD)


# -- policy: automatic updates and the maintenance window -------------------------------------


async def test_customer_opt_out_keeps_firmware_but_not_other_services(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock, extra="auto_firmware = false\n")
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    aid = rig.enqueue("get_status")
    await rig.agent.queue_payload("scheduled")
    assert await rig.agent.sync("scheduled")  # the daily sync: check, but no install
    assert result(rig, aid)[0] == "succeeded"
    assert_runs(rig, OLD)
    assert not rig.agent.firmware.busy
    assert banks(rig)["B"] in ("", OLD)


async def test_automatic_update_installs_at_the_maintenance_window(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    # 09:00 UTC is 10:00 in Berlin; the window opens at 01:00 Berlin the next night.
    rig = await fw_rig(tmp_path, server, clock,
                       extra='auto_firmware = true\nmaintenance_window = "01:00-03:00"\n')
    assert rig.config.services.maintenance_window == MaintenanceWindow.parse("01:00-03:00")
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    await rig.agent.queue_payload("scheduled")
    assert await rig.agent.sync("scheduled")
    assert rig.agent.firmware.record.state.value == "ready"
    assert banks(rig)["B"] == NEW
    assert_runs(rig, OLD)  # written, not yet installed
    due = rig.agent.firmware.next_due(clock.now())
    assert due == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 01:00 CET
    clock.advance_to(due)
    await rig.agent.run_background()
    assert_runs(rig, NEW)
    assert not rig.agent.firmware.busy


async def test_upgrade_action_waits_for_the_window_then_reports(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await fw_rig(tmp_path, server, clock, extra='maintenance_window = "01:00-03:00"\n')
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    aid = await upgrade(rig, {})
    assert result(rig, aid)[0] is None
    # A restart while waiting: the action stays running, the update resumes.
    agent = rig.restart()
    assert agent.actions.journal.get(aid) is not None
    entry = agent.actions.journal.get(aid)
    assert entry is not None and entry.state.value == "running"
    due = agent.firmware.next_due(clock.now())
    assert due is not None
    clock.advance_to(due)
    await agent.run_background()
    await agent.run_background()
    assert result(rig, aid)[0] == "succeeded"
    assert_runs(rig, NEW)


async def test_no_pinned_key_means_no_update(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    aid = await upgrade(rig)
    status, detail = result(rig, aid)
    assert (status, detail["check"]) == ("failed", "key")
    assert_runs(rig, OLD)


# -- bounded memory (issue 16, item 5) --------------------------------------------------------


async def test_the_image_is_streamed_never_read_whole(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The old path read image.part whole (twice) and handed the bank writer bytes; a
    # 512 MiB image needed that much memory. Now: hashed while it downloads, hashed
    # again a chunk at a time, and the device is given the file. (The peak RSS of a
    # 256 MiB update is measured by bench/agent_footprint.py.)
    rig = await fw_rig(tmp_path, server, clock)
    server.publish_firmware(model_name(rig), NEW, IMAGE)
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        assert path.name != "image.part", "the firmware image was read whole"
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    given: list[object] = []
    device_class = type(rig.device)
    real_write = device_class.write_inactive_bank

    async def write_inactive_bank(self: Any, version: str, image: bytes | Path) -> None:
        given.append(image)
        await real_write(self, version, image)

    monkeypatch.setattr(device_class, "write_inactive_bank", write_inactive_bank)
    aid = await upgrade(rig)
    assert result(rig, aid)[0] == "succeeded"
    assert_runs(rig, NEW)
    assert [type(g) for g in given] == [type(tmp_path)], "the bank writer was given bytes"
    assert rig.device.firmware().banks[1].sha256 == hashlib.sha256(IMAGE).hexdigest()
