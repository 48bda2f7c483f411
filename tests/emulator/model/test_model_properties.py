"""Property tests: the power table, and invariants over random days of use."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_helpers import check_invariants, make_device

from device_direct.model import PowerState
from emulator.model import DeviceStateError, load_profile
from emulator.model.power import TRANSITIONS, PowerEvent, next_state

PROFILES = ("office-color", "office-mono", "production")


@given(st.sampled_from(list(PowerState)), st.sampled_from(list(PowerEvent)))
def test_every_state_event_pair_is_in_the_table_or_refused(state: PowerState,
                                                           event: PowerEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(DeviceStateError, match=state.value):
            next_state(state, event)


def test_power_loss_always_leads_to_off_and_only_power_on_leaves_off() -> None:
    for s in PowerState:
        assert next_state(s, PowerEvent.POWER_LOSS) is PowerState.OFF
    leaving_off = {e for (s, e), t in TRANSITIONS.items() if s is PowerState.OFF and t is not s}
    assert leaving_off == {PowerEvent.POWER_ON}


@settings(max_examples=25, deadline=None)
@given(profile=st.sampled_from(PROFILES), seed=st.integers(0, 2**31),
       start=st.dates(date(2024, 1, 1), date(2030, 12, 1)),
       gaps=st.lists(st.integers(1, 4), min_size=1, max_size=25))
def test_days_of_use_keep_invariants(profile: str, seed: int, start: date,
                                     gaps: list[int]) -> None:
    dev = make_device(profile, seed=seed)
    plan_profile = load_profile(profile)
    previous = dev.counters()
    day = start
    for gap in gaps:
        day += timedelta(days=gap)
        result = dev.run_day(day)
        snap = dev.snapshot()
        check_invariants(snap)
        now = snap.counters
        for name in now.__dataclass_fields__:
            assert getattr(now, name) >= getattr(previous, name), name
        assert now.total_impressions - previous.total_impressions == result.impressions
        if not plan_profile.engine.color:
            assert now.color_impressions == 0
        # A supply's status follows from its level and the profile's low mark.
        for s, spec in zip(snap.supplies, plan_profile.supplies, strict=True):
            low = s.level * 100 <= s.capacity * spec.low_percent
            want = ("full" if spec.supply_class == 4 else "empty") if s.level == 0 else (
                ("near-full" if spec.supply_class == 4 else "low") if low else "ok")
            assert s.status == want, (s, spec.low_percent)
        supply_alerts = {a.group_index for a in snap.alerts if a.group == 11}
        assert supply_alerts == {s.index for s in snap.supplies if s.status != "ok"}
        previous = now


@settings(max_examples=15, deadline=None)
@given(profile=st.sampled_from(PROFILES), seed=st.integers(0, 2**40),
       n=st.integers(1, 8))
def test_same_seed_same_state_same_day(profile: str, seed: int, n: int) -> None:
    days = [date(2026, 3, 2) + timedelta(days=i) for i in range(n)]
    a, b = make_device(profile, seed=seed), make_device(profile, seed=seed)
    for d in days:
        assert a.run_day(d) == b.run_day(d)
    assert json.dumps(a.export_state()) == json.dumps(b.export_state())
