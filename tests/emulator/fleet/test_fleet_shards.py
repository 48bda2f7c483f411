"""Sharding: K=2 shards and one unsharded run store the same devices and uploads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from emulator.fleet.runner import ServerTarget, run_fleet
from emulator.fleet.spec import FleetSpec, Shard
from emulator.server.app import ReferenceServer

SPEC = FleetSpec(devices=6, days=3, seed=11)


def _target(server: ReferenceServer, keys: tuple[str, ...]) -> ServerTarget:
    return ServerTarget(url=f"https://127.0.0.1:{server.port}/", ca_bundle=server.ca_cert_path,
                        server_name="localhost", keys=keys,
                        firmware_key=server.firmware_public_key_pem.decode())


def _stored(server: ReferenceServer) -> tuple[set[str], set[tuple[Any, ...]]]:
    serials = set()
    uploads = set()
    for device in server.storage.devices():
        serials.add(device["serial"])
        for u in server.storage.uploads(device["device_id"]):
            uploads.add((u["serial"], u["sequence"], u["generated_at"],
                         tuple(sorted(u["meters"].items()))))
    return serials, uploads


async def test_two_shards_equal_one_run(tmp_path: Path) -> None:
    async with ReferenceServer(tmp_path / "one") as one, \
            ReferenceServer(tmp_path / "two") as two:
        keys_one = tuple(one.create_registration_key() for _ in range(SPEC.devices))
        keys_two = tuple(two.create_registration_key() for _ in range(SPEC.devices))
        whole = await run_fleet(SPEC, tmp_path / "w", target=_target(one, keys_one))
        half_a, half_b = await asyncio.gather(
            run_fleet(SPEC, tmp_path / "a", shard=Shard(1, 2), target=_target(two, keys_two)),
            run_fleet(SPEC, tmp_path / "b", shard=Shard(2, 2), target=_target(two, keys_two)))
        serials_one, uploads_one = _stored(one)
        serials_two, uploads_two = _stored(two)

    assert whole.ok and half_a.ok and half_b.ok
    assert len(serials_one) == SPEC.devices
    assert serials_one == serials_two
    assert {o.serial for o in half_a.outcomes}.isdisjoint(o.serial for o in half_b.outcomes)
    assert len(uploads_one) == SPEC.device_days
    assert uploads_one == uploads_two
    # Meters grow from the first upload to the last for the office devices.
    by_serial: dict[str, list[tuple[Any, ...]]] = {}
    for u in sorted(uploads_one):
        by_serial.setdefault(u[0], []).append(u)
    assert any(dict(ups[-1][3])["total-impressions"] > dict(ups[0][3])["total-impressions"]
               for ups in by_serial.values())


async def test_embedded_run_checks_the_server(tmp_path: Path) -> None:
    report = await run_fleet(FleetSpec(devices=3, days=2, seed=2), tmp_path)
    assert report.ok, report.expectations
    assert report.server_uploads is not None
    assert sum(report.server_uploads.values()) == 6
    totals = report.totals()
    assert totals["uploads_stored"] == 6
    assert totals["action_polls"] == 6
    assert totals["firmware_checks"] == 6
    assert totals["registrations"] == 3
    # One agent data directory per device, each with its own key.
    keys = sorted(tmp_path.glob("devices/*/identity/key.pem"))
    assert len(keys) == 3
    assert len({k.read_bytes() for k in keys}) == 3


async def test_unreachable_server_fails_the_expectations(tmp_path: Path) -> None:
    async with ReferenceServer(tmp_path / "srv") as server:
        target = _target(server, ("any-key",))
    # The server is gone: every upload fails until the deadline.
    report = await run_fleet(FleetSpec(devices=2, days=1, seed=3), tmp_path / "w",
                             target=target)
    assert not report.ok
    failed = {e.name for e in report.expectations if not e.ok}
    assert "every device built and delivered one payload per day" in failed
    assert all(o.registrations == 0 and not o.finished for o in report.outcomes)
