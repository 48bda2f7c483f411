"""Remote actions end to end over real TLS: reference server, emulated MFP, agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device_direct.actions import ActionRunner
from device_direct.agent import Agent
from device_direct.core.actions import Action
from device_direct.errors import ServerUnavailable
from device_direct.transport import Transport
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.test_actions_rig import START, PowerCut, make_rig


async def test_every_action_type_runs_and_reports(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock,
                         extra="[services]\nconsent_engineering = true\n")
    before = rig.device.counters()
    ids = {t: rig.enqueue(t, p) for t, p in [
        ("get_status", {}), ("troubleshoot", {}), ("print_test_page", {}),
        ("upload_logs", {}), ("send_meters_now", {}), ("start_managed", {"interval_s": 3600}),
        ("reboot", {}),
    ]}
    uploads_before = len(server.storage.uploads(rig.device_id))
    assert await rig.agent.sync("on-demand")
    results = rig.results()
    for type_, aid in ids.items():
        assert results[aid]["result_status"] == "succeeded", (type_, results[aid])
    detail = {t: results[aid]["result_detail"] for t, aid in ids.items()}

    assert detail["get_status"]["power"] == "ready"
    assert detail["get_status"]["firmware"]["running"] == rig.device.firmware().running_version

    steps = detail["troubleshoot"]["steps"]
    assert detail["troubleshoot"]["ok"] is True, steps
    for step in ("dns", "tcp", "tls", "mtls_call", "clock"):
        assert steps[step]["ok"] is True, (step, steps[step])
    assert "127.0.0.1" in steps["dns"]["addresses"]
    assert steps["tls"]["client_certificate"] is True
    assert detail["troubleshoot"]["status"]["power"] == "ready"

    report = Path(detail["print_test_page"]["path"])
    text = report.read_text()
    assert report.parent == tmp_path / "data" / "reports"
    for heading in ("CONFIGURATION REPORT", "[Firmware]", "[Network]", "[Billing meters]",
                    "[Supplies]", "Device Direct settings", rig.device_id):
        assert heading in text
    assert rig.device.counters().report_impressions == before.report_impressions + 1

    logs = server.storage.logs(rig.device_id)
    assert len(logs) == 1 and logs[0]["size"] == detail["upload_logs"]["bytes"]

    uploads = server.storage.uploads(rig.device_id)
    assert len(uploads) == uploads_before + 1
    assert uploads[-1]["trigger"] == "action"
    assert uploads[-1]["upload_id"] == detail["send_meters_now"]["upload_id"]

    managed = json.loads((tmp_path / "data" / "managed.json").read_text())
    assert managed["enabled"] is True and managed["interval_s"] == 3600
    started = datetime.fromisoformat(managed["last"])
    assert rig.agent.actions.next_due(clock.now()) == started + timedelta(hours=1)
    assert "reboot requested" in rig.device.engineering_log()


async def test_managed_mode_sends_periodic_payloads_from_the_agent_loop(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    rig.enqueue("start_managed", {"interval_s": 3600})
    assert await rig.agent.sync("on-demand")
    count = len(server.storage.uploads(rig.device_id))
    agent = rig.restart()  # the loop starts from what is on disk

    async def run_agent() -> None:
        try:
            await agent.run()
        finally:
            clock.unregister()

    clock.register()
    clock.register()
    task = asyncio.create_task(run_agent())
    try:
        await clock.sleep(2.5 * 3600)  # 09:00 -> 11:30 UTC: no daily sync in between
    finally:
        clock.unregister()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    uploads = server.storage.uploads(rig.device_id)[count:]
    # Asked for by the start_managed action: labelled so, not as the day's transfer.
    assert [u["trigger"] for u in uploads] == ["action", "action"]


@pytest.mark.parametrize("security, disabled, consent, type_, params, message", [
    ("normal", ["reboot"], False, "reboot", {}, "disabled"),
    ("normal", [], False, "self_destruct", {}, "unsupported"),
    ("normal", [], False, "upload_logs", {}, "no-consent"),
    ("normal", [], False, "get_status", {"verbose": True}, "invalid-params"),
    ("normal", [], False, "upgrade_firmware", {"install": "yesterday"}, "invalid-params"),
    ("normal", [], False, "start_managed", {"interval_s": 5}, "invalid-params"),
    ("locked-down", [], False, "get_status", {}, "locked-down"),
    ("locked-down", [], False, "reboot", {}, "locked-down"),
])
async def test_refused_actions_are_rejected_with_the_reason_and_not_run(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock, security: str,
    disabled: list[str], consent: bool, type_: str, params: dict[str, object], message: str,
) -> None:
    extra = ("[services]\n"
             f'security_mode = "{security}"\n'
             f"disabled_actions = {json.dumps(disabled)}\n"
             f"consent_engineering = {'true' if consent else 'false'}\n")
    rig = await make_rig(tmp_path, server, clock, extra=extra)
    log_before = rig.device.engineering_log()
    aid = rig.enqueue(type_, params)
    assert await rig.agent.sync("on-demand")
    result = rig.results()[aid]
    assert result["result_status"] == "rejected"
    assert result["result_detail"]["message"] == message, result["result_detail"]
    assert server.storage.logs(rig.device_id) == []
    assert "reboot requested" not in rig.device.engineering_log()
    assert rig.device.engineering_log() == log_before


async def test_an_action_expired_by_device_time_is_reported_expired_not_run(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # The server's clock is an hour behind the device's: it still lists the action.
    server_clock = VirtualClock(START - timedelta(hours=1))
    async with ReferenceServer(tmp_path / "server", clock=server_clock) as server:
        rig = await make_rig(tmp_path, server, clock)
        aid = rig.enqueue("print_test_page", expires_in_s=600)
        before = rig.device.counters().report_impressions
        assert await rig.agent.sync("on-demand")
        result = rig.results()[aid]
        assert result["result_status"] == "expired"
        assert rig.device.counters().report_impressions == before
        assert not (tmp_path / "data" / "reports").exists()


async def test_duplicate_delivery_never_runs_twice_and_resends_the_stored_result(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    aid = rig.enqueue("print_test_page")
    assert await rig.agent.sync("on-demand")
    first = rig.results()[aid]
    assert first["result_status"] == "succeeded"
    impressions = rig.device.counters().report_impressions
    # The server loses the result and lists the action again.
    with server.storage._tx() as db:
        db.execute("UPDATE actions SET result_status=NULL, result_detail=NULL WHERE id=?",
                   (aid,))
    assert await rig.agent.sync("on-demand")
    again = rig.results()[aid]
    assert again["result_status"] == "succeeded"
    assert again["result_detail"] == first["result_detail"]
    assert rig.device.counters().report_impressions == impressions
    assert len(list((tmp_path / "data" / "reports").iterdir())) == 1
    # A restarted agent with the same journal does not run it either.
    with server.storage._tx() as db:
        db.execute("UPDATE actions SET result_status=NULL WHERE id=?", (aid,))
    agent = rig.restart()
    assert await agent.sync("on-demand")
    assert rig.device.counters().report_impressions == impressions


class DoubledList(Transport):
    """A transport whose action list names its first action twice (a confused server)."""

    async def poll_actions(self) -> list[dict[str, Any]]:
        actions = await super().poll_actions()
        return [actions[0], *actions] if actions else actions


async def test_an_action_listed_twice_in_one_answer_runs_once_and_the_rest_runs(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    # The second copy was started again after the first was reported: LocalProtocolError
    # ("cannot take event 'start' in state 'reported'") ended the poll, and the actions
    # listed after it did not run.
    def doubled(agent: Agent) -> Transport:
        cfg = agent.config.server
        return DoubledList(cfg.url, cfg.ca_bundle, cfg.server_name, agent.identity,
                           agent.clock)

    rig = await make_rig(tmp_path, server, clock, transport_factory=doubled)
    printing = rig.enqueue("print_test_page")
    after = rig.enqueue("get_status")
    impressions = rig.device.counters().report_impressions
    assert await rig.agent.sync("on-demand")
    results = rig.results()
    assert results[printing]["result_status"] == "succeeded"
    assert results[after]["result_status"] == "succeeded"
    assert rig.device.counters().report_impressions == impressions + 1


async def test_ids_that_differ_by_colon_and_underscore_keep_their_own_journal_files(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    # ':' was stored as '_': "act:1" and "act_1" shared one file, and after a restart
    # one of the two was forgotten (run again if the server listed it again).
    rig = await make_rig(tmp_path, server, clock)
    runner = rig.agent.actions
    now = clock.now()
    expires = (now + timedelta(days=1)).isoformat()
    for action_id in ("act:1", "act_1"):
        action = Action.from_wire({"id": action_id, "type": "get_status", "params": {},
                                   "issued_at": now.isoformat(), "expires_at": expires})
        entry = runner.journal.receive(action, now)
        assert entry is not None
        runner._store(entry)
    again = ActionRunner(rig.agent)
    assert {e.action.id for e in again.journal.entries()} == {"act:1", "act_1"}


async def test_a_journal_file_named_by_an_earlier_version_is_renamed_and_kept(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    runner = rig.agent.actions
    now = clock.now()
    action = Action.from_wire({"id": "srv:42", "type": "get_status", "params": {},
                               "issued_at": now.isoformat(),
                               "expires_at": (now + timedelta(days=1)).isoformat()})
    entry = runner.journal.receive(action, now)
    assert entry is not None
    runner._store(entry)
    os.replace(runner.dir / "srv+42.json", runner.dir / "srv_42.json")  # the old name
    again = ActionRunner(rig.agent)
    assert [e.action.id for e in again.journal.entries()] == ["srv:42"]
    assert sorted(p.name for p in runner.dir.glob("*.json")) == ["srv+42.json"]


class FailingReports(Transport):
    """A transport whose result posts fail (the server is down for those)."""

    async def report_action(self, *args: object, **kwargs: object) -> None:
        raise ServerUnavailable(503, "results are down")


async def test_results_are_persisted_first_and_resent_until_the_server_has_them(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    def failing(agent: Agent) -> Transport:
        cfg = agent.config.server
        return FailingReports(cfg.url, cfg.ca_bundle, cfg.server_name, agent.identity,
                              agent.clock)

    rig = await make_rig(tmp_path, server, clock, transport_factory=failing)
    aid = rig.enqueue("get_status")
    assert await rig.agent.sync("on-demand")
    assert rig.results()[aid]["result_status"] is None
    on_disk = json.loads((tmp_path / "data" / "actions" / f"{aid}.json").read_text())
    assert on_disk["state"] == "result-pending"
    assert on_disk["result"]["status"] == "succeeded"
    assert on_disk["report_attempts"] == 1
    # Power cycle; the results endpoint works again. The retry is due at its time.
    rig.transport_factory = None
    agent = rig.restart()
    due = agent.actions.next_due(clock.now())
    assert due is not None
    clock.advance_to(max(due, clock.now()))
    await agent.run_background()
    assert rig.results()[aid]["result_status"] == "succeeded"
    assert agent.actions.journal.get(aid) is not None
    assert agent.actions.next_due(clock.now()) is None


async def test_reboot_is_reported_after_the_device_is_back(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    aid = rig.enqueue("reboot")
    # The agent process dies as the device goes down (it is part of the firmware).
    rig.model.cut_at = "reboot:after"
    with pytest.raises(PowerCut):
        await rig.agent.sync("on-demand")
    assert rig.results()[aid]["result_status"] is None
    on_disk = json.loads((tmp_path / "data" / "actions" / f"{aid}.json").read_text())
    assert on_disk["state"] == "result-pending"
    agent = await rig.power_on_and_restart()
    await agent.run_background()
    result = rig.results()[aid]
    assert result["result_status"] == "succeeded"
    assert result["result_detail"]["message"] == "the device rebooted"
    # Not rebooted a second time when listed again.
    assert await agent.sync("on-demand")
    assert rig.device.engineering_log().count("reboot requested") == 1


async def test_power_cut_in_the_middle_of_an_action_reports_it_interrupted_once(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock)
    printing = rig.enqueue("print_test_page")
    after = rig.enqueue("get_status")
    rig.model.cut_at = "print_configuration_report:before"
    with pytest.raises(PowerCut):
        await rig.agent.sync("on-demand")
    impressions = rig.device.counters().report_impressions
    agent = await rig.power_on_and_restart()
    assert await agent.sync("on-demand")
    results = rig.results()
    assert results[printing]["result_status"] == "failed"
    assert results[printing]["result_detail"]["message"] == "interrupted"
    assert results[after]["result_status"] == "succeeded"  # the rest of the list runs
    assert rig.device.counters().report_impressions == impressions


async def test_action_poll_interval_wakes_the_agent(
    tmp_path: Path, clock: VirtualClock
) -> None:
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        rig = await make_rig(tmp_path, server, clock)
        rig.config = replace(rig.config, schedule=replace(rig.config.schedule,
                                                          action_poll_interval_s=900))
        agent = rig.restart()
        assert agent.actions.next_due(clock.now()) == clock.now()
        await agent.run_background()
        polls = agent.actions.polls
        aid = rig.enqueue("get_status")
        due = agent.actions.next_due(clock.now())
        assert due == clock.now() + timedelta(seconds=900)
        clock.advance_to(due)
        await agent.run_background()
        assert agent.actions.polls == polls + 1
        assert rig.results()[aid]["result_status"] == "succeeded"
