"""What makes one device of a class unlike the others, and one day unlike the next.

Theory of operation
-------------------
A profile states its class figures (median pages per working day, colour share,
coverage at 5 %, the spread across devices). :func:`draw_traits` draws one device's
own figures from them with a generator seeded by (seed, serial) alone, so a device is
the same device in every run and on every shard, and holds no generator state:

- volume: log-normal around the class median (``volume_spread``): a few heavy users,
  many light ones, as volume bands of real fleets are skewed;
- colour share: a beta law with the class mean and ``color_share_spread``;
- coverage per colorant: log-normal around the class coverage, so cyan, magenta and
  yellow run out on different days;
- replenishment habits: keeps a spare or not, the supplier's lead time in working days;
- how often someone power-cycles it, how many working days nobody prints.

:func:`day_volume_factor` and :meth:`DeviceTraits.day_factors` turn (calendar, day,
the day's seeded generator) into the day's volume factor and the day's supply factors
(per-colorant coverage with day-to-day noise): a pure function of (seed, device, day).
"""

from __future__ import annotations

import calendar as _cal
import math
import random
from dataclasses import dataclass
from datetime import date

from emulator.model.calendar import WorkCalendar
from emulator.model.plan import Plan

MONTH_END_DAYS = 3  # the last days of a month, when invoices and reports are printed


def _lognormal_unit(rng: random.Random, sigma: float) -> float:
    """A log-normal draw with median 1."""
    return math.exp(rng.gauss(0.0, sigma)) if sigma > 0 else 1.0


def _beta_around(rng: random.Random, mean: float, sd: float) -> float:
    """A draw in [0, 1] with the given mean and standard deviation (beta law)."""
    if mean <= 0 or mean >= 1 or sd <= 0:
        return mean
    k = mean * (1 - mean) / (sd * sd) - 1
    if k <= 0.5:  # spread too wide for a beta with this mean: keep it unimodal-ish
        k = 0.5
    return rng.betavariate(mean * k, (1 - mean) * k)


@dataclass(frozen=True, slots=True)
class DeviceTraits:
    """One device's own figures (derived, never stored: they replay from the seed)."""

    volume: float  # multiplier of the class median pages per working day
    color_share: float
    coverage: tuple[float, ...]  # per supply: multiplier of the class coverage (1 if none)
    keeps_spare: bool
    lead_time_days: int  # working days from an order to its delivery
    service_extra_days: int  # added to the profile's service response (0 or 1)
    power_cycle_rate: float  # probability per working day of a power cycle
    day_off_rate: float  # probability that a working day has no printing

    def __post_init__(self) -> None:
        if self.volume < 0 or not 0 <= self.color_share <= 1:
            raise ValueError("volume must be >= 0 and color_share in [0, 1]")
        if self.lead_time_days < 0 or self.service_extra_days < 0:
            raise ValueError("day counts must be >= 0")

    def day_factors(self, plan: Plan, rng: random.Random
                    ) -> tuple[tuple[int, ...], tuple[int, int]]:
        """Milli units per driving count of each supply today (coverage varies per
        colorant per day around the device's own coverage), and the toner used per
        impression and per colour impression (``Plan.toner_per_impression``)."""
        base = plan.sup_factor
        noise = plan.coverage_noise
        steps = len(noise)
        out = list(base)
        r = rng.random
        coverage = self.coverage
        per_imp = per_color = 0
        colour = plan.sup_colour
        for i in plan.sup_coverage_idx:
            f = out[i] = round(base[i] * coverage[i] * noise[int(r() * steps)])
            if colour[i]:
                per_color += f
            else:
                per_imp += f
        return tuple(out), (per_imp, per_color)


def draw_traits(plan: Plan, rng: random.Random) -> DeviceTraits:
    """Draw a device's traits from its class figures; ``rng`` is seeded per device."""
    usage = plan.profile.usage
    volume = _lognormal_unit(rng, usage.volume_spread)
    share = _beta_around(rng, usage.color_share, usage.color_share_spread) if plan.color \
        else 0.0
    by_colorant: dict[str, float] = {}
    coverage = []
    for s in plan.profile.supplies:
        if s.rule == "coverage":
            if s.colorant not in by_colorant:
                by_colorant[s.colorant] = _lognormal_unit(rng, usage.coverage_spread)
            coverage.append(by_colorant[s.colorant])
        else:
            coverage.append(1.0)
    lo, hi = usage.lead_time_days
    cycles = usage.power_cycles_per_month * _lognormal_unit(rng, 0.5)
    return DeviceTraits(
        volume=volume,
        color_share=share,
        coverage=tuple(coverage),
        keeps_spare=rng.random() < usage.spare_share,
        lead_time_days=rng.randint(lo, hi),
        service_extra_days=1 if rng.random() < 0.3 else 0,
        power_cycle_rate=min(1.0, cycles / 21.0),
        day_off_rate=min(1.0, usage.days_off_per_year / 250.0 * _lognormal_unit(rng, 0.5)),
    )


def day_volume_factor(plan: Plan, cal: WorkCalendar, day: date, working: bool) -> float:
    """The class's expected share of a working day's volume on ``day`` (no noise):
    weekends and holidays, month-end peaks, the month's factor (seasonal dip; the
    months shift by half a year south of the equator)."""
    key = (id(plan), day.toordinal())
    cached = cal.factors.get(key)
    if cached is not None:
        return cached
    usage = plan.profile.usage
    factor = 1.0 if working else usage.weekend_factor
    month = day.month - 1
    if cal.southern:
        month = (month + 6) % 12
    factor *= usage.month_factors[month]
    if day.day > _cal.monthrange(day.year, day.month)[1] - MONTH_END_DAYS:
        factor *= usage.month_end_factor
    cal.factors[key] = factor
    return factor
