"""Scenario files: reading (errors name file and key), timeline expansion (seeded,
deterministic, selectors), and the expectation checks as pure functions."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ScenarioError
from emulator.faults.expect import DeviceFacts, lost, stored_twice
from emulator.faults.scenario import Selector, parse_scenario
from emulator.faults.timeline import expand, select
from emulator.fleet.identities import fleet_identities
from emulator.fleet.spec import FleetSpec

HEAD = '''
[scenario]
name = "t"
description = "Field problem: test."
[fleet]
devices = 20
days = 5
seed = 3
'''
EXPECT = '\n[[expect]]\ncheck = "none_lost"\n'


def _parse(body: str) -> object:
    return parse_scenario(HEAD + body + EXPECT, source="t.toml")


@pytest.mark.parametrize(("body", "words"), [
    ('[[event]]\nkind = "power_off"\nday = 1\ntime = "02:00"\n',
     "t.toml: key 'event[0].minutes': is required"),
    ('[[event]]\nkind = "power_off"\nday = 1\nminutes = 0\n',
     "key 'event[0].minutes': must be >= 1, got 0"),
    ('[[event]]\nkind = "meteor"\nday = 1\n', "key 'event[0].kind': must be one of"),
    ('[[event]]\nkind = "power_loss"\ncheckpoint = "lunch"\nday = 1\n',
     "key 'event[0].checkpoint': must be one of build, write, upload"),
    ('[[event]]\nkind = "net"\nday = 1\nminutes = 5\n', "a net event needs one of cut"),
    ('[[event]]\nkind = "server_5xx"\nfail_next = 3\nday = 1\nfraction = 0.5\n',
     "cannot select devices"),
    ('[[event]]\nkind = "kill"\nday = 1\ntime = "25:00"\n', "expected HH:MM"),
    ('[[event]]\nkind = "kill"\nday = 1\nindices = [20]\n', "outside 0..19"),
    ('[[event]]\nkind = "kill"\nday = 1\ncolour = "red"\n',
     "key 'event[0].colour': unknown key"),
    ('[[chaos]]\nkind = "kill"\ncount = 5\ndays = [3, 1]\n', "key 'chaos[0].days'"),
    ('[[chaos]]\nkind = "net"\ncount = 5\ncut = true\nminutes = [9, 2]\n',
     "a range is [low, high]"),
    ('[[event]]\nkind = "firmware_campaign"\nversion = "v2"\nday = 1\n',
     "expected dotted numbers"),
])
def test_bad_scenarios_name_the_key(body: str, words: str) -> None:
    with pytest.raises(ScenarioError, match=None) as exc:
        _parse(body)
    assert words in str(exc.value)


def test_expectations_are_required_and_checked() -> None:
    with pytest.raises(ScenarioError, match=r"at least one \[\[expect\]\]"):
        parse_scenario(HEAD, source="t.toml")
    with pytest.raises(ScenarioError, match="check 'fault_reported' needs code"):
        parse_scenario(HEAD + '[[expect]]\ncheck = "fault_reported"\n', source="t.toml")
    with pytest.raises(ScenarioError, match="no event is named 'storm'"):
        parse_scenario(HEAD + '[[expect]]\ncheck = "none_lost"\nevent = "storm"\n')


def test_missing_file_is_named(tmp_path: Path) -> None:
    from emulator.faults.scenario import load_scenario

    with pytest.raises(ScenarioError, match=r"nope\.toml: file not found"):
        load_scenario(tmp_path / "nope.toml")


def test_upload_offset_is_relative_to_each_devices_upload_time() -> None:
    sc = _parse('[[event]]\nkind = "power_off"\nday = 2\nupload_offset_minutes = -10\n'
                'minutes = 30\n')
    idents = fleet_identities(sc.fleet)  # type: ignore[attr-defined]
    timeline = expand(sc, idents)  # type: ignore[arg-type]
    assert len(timeline.steps) == 20
    for step in timeline.steps:
        ident = idents[step.device or 0]
        local = (step.at + timedelta(minutes=10)).astimezone(
            __import__("zoneinfo").ZoneInfo(ident.time_zone))
        assert local.time() == ident.upload_time
        assert local.date() == sc.fleet.start + timedelta(days=2)  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(devices=st.integers(1, 60), fraction=st.floats(0.01, 1.0), seed=st.integers(0, 99),
       count=st.one_of(st.none(), st.integers(1, 80)))
def test_selectors_pick_a_seeded_subset_of_the_right_size(
        devices: int, fraction: float, seed: int, count: int | None) -> None:
    idents = fleet_identities(FleetSpec(devices=devices, days=1, seed=seed))
    sel = Selector(count=count) if count is not None else Selector(fraction=fraction)
    a = select(sel, idents, random.Random(seed))
    b = select(sel, idents, random.Random(seed))
    assert a == b and list(a) == sorted(set(a))
    assert all(0 <= p < devices for p in a)
    expected = min(count, devices) if count is not None else max(1, round(fraction * devices))
    assert len(a) == expected


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), count=st.integers(1, 200))
def test_chaos_expansion_is_deterministic_and_inside_the_run(seed: int, count: int) -> None:
    text = (HEAD.replace("seed = 3", f"seed = {seed}") +
            f'[[chaos]]\nkind = "power_loss"\ncount = {count}\nminutes = [1, 30]\n'
            'checkpoint = ["build", "upload"]\n'
            '[[chaos]]\nkind = "server_5xx"\ncount = 3\nfail_next = [1, 9]\n' + EXPECT)
    sc = parse_scenario(text)
    idents = fleet_identities(sc.fleet)
    t1, t2 = expand(sc, idents), expand(sc, idents)
    assert t1 == t2
    assert t1.count("power_loss") == count and t1.count("server_5xx") == 3
    assert [s.at for s in t1.steps] == sorted(s.at for s in t1.steps)
    for s in t1.steps:
        assert s.at <= t1.end
        if s.kind == "power_loss":
            assert 1 <= s.params["minutes"] <= 30
            assert s.params["checkpoint"] in ("build", "upload")
        else:
            assert s.device is None and 1 <= s.params["fail_next"] <= 9


@pytest.mark.parametrize("body", [
    '[[event]]\nkind = "kill"\nday = 30\n',
    '[[event]]\nkind = "server_drop"\ndrop_next = 1\nday = 30\n',
])
def test_an_event_outside_the_run_is_refused_naming_the_file(body: str) -> None:
    sc = parse_scenario(HEAD + body + EXPECT, source="t.toml")
    with pytest.raises(ScenarioError, match=r"t\.toml: event\[0\].*outside the run"):
        expand(sc, fleet_identities(sc.fleet))


@pytest.mark.parametrize("body", [
    '[[event]]\nkind = "kill"\nday = 99999999\n',
    '[[event]]\nkind = "server_drop"\ndrop_next = 1\nday = 99999999\n',
])
def test_an_event_past_the_last_date_is_refused_naming_file_and_event(body: str) -> None:
    sc = parse_scenario(HEAD + body + EXPECT, source="t.toml")
    with pytest.raises(ScenarioError, match=r"t\.toml: event\[0\].*day 99999999 is far "
                                            "outside the run"):
        expand(sc, fleet_identities(sc.fleet))


@pytest.mark.parametrize("start", ["9999-12-30", "0001-01-01"])
def test_a_start_with_no_room_for_the_run_names_the_key(start: str) -> None:
    with pytest.raises(ScenarioError, match=f"t.toml: key 'fleet': start: {start} leaves "
                                            "no room for a 5-day run"):
        parse_scenario(HEAD + f'start = "{start}"\n' + EXPECT, source="t.toml")


_IDS = st.uuids().map(str)


@settings(max_examples=60, deadline=None)
@given(queued=st.lists(_IDS, max_size=12, unique=True), data=st.data())
def test_stored_once_and_none_lost_see_exactly_what_is_wrong(queued: list[str],
                                                               data: st.DataObject) -> None:
    kept = data.draw(st.lists(st.sampled_from(queued), unique=True) if queued
                     else st.just([]))
    again = data.draw(st.lists(st.sampled_from(kept), max_size=2) if kept else st.just([]))
    stored = [(u, queued.index(u)) for u in kept]
    stored += [(f"0000{u[4:]}", queued.index(u)) for u in again]  # a new id, same sequence
    facts = DeviceFacts(position=0, serial="S1", profile="office-mono", queued=tuple(queued),
                        stored=tuple(stored), left_in_outbox=0, firmware="1",
                        reported_codes=frozenset())
    assert bool(stored_twice(facts)) == bool(again)
    assert bool(lost(facts)) == (set(kept) != set(queued))
