"""Fleet description values: mix, shard, upload window, identities (pure, no I/O)."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.fleet.identities import fleet_identities, profile_counts, profile_layout
from emulator.fleet.spec import FleetSpec, FleetSpecError, Shard, UploadWindow, parse_mix

PROFILES = ("office-color", "office-mono", "production")


def test_parse_mix_reads_profiles_and_weights() -> None:
    assert parse_mix("office-color:70, office-mono:25,production:5", PROFILES) == (
        ("office-color", 70), ("office-mono", 25), ("production", 5))


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"),
    ("office-color", "PROFILE:WEIGHT"),
    ("office-color:x", "whole number"),
    ("office-color:-1", "whole number"),
    ("laser-jet:5", "unknown profile 'laser-jet'"),
    ("office-color:1,office-color:2", "given twice"),
    ("office-color:0", "add up to 0"),
])
def test_parse_mix_names_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(FleetSpecError, match=words):
        parse_mix(text, PROFILES)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "1-2", "a/b", ""])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(FleetSpecError, match="shard"):
        Shard.parse(text)


@given(devices=st.integers(1, 300), k=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_shards_cover_the_fleet_once(devices: int, k: int) -> None:
    seen = [i for n in range(1, k + 1) for i in Shard(n, k).indices(devices)]
    assert sorted(seen) == list(range(devices))


def test_upload_window_crossing_midnight() -> None:
    w = UploadWindow.parse("23:30-00:30")
    assert w.minutes == 60
    assert w.at(0) == time(23, 30)
    assert w.at(45) == time(0, 15)
    with pytest.raises(FleetSpecError, match="outside"):
        w.at(60)
    with pytest.raises(FleetSpecError, match="must differ"):
        UploadWindow.parse("02:00-02:00")
    with pytest.raises(FleetSpecError, match="HH:MM"):
        UploadWindow.parse("2am-3am")


def test_window_must_not_hold_the_print_time() -> None:
    with pytest.raises(FleetSpecError, match="print time"):
        FleetSpec(devices=1, days=1, upload_window=UploadWindow.parse("18:00-20:00"))


def test_spec_refuses_bad_sizes_and_zones() -> None:
    with pytest.raises(FleetSpecError, match="devices"):
        FleetSpec(devices=0, days=1)
    with pytest.raises(FleetSpecError, match="days"):
        FleetSpec(devices=1, days=0)
    with pytest.raises(FleetSpecError, match="Mars/Olympus"):
        FleetSpec(devices=1, days=1, zones=("Mars/Olympus",))


@given(devices=st.integers(1, 400),
       weights=st.lists(st.integers(0, 100), min_size=3, max_size=3).filter(lambda w: sum(w)))
@settings(max_examples=80, deadline=None)
def test_mix_counts_are_exact(devices: int, weights: list[int]) -> None:
    spec = FleetSpec(devices=devices, days=1, mix=tuple(zip(PROFILES, weights, strict=True)))
    counts = profile_counts(spec)
    assert sum(counts.values()) == devices
    total = sum(weights)
    for name, w in zip(PROFILES, weights, strict=True):
        # Largest remainder: never more than one off the exact share.
        assert abs(counts[name] - devices * w / total) < 1
    layout = profile_layout(spec)
    assert {n: layout.count(n) for n in PROFILES} == counts


def test_mix_of_fifty_is_35_13_2() -> None:
    assert profile_counts(FleetSpec(devices=50, days=1)) == {
        "office-color": 35, "office-mono": 13, "production": 2}


def test_identities_depend_on_seed_and_index_only() -> None:
    spec = FleetSpec(devices=40, days=2, seed=9)
    whole = fleet_identities(spec)
    parts = [i for n in (1, 2, 3) for i in fleet_identities(spec, Shard(n, 3).indices(40))]
    assert sorted(parts, key=lambda i: i.index) == whole
    assert len({i.serial for i in whole}) == 40
    assert len({i.mac for i in whole}) == 40
    other = fleet_identities(FleetSpec(devices=40, days=2, seed=10))
    assert not {i.serial for i in whole} & {i.serial for i in other}
    window = spec.upload_window
    assert all(window.start <= i.upload_time < window.end for i in whole)
    assert len({i.time_zone for i in whole}) > 1


def test_a_days_printing_is_applied_after_its_profiles_office_hours() -> None:
    # Issue 18's note: the fleet applied every day at 19:00 local, cutting a production
    # shop (office hours 6-22) at 13/16 of its day; the day is now applied at the later
    # of the fleet's print time and the profile's office end.
    from emulator.model.profile import load_profile

    spec = FleetSpec(devices=30, days=1, mix=parse_mix("office-color:1,production:1"))
    for ident in fleet_identities(spec):
        end = load_profile(ident.profile).usage.office_end_hour
        local = ident.print_at(spec, 0).astimezone(ZoneInfo(ident.time_zone))
        assert local.time() == max(spec.print_time, time(end, 0)), ident.profile
    assert {i.print_time for i in fleet_identities(spec)} == {time(19, 0), time(22, 0)}
