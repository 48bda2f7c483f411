"""A fleet whose data is in RAM writes on its loop, and stores exactly what it would
have stored through the storage thread."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

import device_direct.outbox_store as outbox_store
from device_direct.durable import in_ram
from emulator.fleet import runner
from emulator.fleet.runner import run_fleet
from emulator.fleet.spec import FleetSpec
from emulator.server.app import ReferenceServer
from tests.emulator.fleet.test_fleet_shards import _stored, _target

SPEC = FleetSpec(devices=3, days=2, seed=33)
RAM = Path("/dev/shm")


async def _run(work: Path, server_dir: Path, monkeypatch: pytest.MonkeyPatch
               ) -> tuple[Any, Any, set[str]]:
    """The fleet in ``work``: its report, what the server stored, and the threads that
    wrote the outbox files."""
    writers: set[str] = set()
    real = outbox_store.atomic_write  # type: ignore[attr-defined]

    def watched(path: Any, data: bytes, **kw: Any) -> None:
        writers.add(threading.current_thread().name)
        real(path, data, **kw)

    monkeypatch.setattr(outbox_store, "atomic_write", watched)
    async with ReferenceServer(server_dir) as server:
        keys = tuple(server.create_registration_key() for _ in range(SPEC.devices))
        report = await run_fleet(SPEC, work, target=_target(server, keys))
        stored = _stored(server)
    monkeypatch.undo()
    return report, stored, writers


@pytest.mark.skipif(not (RAM.is_dir() and in_ram(RAM)), reason="no /dev/shm tmpfs here")
async def test_a_fleet_in_ram_writes_on_its_loop_and_stores_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(dir=RAM, prefix="dd-test-fleet-") as ram_dir:
        in_memory, stored_ram, writers_ram = await _run(
            Path(ram_dir) / "fleet", tmp_path / "srv-ram", monkeypatch)
    # The same fleet told its data is on a disk: the storage thread writes.
    monkeypatch.setattr(runner, "in_ram", lambda path: False)
    on_disk, stored_disk, writers_disk = await _run(
        tmp_path / "fleet", tmp_path / "srv-disk", monkeypatch)
    assert in_memory.ok and on_disk.ok
    assert writers_ram == {threading.current_thread().name}
    assert writers_disk and all(name.startswith("dd-storage") for name in writers_disk)
    assert stored_ram == stored_disk
    assert len(stored_ram[1]) == SPEC.device_days
    assert in_memory.totals() == on_disk.totals()
