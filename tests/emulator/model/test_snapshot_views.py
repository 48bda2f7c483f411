"""The snapshot's views put every number of the device state in its own field.

``emulator.model.snapshot`` builds its records with positional arguments (cheaper than
keywords, and it runs every device-day); a value in the wrong slot would still type
check when both are ints. Each field is compared here with the state it comes from.
"""

from __future__ import annotations

from datetime import UTC, datetime

from model_helpers import EPOCH, days_from, make_device

from device_direct.model import JobKind
from emulator.model.snapshot import synthetic_job_name, synthetic_user
from emulator.model.state import FAULT_FIELDS, JOB_FIELDS, JOB_KIND_CODES


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def test_every_record_field_comes_from_its_own_source() -> None:
    dev = make_device("production", seed=7)
    for day in days_from(EPOCH.date(), 40):
        dev.run_day(day)
    snap = dev.snapshot()
    st, plan = dev._state, dev._plan  # the sources, read directly

    ident = plan.profile.identity
    assert (snap.identity.manufacturer, snap.identity.model, snap.identity.serial,
            snap.identity.product_code, snap.identity.installed_options,
            snap.identity.profile) == (ident.manufacturer, ident.model, "SN0001",
                                       ident.product_code, ident.options, plan.profile.name)
    assert snap.identity.install_date == _at(st.install_epoch).date()
    assert snap.identity.firmware[ident.firmware[0].name] == st.bank_versions[st.active_bank]
    assert (snap.taken_at, snap.power, snap.network) == (
        dev._clock.now(), dev.power, dev.network())
    assert snap.counters.total_impressions == st.black + st.color
    assert snap.firmware.active in ("A", "B")
    assert snap.properties[-1].name == "console-display"

    rows = [st.job_log[k:k + JOB_FIELDS] for k in range(0, len(st.job_log), JOB_FIELDS)]
    assert rows and len(snap.jobs) == len(rows)
    assert any(pages != imps for _, _, pages, imps, _, _ in rows)
    for job, (kind, t, pages, imps, user, job_no) in zip(snap.jobs, rows, strict=True):
        login, email = synthetic_user(user)
        assert (job.kind, job.at, job.pages, job.impressions) == (
            JobKind(JOB_KIND_CODES[kind]), _at(t), pages, imps)
        if job_no not in st.job_text:
            assert (job.user, job.job_name, job.email) == (
                login, synthetic_job_name(job_no), email)

    assert len(snap.supplies) == len(plan.profile.supplies)
    for i, (supply, spec) in enumerate(zip(snap.supplies, plan.profile.supplies,
                                           strict=True)):
        assert (supply.index, supply.name, supply.type, supply.unit, supply.capacity,
                supply.level, supply.colorant, supply.supply_class, supply.part_number,
                supply.lifetime_impressions, supply.installed_at) == (
            spec.index, spec.name, spec.type, spec.unit, spec.capacity,
            st.supply_level(plan, i), spec.colorant, spec.supply_class, spec.part_number,
            st.sup_imps[i], _at(st.sup_installed[i]))
    assert any(s.level != s.capacity for s in snap.supplies)

    for i, (item, h) in enumerate(zip(snap.hfsi, plan.profile.hfsi, strict=True)):
        assert (item.id, item.name, item.count, item.life, item.maximum, item.rule,
                item.replacements) == (h.id, h.name, st.hfsi_count(plan, i), h.life,
                                       h.maximum, h.rule, st.hfsi_repl[i])
        replaced = st.hfsi_repl_at[i]
        assert item.last_replaced_at == (_at(replaced) if replaced >= 0 else None)

    for setting, n in zip(snap.nvm, plan.profile.nvm, strict=True):
        assert (setting.id, setting.name, setting.value, setting.default, setting.minimum,
                setting.maximum, setting.protected) == (
            n.id, n.name, st.nvm.get(n.id, n.default), n.default, n.minimum, n.maximum,
            n.protected)

    log = st.fault_log
    assert len(snap.faults) == len(log) // FAULT_FIELDS > 0
    for fault, k in zip(snap.faults, range(0, len(log), FAULT_FIELDS), strict=True):
        fault_spec = plan.profile.faults[log[k]]
        assert (fault.code, fault.subsystem, fault.description, fault.at,
                fault.impressions, fault.stops_machine) == (
            fault_spec.code, fault_spec.subsystem, fault_spec.description,
            _at(log[k + 1]), log[k + 2], fault_spec.stops_machine)

    for alert, row in zip(snap.alerts, st.alerts, strict=True):
        index, _, _, code, severity, group, group_index, t, ticks = row
        assert (alert.index, alert.severity.value, alert.code, alert.group,
                alert.group_index, alert.location, alert.raised_at, alert.uptime_ticks) == (
            index, severity, code, group, group_index, 0, _at(t), ticks)


