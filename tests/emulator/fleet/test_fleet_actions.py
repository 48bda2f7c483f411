"""--actions: the server issues remote actions each evening; the devices run and answer
them; shards issue the same ones; the plan is checked like every other option."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.fleet.cli import main
from emulator.fleet.identities import fleet_identities
from emulator.fleet.runner import ServerTarget, admin_url, run_fleet
from emulator.fleet.spec import (
    FLEET_ACTION_TYPES,
    FleetSpec,
    FleetSpecError,
    Shard,
    format_actions,
    parse_actions,
)
from emulator.server.app import ReferenceServer

# Often enough that a small fleet sees every kind in a few days.
PLAN = parse_actions("get_status:0.4,troubleshoot:0.3,print_test_page:0.3,send_meters_now:0.3")


def test_parse_actions_reads_types_and_chances() -> None:
    assert parse_actions("get_status:0.05, send_meters_now:1") == (
        ("get_status", 0.05), ("send_meters_now", 1.0))
    assert parse_actions(format_actions(PLAN)) == PLAN


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("get_status", "not TYPE:PER_DAY"),
    ("reboot:0.1", "'reboot' cannot be issued by a fleet run"),
    ("wipe_disk:0.1", "'wipe_disk' cannot be issued"),
    ("get_status:0", "must be a number in (0, 1]"),
    ("get_status:1.5", "must be a number in (0, 1]"),
    ("get_status:lots", "got 'lots'"),
    ("get_status:0.1,get_status:0.2", "given twice"),
])
def test_parse_actions_names_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(FleetSpecError, match="actions") as err:
        parse_actions(text)
    assert words in str(err.value)


@given(st.lists(st.floats(min_value=1e-9, max_value=1.0), min_size=1, max_size=4))
def test_plan_text_reads_back_as_the_same_floats(chances: list[float]) -> None:
    """--processes hands the plan to its shards as text: they must draw what one run does."""
    plan = tuple(zip(FLEET_ACTION_TYPES, chances, strict=False))
    assert parse_actions(format_actions(plan)) == plan


def test_spec_checks_its_plan() -> None:
    with pytest.raises(FleetSpecError, match="reboot"):
        FleetSpec(devices=1, days=1, actions=(("reboot", 0.5),))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(0, 99), k=st.integers(0, 60))
def test_actions_depend_on_seed_index_and_day_only(seed: int, index: int, k: int) -> None:
    spec = FleetSpec(devices=100, days=61, seed=seed, actions=PLAN)
    ident = fleet_identities(spec, range(index, index + 1))[0]
    again = fleet_identities(spec, Shard(index % 3 + 1, 3).indices(100))
    same = next(i for i in again if i.index == index)
    assert ident.actions_on(spec, k) == same.actions_on(spec, k)
    assert set(ident.actions_on(spec, k)) <= set(FLEET_ACTION_TYPES)
    if k == 0:  # the first evening, before the device has registered
        assert ident.actions_on(spec, k) == ()


def test_chances_come_out_near_the_plan() -> None:
    spec = FleetSpec(devices=400, days=26, seed=5,
                     actions=(("get_status", 0.1), ("send_meters_now", 0.02)))
    seen: Counter[str] = Counter()
    for ident in fleet_identities(spec):
        for k in range(1, spec.days):
            seen.update(ident.actions_on(spec, k))
    days = 400 * 25
    assert 0.08 < seen["get_status"] / days < 0.12
    assert 0.01 < seen["send_meters_now"] / days < 0.03


async def test_embedded_run_runs_and_answers_every_action(tmp_path: Path) -> None:
    spec = FleetSpec(devices=4, days=4, seed=21, actions=PLAN)
    report = await run_fleet(spec, tmp_path)
    assert report.ok, report.expectations
    t = report.totals()
    expected = sum(len(i.actions_on(spec, k)) for i in fleet_identities(spec)
                   for k in range(spec.days))
    assert t["actions_issued"] == expected > 0
    assert t["actions_run"] + t["actions_refused"] == expected
    # send_meters_now payloads are delivered on top of one payload per day, and the
    # server holds each exactly once.
    assert t["payloads_built"] > spec.device_days
    assert report.server_uploads is not None
    assert sum(report.server_uploads.values()) == t["payloads_built"]
    assert any(e.name.startswith("every action issued") and e.ok
               for e in report.expectations)


def _target(server: ReferenceServer, *, admin: bool) -> ServerTarget:
    keys = tuple(server.create_registration_key() for _ in range(6))
    return ServerTarget(url=f"https://127.0.0.1:{server.port}/", ca_bundle=server.ca_cert_path,
                        server_name="localhost", keys=keys,
                        firmware_key=server.firmware_public_key_pem.decode(),
                        admin_token=server.admin_token if admin else None)


async def test_actions_through_the_admin_api_shard_like_one_run(tmp_path: Path) -> None:
    """Against a server the fleet does not own, actions go through /admin/v1; two shards
    issue exactly the actions one run does, and the server records each result."""
    spec = FleetSpec(devices=6, days=3, seed=13, actions=PLAN)
    async with ReferenceServer(tmp_path / "one") as one, \
            ReferenceServer(tmp_path / "two") as two:
        whole = await run_fleet(spec, tmp_path / "w", target=_target(one, admin=True))
        target_two = _target(two, admin=True)
        half_a, half_b = await asyncio.gather(
            run_fleet(spec, tmp_path / "a", shard=Shard(1, 2), target=target_two),
            run_fleet(spec, tmp_path / "b", shard=Shard(2, 2), target=target_two))
        recorded = []
        for server in (one, two):
            by_serial = {}
            for device in server.storage.devices():
                acts = server.storage.actions(device["device_id"])
                assert all(a["result_status"] == "succeeded" for a in acts), acts
                by_serial[device["serial"]] = sorted(a["type"] for a in acts)
            recorded.append(by_serial)
    assert whole.ok and half_a.ok and half_b.ok
    assert recorded[0] == recorded[1]
    assert sum(map(len, recorded[0].values())) == whole.totals()["actions_issued"] > 0


async def test_actions_on_a_server_without_admin_api_are_refused(tmp_path: Path) -> None:
    spec = FleetSpec(devices=1, days=1, seed=1, actions=PLAN)
    async with ReferenceServer(tmp_path / "srv") as server:
        with pytest.raises(FleetSpecError, match="admin-token-file"):
            await run_fleet(spec, tmp_path / "w", target=_target(server, admin=False))


def test_cli_usage_error_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--devices", "2", "--days", "1", "--actions", "reboot:0.1"])
    assert exit_.value.code == 2
    assert "--actions" in capsys.readouterr().err


@pytest.mark.parametrize("server_url, expected", [
    ("https://dd.test:8443", "https://dd.test:8443/admin/v1/devices"),
    ("https://dd.test:8443/", "https://dd.test:8443/admin/v1/devices"),
    ("https://dd.test/remote/", "https://dd.test/remote/admin/v1/devices"),
    ("https://dd.test/remote/dd/v1", "https://dd.test/remote/admin/v1/devices"),
])
def test_admin_api_lives_beside_the_device_api(server_url: str, expected: str) -> None:
    assert admin_url(server_url, "devices") == expected


async def test_an_action_the_server_refuses_to_queue_does_not_end_the_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server will not queue an action (here: it no longer knows the device): the
    run goes on, the refusal is logged, and nothing is counted as issued."""
    def refuse(self: ReferenceServer, device_id: str, *args: object, **kw: object) -> str:
        raise ValueError(f"unknown device {device_id!r}")

    monkeypatch.setattr(ReferenceServer, "enqueue_action", refuse)
    spec = FleetSpec(devices=2, days=3, seed=21, actions=PLAN)
    report = await run_fleet(spec, tmp_path)
    assert report.ok, report.expectations
    assert report.totals()["actions_issued"] == 0
    assert report.totals()["uploads_stored"] == spec.device_days
    assert "not issued: unknown device" in caplog.text
