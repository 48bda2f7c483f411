"""The people around a printer: deliveries, supply swaps, technician visits, power cycles.

Theory of operation
-------------------
Each morning, before the first job, in the device's local time (its calendar):

1. *Deliveries.* An order placed when a supply went low gets its delivery day once,
   ``lead_time_days`` working days after the local day it was placed (weekends and
   public holidays skipped). On that morning the unit arrives and waits on site.
2. *The first user* clears a fault an operator can clear, and swaps every empty (or
   full) supply for a unit on site. A blocking supply that runs out during the day
   with a unit on site is swapped there and then (``usage.py``); without one, marking
   stops (or colour stops) until the delivery, and the empty alert stays.
3. *The technician* comes on the visit day: ``service_response_days`` working days
   after a fault that needs service (plus the device's own delay), or
   ``maintenance_response_days`` after the first HFSI item reached its life (an
   overdue-maintenance alert is raised then). The visit clears the fault, replaces the
   failed parts and every HFSI item at or past 90 % of its life (clearing its counter,
   logging the replacement), and power-cycles the machine.
4. *Power cycles*: some mornings someone switches the machine off and on; a working day
   nobody prints on (``days_off_per_year``) the machine is switched off, and on again
   the next morning someone is in. Only the power-on count and the uptime say so: the
   emulator's live power state is the caller's (a fleet's agent still uploads).

All of it is a pure function of the state, the calendar, the device's traits and the
day's seeded generator.
"""

from __future__ import annotations

import random

from emulator.model.calendar import WorkCalendar
from emulator.model.plan import Plan
from emulator.model.state import OUT, DeviceState
from emulator.model.traits import DeviceTraits

FIRST_USER_S = 10 * 60  # the first user arrives ten minutes after office hours begin
VISIT_S = 2 * 3600  # the technician arrives two hours after office hours begin
VISIT_MINUTES = 45  # a visit keeps the machine down this long


def power_cycle(st: DeviceState, t: float, why: str) -> None:
    """The machine is switched off and on at ``t``: one more power-on, uptime restarts."""
    st.power_on_count += 1
    st.boot_epoch = t
    st.log(t, f"power cycle ({why})")


def schedule(st: DeviceState, plan: Plan, cal: WorkCalendar, traits: DeviceTraits) -> None:
    """Set the delivery day of new orders and the day of the next technician visit."""
    if st.unscheduled:
        lead = traits.lead_time_days
        for i, at in enumerate(st.sup_order_at):
            if at and not st.sup_due[i]:
                st.sup_due[i] = cal.add_working_days(cal.local_ordinal(at), lead)
        st.unscheduled = False
    if st.active_fault < 0 and not any(st.hfsi_due_at):
        return
    wanted = 0
    if st.active_fault >= 0 and plan.profile.faults[st.active_fault].clears == "service":
        days = plan.profile.engine.service_response_days + traits.service_extra_days
        wanted = cal.add_working_days(st.active_fault_day, days)
    due = [t for t in st.hfsi_due_at if t]
    if due:
        day = cal.add_working_days(cal.local_ordinal(min(due)),
                                   plan.profile.engine.maintenance_response_days)
        wanted = day if not wanted else min(wanted, day)
    if wanted and (not st.visit_day or wanted < st.visit_day):
        st.visit_day = wanted


def morning(st: DeviceState, plan: Plan, cal: WorkCalendar, traits: DeviceTraits,
            ordinal: int, t0: int, present: bool, rng: random.Random) -> int:
    """The morning of local day ``ordinal`` (office hours begin at ``t0``).

    Returns the seconds into office hours from which the machine can print (later
    than 0 on a visit day). ``present``: someone is in (a working day, or a weekend
    at a shop that works weekends).
    """
    schedule(st, plan, cal, traits)
    working = cal.is_working_day(ordinal)
    if working and any(st.sup_due):
        for i, due in enumerate(st.sup_due):
            if due and ordinal >= due:
                # A spare-keeping customer orders a carton; others order one unit.
                st.sup_spare[i] += plan.profile.usage.spare_units if traits.keeps_spare \
                    else 1
                st.sup_spare_order[i] = st.sup_order_at[i]
                st.sup_spare_due[i] = due
                st.sup_order_at[i] = 0
                st.sup_due[i] = 0
                st.log(t0, f"supply {i + 1} {plan.profile.supplies[i].name} delivered")
    start = 0
    if present:
        t = t0 + FIRST_USER_S
        if st.active_fault >= 0:
            spec = plan.profile.faults[st.active_fault]
            if spec.clears != "service":
                st.clear_fault(plan, t, "by the operator" if spec.clears == "operator"
                               else "auto")
        if OUT in st.sup_status:
            for i, s in enumerate(st.sup_status):
                if s == OUT and st.sup_spare[i]:
                    swap_from_stock(st, plan, i, t, traits)
    if st.visit_day and ordinal >= st.visit_day and working:
        start = VISIT_S + VISIT_MINUTES * 60
        visit(st, plan, t0 + VISIT_S, traits)
    elif present and st.switched_off:
        power_cycle(st, t0 + FIRST_USER_S, "switched on again after a day off")
    elif present and rng.random() < traits.power_cycle_rate:
        power_cycle(st, t0 + FIRST_USER_S, "switched off and on by a user")
    if present:
        st.switched_off = 0
    return start


def swap_from_stock(st: DeviceState, plan: Plan, i: int, t: float,
                    traits: DeviceTraits) -> None:
    """Swap supply ``i`` for the unit on site; a customer who keeps spares reorders a
    carton when half of it is gone (the last unit, for a one-unit spare)."""
    st.sup_spare[i] -= 1
    st.replace_supply(plan, i, t, order_at=st.sup_spare_order[i], due=st.sup_spare_due[i])
    st.sup_spare_order[i] = st.sup_spare_due[i] = 0
    if traits.keeps_spare and not st.sup_order_at[i] \
            and st.sup_spare[i] <= plan.profile.usage.spare_units // 2:
        st.order(plan, i, t)


def visit(st: DeviceState, plan: Plan, t: float, traits: DeviceTraits) -> None:
    """A technician visit at ``t``: fault cleared, failed and due parts replaced,
    counters cleared, the machine power-cycled."""
    st.log(t, "technician visit")
    failed: tuple[int, ...] = ()
    if st.active_fault >= 0:
        failed = plan.fault_parts[st.active_fault]
    due_raw = plan.hfsi_due_raw
    for i, raw in enumerate(st.hfsi_raw):
        if i in failed or raw >= due_raw[i] or st.hfsi_due_at[i]:
            st.replace_part(plan, i, t)
    if st.active_fault >= 0:
        st.clear_fault(plan, t, "service visit")
    st.visit_day = 0
    power_cycle(st, t + VISIT_MINUTES * 60, "after the technician's visit")
