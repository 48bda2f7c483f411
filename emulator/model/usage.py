"""A day of use, drawn in aggregate.

Theory of operation
-------------------
A day is not simulated page by page. Everything runs in the device's local calendar
(``calendar.py``). From the class figures, the device's own traits (``traits.py``) and
a seeded ``random.Random`` we draw the day's page total (log-normal around the device's
working-day volume times the day's factor: weekends, public holidays, month-end peaks,
the month's seasonal factor, the odd day nobody prints), split it by job kind and into
colour, duplex and large shares with stochastic rounding (``int(x + u)``: unbiased, one
draw each), draw the day's coverage per colorant, draw the number of faults from a
Poisson law whose mean follows the sheets fed (faults counted per day scale with the
day's activity), and apply the day to the counters with a handful of integer operations.

Marking stops when a blocking supply runs out: the day's pages are laid evenly over
office hours, and :func:`mark_window` finds the instant the first blocking supply would
go empty. With a unit on site it is swapped there and printing goes on; an empty colour
toner stops the colour pages only; otherwise the rest of the day's jobs wait and are
cancelled at the end of the day (held-job timeout): they are not counted, and the
empty alert stays until a unit is delivered and swapped (``upkeep.py``). A fault that
needs a technician stops the machine at its time of day the same way. The same seed,
plan, calendar and starting state give the same day, bit for bit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date

from emulator.model import upkeep
from emulator.model.calendar import WorkCalendar
from emulator.model.plan import DRIVE_COLOR, NOISE_STEPS, Plan
from emulator.model.state import DeviceState
from emulator.model.traits import DeviceTraits, day_volume_factor

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
    unprinted: int = 0  # impressions not made: a blocking supply was empty

    def __post_init__(self) -> None:
        if min(self.pages, self.impressions, self.sheets, self.faults, self.jams,
               self.unprinted) < 0:
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


# A day's marking: (impressions, colour, sheets, large, large colour, large sheets,
# duplex sheets, print, copy, fax impressions).
Run = tuple[int, int, int, int, int, int, int, int, int, int]
PRESENT_WEEKEND = 0.2  # a weekend factor from which someone is in at weekends too
SWAP_S = 10 * 60  # an empty unit is swapped for the one on site within ten minutes


def _part(v: Run, k: int) -> Run:
    """The first ``k`` impressions of run ``v`` (every count in proportion)."""
    n = v[0]
    if k >= n:
        return v
    if k <= 0:
        return (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    color = v[1] * k // n
    duplex = v[6] * k // n
    large = v[3] * k // n
    lc = v[4] * k // n
    ls = v[5] * k // n
    pp = v[7] * k // n
    cp = v[8] * k // n
    fp = v[9] * k // n
    rest = k - pp - cp - fp  # rounding: to the biggest kind
    if v[7] >= v[8] and v[7] >= v[9]:
        pp += rest
    elif v[8] >= v[9]:
        cp += rest
    else:
        fp += rest
    if color > pp + cp:
        color = pp + cp
    if lc > color:
        lc = color
    return (k, color, k - duplex, large, lc, ls, duplex, pp, cp, fp)


def _mono(v: Run) -> Run:
    """Run ``v`` without its colour pages (what still prints with a colour toner out)."""
    n, color = v[0], v[1]
    m = n - color
    if not color or n <= 0:
        return v
    duplex = v[6] * m // n
    sheets = m - duplex
    large = v[3] - v[4]
    ls = min(v[5] * m // n, sheets, large)
    pc = v[7] + v[8]
    from_pp = color * v[7] // pc if pc else 0
    return (m, 0, sheets, large, 0, ls, duplex, v[7] - from_pp, v[8] - (color - from_pp),
            v[9])


def _apply(st: DeviceState, plan: Plan, v: Run, t_a: float, t_b: float,
           factors: tuple[int, ...]) -> None:
    if v[0] <= 0:
        return
    st.mark(plan, t_b, v[0], v[1], v[2], v[3], v[4], v[5], factors, t_start=t_a)
    st.duplex_sheets += v[6]
    st.print_imps += v[7]
    st.copy_imps += v[8]
    st.fax_imps += v[9]


def _minus(v: Run, w: Run) -> Run:
    """What is left of run ``v`` after its first part ``w``."""
    n = v[0] - w[0]
    color = max(0, v[1] - w[1])
    duplex = max(0, v[6] - w[6])
    if duplex * 2 > n:
        duplex = n // 2
    sheets = n - duplex
    large = min(n, max(0, v[3] - w[3]))
    pp, cp = max(0, v[7] - w[7]), max(0, v[8] - w[8])
    fp = n - pp - cp
    if fp < 0:
        pp, fp = pp + fp, 0
    color = min(color, pp + cp)
    lc = min(max(0, v[4] - w[4]), color, large)
    ls = min(max(0, v[5] - w[5]), sheets, large)
    return (n, color, sheets, large, lc, ls, duplex, pp, cp, fp)


def mark_window(st: DeviceState, plan: Plan, traits: DeviceTraits, day: Run, t_a: float,
                t_b: float, factors: tuple[int, ...],
                rates: tuple[int, int] | None = None) -> tuple[int, float]:
    """Print ``day`` evenly from ``t_a`` to ``t_b``, stopping for empty supplies.

    Returns (impressions printed, share of the window the engine could mark).
    """
    drive = plan.sup_drive
    todo = day
    t_cur = t_a
    printed = 0
    colour_ok = True
    for _ in range(2 * len(drive) + 2):
        if todo[0] <= 0:
            return printed, 1.0
        share, i = st.room(plan, todo[0], todo[1], todo[2], factors, colour_blocks=colour_ok,
                           toner_rates=rates)
        if share >= 1.0:
            _apply(st, plan, todo, t_cur, t_b, factors)
            return printed + todo[0], 1.0
        part = _part(todo, math.ceil(todo[0] * share))  # the last page empties it
        t_out = t_cur + (t_b - t_cur) * share
        _apply(st, plan, part, t_cur, t_out, factors)
        printed += part[0]
        todo = _minus(todo, part)
        t_cur = t_out
        if st.sup_spare[i]:
            upkeep.swap_from_stock(st, plan, i, min(t_out + SWAP_S, t_b), traits)
        elif drive[i] == DRIVE_COLOR and colour_ok:
            colour_ok = False  # colour jobs wait; black-and-white ones go on
            todo = _mono(todo)
        else:
            break
    return printed, (t_cur - t_a) / (t_b - t_a) if t_b > t_a else 0.0


def run_day(st: DeviceState, plan: Plan, day: date, rng: random.Random,
            cal: WorkCalendar, traits: DeviceTraits, now: float | None = None) -> DayResult:
    """Simulate the working hours of ``day`` (device-local) on a powered-on device.

    The caller has seeded ``rng`` for this day and checks the power state; this
    function only changes ``st``. Returns what happened for reports and tests.
    With ``now`` inside the day's office hours, the day ends at ``now``: nothing is
    stamped later than the instant the day was applied (a payload built then cannot
    hold the evening's jobs). A ``now`` before the day begins leaves the whole day
    (fast-forward runs with no clock to speak of).
    """
    ordinal = day.toordinal()
    t0, working, _ = cal.day(ordinal)
    span = plan.office_seconds
    usage = plan.profile.usage
    present = working or usage.weekend_factor >= PRESENT_WEEKEND
    offset = upkeep.morning(st, plan, cal, traits, ordinal, t0, present, rng)
    st.last_day = ordinal
    if st.active_fault >= 0:  # still waiting for the technician
        upkeep.schedule(st, plan, cal, traits)
        return DayResult(day, 0, 0, 0, 0, 0, stopped=False, ran=False)
    r = rng.random
    activity = day_volume_factor(plan, cal, day, working)
    if working and r() < traits.day_off_rate:
        activity = 0.0  # nobody prints today (office closed, everyone out): switched off
        st.switched_off = 1
        st.log(t0, "switched off: nobody in today")
    if offset >= span:
        activity = 0.0
    if now is not None and t0 + offset <= now < t0 + span:
        span = int(now) - t0  # the rest of the day has not happened yet
    t_first = t0 + offset
    span_left = max(0, span - offset)
    activity *= span_left / plan.office_seconds
    mean = usage.pages_per_day * traits.volume * activity
    pages = int(mean * plan.day_noise[int(r() * NOISE_STEPS)]) if mean > 0 else 0
    mix = plan.mix
    marking_share = 1.0 - mix[3]
    # Sheets fed, estimated before the split, set the jam rate.
    est_sheets = pages * marking_share * (1.0 - usage.duplex_share / 2)
    n_faults = poisson(rng, est_sheets * plan.sheet_rate
                       + plan.day_rate * (activity if activity < 1.0 else 1.0))
    events: list[tuple[float, int]] = []
    stop_at = 1.0
    for _ in range(n_faults):
        idx = pick_fault(plan, rng, est_sheets, day_faults=True)
        events.append((r(), idx))
    if events:
        events.sort()
        for frac, idx in events:
            spec = plan.profile.faults[idx]
            if spec.stops_machine and spec.clears == "service":
                stop_at = frac
                break
        if stop_at < 1.0:
            pages = int(pages * stop_at)
    pp = int(pages * mix[0] + r())
    cp = int(pages * mix[1] + r())
    fp = int(pages * mix[2] + r())
    sp = int(pages * mix[3] + r())
    imps = pp + cp + fp
    color = int((pp + cp) * traits.color_share + r()) if plan.color else 0
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
    t_end = t_first + int(span_left * stop_at)
    printed, marked = imps, 1.0
    if imps:
        factors, rates = traits.day_factors(plan, rng)
        run: Run = (imps, color, sheets, large, large_color, large_sheets, duplex, pp, cp, fp)
        printed, marked = mark_window(st, plan, traits, run, t_first, t_end, factors, rates)
    unprinted = imps - printed
    if unprinted:
        st.pages_unprinted += unprinted
        st.log(t_end, f"{unprinted} impressions not printed: jobs held for an empty "
                      f"supply were cancelled at the end of the day")
    if sp:
        st.scan_images += sp
        st.fax_sent += int(sp * usage.fax_sent_share + r())
    users = usage.users
    marked_end = t_first + int(span_left * stop_at * marked)
    for kind, n in ((KIND_PRINT, pp), (KIND_COPY, cp), (KIND_FAX, fp), (KIND_SCAN, sp)):
        if kind != KIND_SCAN and printed < imps:
            n = n * printed // imps  # the held jobs were cancelled: not in the log
        if n:
            size = min(n, plan.job_size(r()))
            end = t_end if kind == KIND_SCAN else marked_end
            st.log_job(kind, t_first + int((end - t_first) * r()), size,
                       0 if kind == KIND_SCAN else size, int(r() * users))
    recorded = jams = 0
    stopped = False
    total_now = st.black + st.color
    for frac, idx in events:
        if frac > stop_at:
            break
        spec = plan.profile.faults[idx]
        if not plan.fault_is_day[idx] and frac > stop_at * marked:
            continue  # a paper-path fault needs paper moving: the engine had stopped
        at_imps = start_total + (int(imps * frac / stop_at) if stop_at > 0 else 0)
        if at_imps > total_now:
            at_imps = total_now
        at = t_first + int(span_left * frac)
        stops = st.record_fault(plan, idx, at, at_imps, day=ordinal)
        recorded += 1
        jams += spec.is_jam
        if stops and spec.clears != "service":
            # Cleared within minutes by whoever was at the machine.
            st.clear_fault(plan, min(at + 300, t_first + span_left),
                           "by the operator" if spec.clears == "operator" else "auto")
        elif stops:
            stopped = True
    upkeep.schedule(st, plan, cal, traits)
    return DayResult(day, pp + cp + fp + sp, printed, sheets if printed == imps else
                     printed - (duplex * printed // imps if imps else 0), recorded, jams,
                     stopped, unprinted=unprinted)