def test_the_job_log_records_are_made_once_each_and_stay_true_to_the_log() -> None:
    """A logged job never changes, so each snapshot makes records only for the jobs new
    since the last one; what it hands out is what a snapshot from scratch makes."""
    dev = make_device("office-color", seed=3)
    days = days_from(EPOCH.date(), 12)
    dev.run_day(days[0])
    yesterday = dev.snapshot().jobs
    reused = 0
    for day in days[1:]:
        dev.run_day(day)
        today = dev.snapshot().jobs
        kept, dev._state.job_records = dev._state.job_records, None
        assert dev.snapshot().jobs == today  # from scratch
        dev._state.job_records = kept
        reused += len({id(j) for j in yesterday} & {id(j) for j in today})
        yesterday = today
    assert reused > len(days)  # most of a day's log was logged before it
    assert dev._state.job_records is not None


def test_unchanged_views_are_the_same_objects_and_changed_ones_are_made_anew() -> None:
    """The properties, NVM settings and firmware state of a snapshot are the objects of
    the last one while what they are made of is unchanged (the payload cache compares
    them by identity first), and equal to a snapshot from scratch after every change."""
    dev = make_device("office-color", seed=5)
    days = days_from(EPOCH.date(), 6)
    st = dev._state

    def views() -> tuple[object, ...]:
        snap = dev.snapshot()
        return snap.properties[:-1], snap.nvm, snap.firmware  # the last: the console

    def same(a: object, b: object) -> bool:
        if isinstance(a, tuple) and isinstance(b, tuple):  # the properties: a slice
            return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
        return a is b

    def from_scratch() -> tuple[object, ...]:
        kept, st.kept_views = st.kept_views, None
        fresh = views()
        st.kept_views = kept
        return fresh

    dev.run_day(days[0])
    first = views()
    assert st.kept_views is not None  # one snapshot: made, nothing kept (a one-day fleet)
    assert all(v[1] is None for v in st.kept_views.values())
    before = views()
    assert not any(same(a, b) for a, b in zip(before, first, strict=True))
    dev.run_day(days[1])
    again = views()
    assert all(same(a, b) for a, b in zip(again, before, strict=True))
    assert again == from_scratch()
    nvm_id = dev._plan.profile.nvm[0].id
    changes = (
        lambda: setattr(st, "power_on_count", st.power_on_count + 1),  # a power cycle
        lambda: st.nvm.__setitem__(nvm_id, st.nvm.get(nvm_id, 0) + 1),  # set_nvm
        lambda: st.bank_versions.__setitem__(1, "200.000.001"),  # a download
        lambda: setattr(st, "active_bank", 1 - st.active_bank),  # a switch
        lambda: setattr(st, "trial", not st.trial),
    )
    for which, change in zip((0, 1, 2, 2, 2), changes, strict=True):
        before = views()
        change()
        after = views()
        assert after[which] != before[which]
        assert [same(a, b) for a, b in zip(after, before, strict=True)] == [
            i != which for i in range(3)]
        assert after == from_scratch()
