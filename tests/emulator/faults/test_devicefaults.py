"""Device and server faults a scenario applies: skewed clocks, the full-disk seam,
checkpoint interruptions and the layered server fault plan."""

from __future__ import annotations

import asyncio
import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import device_direct.outbox_store as store
from device_direct.core.payload import NAMESPACE, PayloadMeta, build_xml, pack_zip
from device_direct.errors import StorageError
from emulator.clock import VirtualClock
from emulator.faults.devicefaults import DiskFullSeam, PowerLoss, ScenarioDevice, SkewedClock
from emulator.faults.server_faults import ServerFaults
from emulator.faults.timeline import Step
from emulator.model.profile import load_profile
from emulator.server.app import ReferenceServer
from emulator.server.faults import TlsFault


async def test_a_skewed_device_sleeps_on_the_fleet_clock() -> None:
    base = VirtualClock()
    skewed = SkewedClock(base, timedelta(hours=-3))
    assert skewed.now() == base.now() - timedelta(hours=3)
    base.register()  # the test: time does not jump while it looks
    base.register()  # the sleeping device
    start = base.now()
    target = skewed.now() + timedelta(minutes=10)
    task = asyncio.create_task(skewed.sleep_until(target))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert base.parked == 1 and base.now() == start  # parked on the base clock
    base.advance_to(base.now() + timedelta(minutes=10))
    await task
    assert skewed.now() == target
    base.unregister()
    base.unregister()


def test_disk_full_seam_refuses_only_under_the_full_directory(tmp_path: Path) -> None:
    full, fine = tmp_path / "full", tmp_path / "fine"
    full.mkdir()
    fine.mkdir()
    real = store.atomic_write
    with DiskFullSeam() as seam:
        seam.fill(full)
        with pytest.raises(OSError) as exc:
            store.atomic_write(full / "x", b"1")
        assert exc.value.errno == errno.ENOSPC
        store.atomic_write(fine / "x", b"1")
        # Through the outbox, as the agent sees it: a StorageError that says so.
        outbox = store.OutboxStore.open(full, budget_bytes=1 << 20, clock=VirtualClock(),
                                        rng=__import__("random").Random(1))
        alloc = outbox.allocate()  # in memory: the payload's add is the first write
        zip_bytes = pack_zip(f'<DeviceData xmlns="{NAMESPACE}" uploadId="{alloc.upload_id}"/>'
                             .encode())
        with pytest.raises(StorageError, match="disk is full"):
            outbox.add(zip_bytes, PayloadMeta(alloc.upload_id, alloc.sequence,
                                              datetime(2026, 1, 1, tzinfo=UTC)))
        seam.free(full)
        store.atomic_write(full / "x", b"2")
        assert seam.refused >= 2
    assert store.atomic_write is real


async def test_install_checkpoint_cuts_before_the_bank_is_written() -> None:
    clock = VirtualClock()
    model = ScenarioDevice(load_profile("office-mono"), serial="CP1", clock=clock,
                           rng_seed=1, state_dir=None, fsync=False)

    def cut(name: str) -> None:
        raise PowerLoss(name, 60.0)

    model.checkpoint = cut
    before = model.firmware()
    with pytest.raises(PowerLoss) as exc:
        await model.write_inactive_bank("200.0", b"image")
    assert exc.value.checkpoint == "install"
    assert model.firmware() == before
    assert model.versions_run == {before.running_version}


async def test_server_fault_windows_overlap_as_layers(tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "srv")
    later: list[tuple[float, object]] = []
    faults = ServerFaults(server, 1, {"office-mono": "Phaser 4600"})

    def step(kind: str, order: int, **params: object) -> Step:
        return Step(server.clock.now(), order, kind, None, params, f"event[{order}]")

    faults.apply(step("server_5xx", 0, fail_next=3, fail_fraction=0.2, minutes=60),
                 lambda m, a: later.append((m, a)))
    faults.apply(step("server_slow", 1, latency_ms=300, minutes=10),
                 lambda m, a: later.append((m, a)))
    faults.apply(step("server_cert", 2, mode="expired", minutes=30),
                 lambda m, a: later.append((m, a)))
    faults.apply(step("server_drop", 3, drop_next=2), lambda m, a: later.append((m, a)))
    plan = server.faults
    assert (plan.fail_next, plan.fail_fraction, plan.latency_ms, plan.drop_next,
            plan.tls) == (3, 0.2, 300, 2, TlsFault.EXPIRED)
    for _, close in sorted(later, key=lambda x: x[0]):
        close()  # type: ignore[operator]
    plan = server.faults
    assert (plan.fail_fraction, plan.latency_ms, plan.tls) == (0.0, 0, TlsFault.NONE)
    assert plan.fail_next == 3 and plan.drop_next == 2  # one-shot counts stay until used
    server.storage.close()


async def test_bad_campaigns_are_forced_offers_and_a_good_one_replaces_them(
        tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "srv")
    faults = ServerFaults(server, 1, {"office-mono": "Phaser 4600"})
    at = server.clock.now()
    faults.apply(Step(at, 0, "firmware_campaign", None, {
        "version": "102.0", "image": "corrupt", "size_bytes": 4096, "profile": None}, "e"),
        lambda m, a: None)
    offer = server.firmware_qa.offers["Phaser 4600"]
    assert offer["manifest"]["version"] == "102.0"
    served = server.firmware_qa.images[offer["manifest"]["sha256"]]
    assert len(served) == 4096 and __import__("hashlib").sha256(
        served).hexdigest() != offer["manifest"]["sha256"]
    faults.apply(Step(at, 1, "firmware_campaign", None, {
        "version": "103.0", "image": "good", "size_bytes": 4096, "profile": None}, "e"),
        lambda m, a: None)
    assert "Phaser 4600" not in server.firmware_qa.offers
    assert [f["manifest"]["version"] for f in server.storage.firmware("Phaser 4600")] \
        == ["103.0"]
    server.storage.close()


def test_payload_helpers_used_by_the_breakage_test_round_trip() -> None:
    # The breakage test rewrites a payload's uploadId; make sure the root attribute is
    # the first occurrence, which is what it relies on.
    from datetime import UTC, datetime

    from device_direct.collector import collect
    from device_direct.core.payload import read_payload

    clock = VirtualClock()
    model = ScenarioDevice(load_profile("office-mono"), serial="PH1", clock=clock,
                           rng_seed=1, state_dir=None, fsync=False)
    uid = "11111111-2222-4333-8444-555555555555"
    meta = PayloadMeta(upload_id=uid, sequence=0,
                       generated_at=datetime(2026, 1, 5, tzinfo=UTC), trigger="scheduled")
    from device_direct.core.privacy import PrivacyPolicy

    xml = read_payload(pack_zip(build_xml(collect(model), meta, policy=PrivacyPolicy())))
    root = xml.index(b"<", xml.index(b"?>"))
    head = xml[root:xml.index(b">", root)]
    assert f'uploadId="{uid}"'.encode() in head
    assert xml.index(b"uploadId=") > root
