"""The sans-I/O parts of the agent: OID table order, status rules, table contents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snmp_helpers import make_agent, make_device

from device_direct.model import Alert, PowerState, PrintJob, Severity
from emulator.clock import VirtualClock
from emulator.snmp.oid_table import Kind, MibValue, OidTable, counter, integer, parse_oid
from emulator.snmp.printer_mib import PRINTER_MIB, PRT_MARKER_LIFE_COUNT
from emulator.snmp.printer_status import (
    Condition,
    DeviceStatus,
    PrinterState,
    printer_status,
    status_of_device,
)

oids = st.lists(st.integers(0, 5), min_size=2, max_size=6).map(tuple)


@settings(max_examples=200, deadline=None)
@given(rows=st.sets(oids, max_size=40), probe=oids)
def test_getnext_returns_the_smallest_greater_oid_and_walks_cover_everything(
        rows: set[tuple[int, ...]], probe: tuple[int, ...]) -> None:
    table = OidTable((o, integer(i)) for i, o in enumerate(sorted(rows)))
    greater = sorted(o for o in rows if o > probe)
    nxt = table.next_after(probe)
    assert (nxt[0] if nxt else None) == (greater[0] if greater else None)
    walked, cursor = [], probe
    while (step := table.next_after(cursor)) is not None:
        walked.append(step[0])
        cursor = step[0]
    assert walked == greater
    for o in rows:
        assert table.get(o) is not None
    prefix = probe[:2]
    assert [o for o, _ in table.subtree(prefix)] == sorted(
        o for o in rows if o[:2] == prefix and o != prefix)


def test_values_are_checked() -> None:
    assert counter(2**32 + 5).value == 5  # Counter32 wraps
    with pytest.raises(ValueError):
        integer(2**31)
    with pytest.raises(TypeError):
        MibValue(Kind.OCTETS, "text")
    with pytest.raises(ValueError, match="not a dotted OID"):
        parse_oid("1.3.x")


NOW = datetime(2026, 1, 5, tzinfo=UTC)


def _alert(code: int, severity: Severity, index: int = 1) -> Alert:
    return Alert(index=index, severity=severity, code=code, group=13, group_index=1,
                 location=0, description=f"alert {code}", raised_at=NOW)


alerts = st.lists(st.builds(_alert, st.sampled_from([3, 8, 10, 808, 1101, 1104, 1111, 29]),
                            st.sampled_from(list(Severity))), max_size=5).map(tuple)
settled = st.sampled_from([PowerState.READY, PowerState.PRINTING, PowerState.SLEEPING,
                           PowerState.FAULTED, PowerState.BOOTING])


@settings(max_examples=300, deadline=None)
@given(power=settled, active=alerts)
def test_status_rules_worst_wins(power: PowerState, active: tuple[Alert, ...]) -> None:
    s = printer_status(power, active)
    critical = any(a.severity is Severity.CRITICAL for a in active)
    down_bits = {Condition.NO_PAPER, Condition.NO_TONER, Condition.DOOR_OPEN,
                 Condition.JAMMED, Condition.OFFLINE}
    if critical or s.conditions & down_bits or power in (PowerState.FAULTED,
                                                         PowerState.BOOTING):
        assert s.device is DeviceStatus.DOWN
    elif s.conditions or any(a.severity is Severity.WARNING for a in active):
        assert s.device is DeviceStatus.WARNING
    else:
        assert s.device is DeviceStatus.RUNNING
    if critical or power is PowerState.FAULTED:
        assert s.printer is PrinterState.OTHER
    bits = int.from_bytes(s.error_state, "big")
    assert {c for c in Condition if bits & (1 << (15 - c))} == set(s.conditions)
    assert len(s.error_state) == 2


def test_status_examples() -> None:
    jam = printer_status(PowerState.FAULTED, (_alert(8, Severity.CRITICAL),))
    assert jam.error_state == b"\x04\x00" and jam.device is DeviceStatus.DOWN
    low = printer_status(PowerState.READY, (_alert(1104, Severity.WARNING),))
    assert low.error_state == b"\x20\x00" and low.device is DeviceStatus.WARNING
    assert low.printer is PrinterState.IDLE and low.marker_status == 8
    paper = printer_status(PowerState.READY, (_alert(808, Severity.CRITICAL),))
    assert paper.conditions == {Condition.NO_PAPER, Condition.INPUT_TRAY_EMPTY}
    assert paper.error_state == b"\x40\x04"
    busy = printer_status(PowerState.PRINTING, ())
    assert busy.printer is PrinterState.PRINTING and busy.marker_status == 4


async def test_table_reads_the_live_model_on_every_build() -> None:
    clock = VirtualClock()
    device = make_device(clock)
    agent = make_agent(device, clock)
    first = agent.table()
    assert first.get(PRT_MARKER_LIFE_COUNT) == counter(0)
    await device.print_job(PrintJob(pages=4, duplex=True))
    assert agent.table().get(PRT_MARKER_LIFE_COUNT) == counter(4)
    assert first.get(PRT_MARKER_LIFE_COUNT) == counter(0)  # an old table is a value
    device.jam()
    table = agent.table()
    alerts = device.alerts()
    general = (*PRINTER_MIB, 5, 1, 1)
    assert table.get((*general, 19, 1)) == counter(max(a.index for a in alerts))
    assert table.get((*general, 18, 1)) == counter(
        sum(a.severity is Severity.CRITICAL for a in alerts))
    device.clear_fault()
    device.jam()
    assert agent.table().get((*general, 18, 1)) == counter(2)  # counts events, not rows


def test_a_wear_part_past_its_life_is_overdue_maintenance_not_a_spent_supply() -> None:
    # subunitLifeOver(11) of the printer as a whole (generalPrinter, 5) is an HFSI item
    # waiting for its technician: overduePreventMaint (bit 14) and serviceRequested.
    hfsi = Alert(index=1, severity=Severity.WARNING, code=11, group=5, group_index=1,
                 location=0, description="950-800 overdue", raised_at=NOW)
    s = printer_status(PowerState.READY, (hfsi,))
    assert s.conditions == {Condition.OVERDUE_PREVENT_MAINT, Condition.SERVICE_REQUESTED}
    assert s.error_state == b"\x01\x02" and s.device is DeviceStatus.WARNING
    # the same code on a supply (markerSupplies, 11) is a part to swap: no overdue bit
    spent = Alert(index=1, severity=Severity.WARNING, code=11, group=11, group_index=9,
                  location=0, description="Fuser at end of life", raised_at=NOW)
    assert printer_status(PowerState.READY, (spent,)).conditions == {
        Condition.SERVICE_REQUESTED}


def test_the_models_overdue_maintenance_alert_sets_the_overdue_bit() -> None:
    clock = VirtualClock()
    device = make_device(clock)
    assert Condition.OVERDUE_PREVENT_MAINT not in status_of_device(device).conditions
    # what the model does when an HFSI counter reaches its life (state.py)
    device._state._hfsi_due(device._plan, 0, clock.now().timestamp())
    assert Condition.OVERDUE_PREVENT_MAINT in status_of_device(device).conditions
