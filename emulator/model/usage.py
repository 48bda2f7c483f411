"""A day of use, drawn in aggregate.

Theory of operation
-------------------
A day is not simulated page by page. From the profile's usage pattern and a seeded
``random.Random`` we draw the day's page total (normal around the working-day mean,
scaled down at weekends), split it by job kind and into colour, duplex and large
shares with stochastic rounding (``int(x + u)``: unbiased, one draw each), draw the
number of faults from a Poisson law whose mean follows the sheets fed, and apply the
whole day to the counters with a handful of integer operations. A fault that needs a
technician stops the machine at its time of day: only the share of the day before it
is printed. The same seed, plan and starting state give the same day, bit for bit.

Upkeep at the start of a day stands in for the people around the machine: the first
user clears a jam left from yesterday, empty supplies are swapped for the spare that
supplies replenishment sent, and a technician visit clears a service fault once
``service_response_days`` have passed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date

from emulator.model.plan import Plan
from emulator.model.state import OUT, DeviceState

KIND_PRINT, KIND_COPY, KIND_FAX, KIND_SCAN, KIND_REPORT = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class DayResult:
    """What one simulated day did."""

    day: date
    pages: int  # pages of all kinds (scanned images included)
    impressions: int
    sheets: int
    faults: int  # faults recorded in the history
    jams: int
    stopped: bool  # a stopping service fault ended the day early
    ran: bool = True  # False when the device was off or waiting for a technician

    def __post_init__(self) -> None:
        if min(self.pages, self.impressions, self.sheets, self.faults, self.jams) < 0:
            raise ValueError("day counts must be >= 0")


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth); the means here are small (well under 10 a day)."""
    if lam <= 0:
        return 0
    if lam > 30:  # large means: normal approximation, keeps the loop short
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def pick_fault(plan: Plan, rng: random.Random, sheets: float, *, day_faults: bool) -> int:
    """Which catalog fault happened, weighted by each one's expected count.

    With ``day_faults`` False only the faults that follow the sheets fed (jams) are
    candidates: a single print job does not last long enough for the per-day ones.
    """
    weights = [
        (r if day_faults else 0.0) if is_day else r * sheets / 1000.0
        for r, is_day in zip(plan.fault_rate, plan.fault_is_day, strict=True)
    ]
    u = rng.random() * sum(weights)
    acc = 0.0
    last = -1
    for i, w in enumerate(weights):
        if w > 0:
            acc += w
            last = i
            if u < acc:
                return i
    if last < 0:
        raise ValueError("no fault has a rate above zero here")
    return last  # u landed on the rounding edge of the total


def morning_upkeep(st: DeviceState, plan: Plan, ordinal: int, t: float) -> None:
    """What people do before the first job: clear faults, swap empty supplies."""
    if st.active_fault >= 0:
        spec = plan.profile.faults[st.active_fault]
        if spec.clears != "service":
            st.clear_fault(plan, t, "by the operator" if spec.clears == "operator" else "auto")
        elif ordinal >= st.active_fault_day + plan.profile.engine.service_response_days:
            st.clear_fault(plan, t, "service visit")
    for i, s in enumerate(st.sup_status):
        if s == OUT:
            st.replace_supply(plan, i, t)


def run_day(st: DeviceState, plan: Plan, day: date, rng: random.Random) -> DayResult:
    """Simulate the working hours of ``day`` (device-local) on a powered-on device.

    The caller has seeded ``rng`` for this day and checks the power state; this
    function only changes ``st``. Returns what happened for reports and tests.
    """
    ordinal = day.toordinal()
    t0 = plan.day_start(day)
    span = plan.office_seconds
    morning_upkeep(st, plan, ordinal, t0)
    st.last_day = ordinal
    if st.active_fault >= 0:  # still waiting for the technician
        return DayResult(day, 0, 0, 0, 0, 0, stopped=False, ran=False)
    usage = plan.profile.usage
    mean = usage.pages_per_day * (usage.weekend_factor if day.weekday() >= 5 else 1.0)
    pages = int(rng.gauss(mean, mean * usage.day_to_day_cv)) if mean > 0 else 0
    if pages < 0:
        pages = 0
    mix = plan.mix
    marking_share = 1.0 - mix[3]
    # Sheets fed, estimated before the split, set the jam rate.
    est_sheets = pages * marking_share * (1.0 - usage.duplex_share / 2)
    n_faults = poisson(rng, est_sheets * plan.sheet_rate + plan.day_rate)
    events: list[tuple[float, int]] = []
    stop_at = 1.0
    for _ in range(n_faults):
        idx = pick_fault(plan, rng, est_sheets, day_faults=True)
        events.append((rng.random(), idx))
    if events:
        events.sort()
        for frac, idx in events:
            spec = plan.profile.faults[idx]
            if spec.stops_machine and spec.clears == "service":
                stop_at = frac
                break
        if stop_at < 1.0:
            pages = int(pages * stop_at)
    r = rng.random
    pp = int(pages * mix[0] + r())
    cp = int(pages * mix[1] + r())
    fp = int(pages * mix[2] + r())
    sp = int(pages * mix[3] + r())
    imps = pp + cp + fp
    color = int((pp + cp) * usage.color_share + r()) if plan.color else 0
    if color > pp + cp:
        color = pp + cp
    duplex = int(imps * usage.duplex_share / 2 + r())
    if duplex * 2 > imps:
        duplex = imps // 2
    sheets = imps - duplex
    large = int(imps * usage.large_share + r())
    if large > imps:
        large = imps
    large_sheets = large * sheets // imps if imps else 0
    large_color = large * color // imps if imps else 0
    start_total = st.black + st.color
    t_end = t0 + int(span * stop_at)
    if imps:
        st.mark(plan, t_end, imps, color, sheets, large, large_color, large_sheets,
                plan.sup_factor)
        st.duplex_sheets += duplex
        st.print_imps += pp
        st.copy_imps += cp
        st.fax_imps += fp
    if sp:
        st.scan_images += sp
        st.fax_sent += int(sp * usage.fax_sent_share + r())
    users = usage.users
    for kind, n in ((KIND_PRINT, pp), (KIND_COPY, cp), (KIND_FAX, fp), (KIND_SCAN, sp)):
        if n:
            size = min(n, plan.job_size(r()))
            st.log_job(kind, t0 + int(span * stop_at * r()), size,
                       0 if kind == KIND_SCAN else size, int(r() * users))
    recorded = jams = 0
    stopped = False
    for frac, idx in events:
        if frac > stop_at:
            break
        at_imps = start_total + (int(imps * frac / stop_at) if stop_at > 0 else 0)
        stops = st.record_fault(plan, idx, t0 + int(span * frac), at_imps, day=ordinal)
        recorded += 1
        spec = plan.profile.faults[idx]
        jams += spec.is_jam
        if stops and spec.clears != "service":
            # Cleared within minutes by whoever was at the machine.
            st.clear_fault(plan, t0 + int(span * frac) + 300,
                           "by the operator" if spec.clears == "operator" else "auto")
        elif stops:
            stopped = True
    return DayResult(day, pp + cp + fp + sp, imps, sheets, recorded, jams, stopped)
