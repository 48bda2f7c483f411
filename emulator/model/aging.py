"""Used printers: start a new device with a history, by living it.

A printer on a customer's network is not new: its meters, wear counters, supplies and
fault history all tell the same story of its months of use. Rather than invent
numbers that would have to be kept consistent by hand, :func:`age_device` runs the
device's own day simulation (:meth:`EmulatedDevice.run_day`, the same one the fleet
uses) over the ``days`` days before today, with the upkeep people do around a real
machine: the morning upkeep of the day model (jams cleared, empty supplies swapped,
technician visits), plus a service visit that replaces any HFSI part that has reached
its life. The device's install date moves back to the first of those days.

So after ``age_device(device, 365)`` the billing meters hold a year of the profile's
usage, the HFSI counters and part replacement counts match it, each supply is part
way through its current unit, and the fault history holds the faults of that year
(the newest 40), with their times and impression counts, all from the seeded
generator: the same serial and seed give the same history.

Only a device with no history can be aged (a resumed one already has its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from emulator.model.errors import DeviceStateError
from emulator.model.state import FAULT_FIELDS

if TYPE_CHECKING:
    from emulator.model.device import EmulatedDevice

MAX_DAYS = 20 * 366


@dataclass(frozen=True, slots=True)
class AgingResult:
    """What :func:`age_device` did."""

    first_day: date
    days: int
    impressions: int
    faults: int  # entries in the fault history (it keeps the newest 40)
    parts_replaced: int
    supplies_replaced: int


def age_device(device: EmulatedDevice, days: int) -> AgingResult:
    """Give a new ``device`` ``days`` days of its own use, ending yesterday."""
    if not 0 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 0..{MAX_DAYS}, got {days}")
    st, plan = device._state, device._plan
    if st.last_day or st.total or st.fault_log:
        raise DeviceStateError("only a new device can be aged: this one already has a "
                               "history (a resumed state file?)")
    today = device._clock.now().date()
    first = today - timedelta(days=days)
    if days == 0:
        return AgingResult(first, 0, 0, 0, 0, 0)
    epoch = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp())
    st.install_epoch = epoch
    st.sup_installed = [epoch] * len(st.sup_installed)
    st.log(epoch, f"installed {first.isoformat()}: a used printer, {days} days of use "
                  f"simulated before it was switched on here")
    parts = 0
    hfsi = plan.profile.hfsi
    for n in range(days):
        day = first + timedelta(days=n)
        device.run_day(day)
        t = device._cal.day_start(day.toordinal()) + plan.office_seconds
        for i, h in enumerate(hfsi):
            if st.hfsi_count(plan, i) >= h.life:  # the technician's scheduled visit
                st.replace_part(plan, i, t)
                parts += 1
    device._persist()
    return AgingResult(first, days, st.total, len(st.fault_log) // FAULT_FIELDS, parts,
                       sum(st.sup_repl))
