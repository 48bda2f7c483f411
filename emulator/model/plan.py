"""A profile compiled into the flat tuples the hot path needs.

Ten thousand devices of one kind share one :class:`Plan`: the per-device state holds
only counters, and everything derived from the profile (which count drives which
supply, thresholds in internal units, alert codes, cumulative weights) is computed
here once. Internal supply units are thousandths ("milli") of the unit the life is
given in, so coverage scaling stays in integers.
"""

from __future__ import annotations

import bisect
import itertools
import math
from datetime import date, datetime
from statistics import NormalDist
from zoneinfo import ZoneInfo

from device_direct.model import Severity
from emulator.model.profile import Profile, SupplySpec

# Which day quantity drives a supply.
DRIVE_IMPRESSIONS = 0  # all impressions (black toner and drum: K is used on colour pages too)
DRIVE_COLOR = 1  # colour impressions only (C, M, Y)
DRIVE_SHEETS = 2
DRIVE_TONER = 3  # toner used, in milli reference impressions (waste receptacle)

HFSI_IMPRESSIONS, HFSI_SHEETS, HFSI_A4, HFSI_MM = 0, 1, 2, 3
_HFSI_RULE = {"impressions": 0, "sheets": 1, "a4-units": 2, "mm-paper": 3}
# An A4 sheet fed long edge first travels 210 mm and counts 100 A4 units; a large
# (A3) sheet is fed short edge first: 420 mm and 200 units.
A4_MM = 210
A4_UNITS = 100

# prtAlertCode for a supply going low / out, by supply type.
_SUPPLY_ALERTS: dict[str, tuple[int, int]] = {
    "toner": (1104, 1101),  # markerTonerAlmostEmpty / markerTonerEmpty
    "tonerCartridge": (1104, 1101),
    "wasteToner": (1107, 1109),  # receptacle almost full / full
    "opc": (1111, 1112),  # markerOpcLifeAlmostOver / Over
}
_LIFE_ALERTS = (10, 11)  # subunitLifeAlmostOver / subunitLifeOver
ALERT_GROUP_SUPPLIES = 11
ALERT_GROUP_GENERAL = 5
# An HFSI item at or past this share of its life is replaced by a visiting technician
# (the visit is there anyway; a second trip for a part at 95 % costs more than it saves).
HFSI_DUE_SHARE = 0.9
ALERT_CODE_LIFE_OVER = 11  # subunitLifeOver: preventive maintenance overdue


def _milli_factor(spec: SupplySpec, coverage: float) -> int:
    if spec.rule == "coverage":
        return round(1000 * coverage / spec.reference_coverage)
    if spec.rule == "waste":
        return 1  # fed with toner already in milli units
    return 1000


class Plan:
    """Derived, shared, read-only view of a :class:`Profile` for fast simulation."""

    __slots__ = (
        "_day_start_cache", "color", "coverage_noise", "day_noise", "day_rate",
        "fault_is_day", "fault_parts",
        "fault_rate", "hfsi_cap", "hfsi_div", "hfsi_due_raw", "hfsi_life_raw", "hfsi_rule",
        "hfsi_share", "hfsi_sup", "job_cum", "job_sizes", "mix", "office_seconds", "profile",
        "sheet_rate", "sup_alert", "sup_colour", "sup_coverage_idx", "sup_critical",
        "sup_critical_idx", "sup_drive", "sup_factor", "sup_hfsi", "sup_low_used",
        "sup_milli_life", "sup_order_used", "sup_toner", "tz", "waste_critical",
    )

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.color = profile.engine.color
        usage = profile.usage
        drive = []
        for s in profile.supplies:
            if s.rule == "waste":
                drive.append(DRIVE_TONER)
            elif s.rule == "sheets":
                drive.append(DRIVE_SHEETS)
            elif s.colorant in ("cyan", "magenta", "yellow"):
                drive.append(DRIVE_COLOR)
            else:
                drive.append(DRIVE_IMPRESSIONS)
        self.sup_drive = tuple(drive)
        self.sup_toner = tuple(s.rule == "coverage" for s in profile.supplies)
        self.sup_colour = tuple(d == DRIVE_COLOR for d in self.sup_drive)
        self.sup_factor = self.factors(usage.coverage)
        self.sup_milli_life = tuple(s.life * 1000 for s in profile.supplies)
        low_used = []
        for s, life in zip(profile.supplies, self.sup_milli_life, strict=True):
            # The smallest 'used' whose level is at or under the low mark: the status
            # from these thresholds equals the status computed from the level.
            low_level = s.capacity * s.low_percent // 100
            low_used.append(-(-(s.capacity - low_level) * life // s.capacity))
        self.sup_low_used = tuple(low_used)
        self.sup_order_used = tuple(
            -(-(s.capacity - s.capacity * s.order_percent // 100) * life // s.capacity)
            for s, life in zip(profile.supplies, self.sup_milli_life, strict=True))
        alerts = []
        critical = []
        for s in profile.supplies:
            low, out = _SUPPLY_ALERTS.get(s.type, _LIFE_ALERTS)
            # Printing stops without toner or with a full waste bottle; a worn drum or
            # fuser only warns (the image degrades first) unless the profile says so.
            stops = s.stops_marking
            alerts.append((low, out))
            critical.append(stops)
        self.sup_alert = tuple(alerts)
        self.sup_critical = tuple(critical)
        self.sup_critical_idx = tuple(i for i, c in enumerate(critical) if c)
        self.waste_critical = any(drive[i] == DRIVE_TONER for i in self.sup_critical_idx)
        self.hfsi_rule = tuple(_HFSI_RULE[h.rule] for h in profile.hfsi)
        self.hfsi_share = tuple(round(h.share * 100) for h in profile.hfsi)
        self.hfsi_div = tuple(h.per * 100 for h in profile.hfsi)
        self.hfsi_cap = tuple(h.maximum * h.per * 100 for h in profile.hfsi)
        # Raw counts at the item's life (preventive maintenance overdue) and at the
        # share of its life from which a visiting technician replaces it anyway.
        self.hfsi_life_raw = tuple(h.life * h.per * 100 for h in profile.hfsi)
        self.hfsi_due_raw = tuple(int(h.life * HFSI_DUE_SHARE) * h.per * 100
                                  for h in profile.hfsi)
        ids = [h.id for h in profile.hfsi]
        self.sup_hfsi = tuple(ids.index(s.hfsi) if s.hfsi else -1 for s in profile.supplies)
        self.hfsi_sup = tuple(self.sup_hfsi.index(i) if i in self.sup_hfsi else -1
                              for i in range(len(ids)))
        self.fault_parts = tuple(tuple(ids.index(p) for p in f.parts) for f in profile.faults)
        self.sup_coverage_idx = tuple(i for i, s in enumerate(profile.supplies)
                                      if s.rule == "coverage")
        self.fault_is_day = tuple(f.per == "day" for f in profile.faults)
        self.fault_rate = tuple(f.rate for f in profile.faults)
        self.sheet_rate = sum(f.rate for f in profile.faults if f.per != "day") / 1000.0
        self.day_rate = sum(f.rate for f in profile.faults if f.per == "day")
        total = sum(w for _, w in usage.job_sizes)
        self.job_sizes = tuple(p for p, _ in usage.job_sizes)
        self.job_cum = tuple(itertools.accumulate(w / total for _, w in usage.job_sizes))
        self.mix = usage.job_mix
        self.tz = ZoneInfo(usage.timezone)
        self.office_seconds = (usage.office_end_hour - usage.office_start_hour) * 3600
        # Day-to-day noise on volume and on coverage per colorant: log-normal with mean
        # 1, as NOISE_STEPS quantiles picked by one uniform draw (a table lookup costs
        # a fraction of a gauss() and an exp() per draw, five times a device-day).
        self.day_noise = lognormal_table(usage.day_to_day_cv)
        self.coverage_noise = lognormal_table(usage.coverage_day_cv)
        self._day_start_cache: dict[int, int] = {}

    def factors(self, coverage: float) -> tuple[int, ...]:
        """Milli units each supply uses per unit of its driving count at ``coverage``."""
        return tuple(_milli_factor(s, coverage) for s in self.profile.supplies)

    def toner_per_impression(self, factors: tuple[int, ...]) -> tuple[int, int]:
        """Milli reference impressions of toner per impression and per colour impression."""
        per_imp = per_color = 0
        for s, d, f in zip(self.profile.supplies, self.sup_drive, factors, strict=True):
            if s.rule == "coverage":
                if d == DRIVE_COLOR:
                    per_color += f
                else:
                    per_imp += f
        return per_imp, per_color

    def day_start(self, day: date) -> int:
        """Epoch seconds (UTC) when office hours begin on ``day``, device-local time."""
        key = day.toordinal()
        start = self._day_start_cache.get(key)
        if start is None:
            local = datetime(day.year, day.month, day.day,
                             self.profile.usage.office_start_hour, tzinfo=self.tz)
            start = int(local.timestamp())
            self._day_start_cache[key] = start
        return start

    def job_size(self, u: float) -> int:
        """A job size (pages) for a uniform draw ``u`` in [0, 1)."""
        i = bisect.bisect_right(self.job_cum, u)
        return self.job_sizes[min(i, len(self.job_sizes) - 1)]

    def supply_alert(self, index: int, status: int) -> tuple[int, Severity]:
        """(prtAlertCode, severity) for supply ``index`` (0-based) in status 1 or 2."""
        low, out = self.sup_alert[index]
        if status == 1:
            return low, Severity.WARNING
        return out, Severity.CRITICAL if self.sup_critical[index] else Severity.WARNING


NOISE_STEPS = 512


def lognormal_table(cv: float) -> tuple[float, ...]:
    """NOISE_STEPS equally likely values of a log-normal law with mean 1 and
    coefficient of variation ``cv`` (index it with ``int(random() * NOISE_STEPS)``)."""
    if cv <= 0:
        return (1.0,) * NOISE_STEPS
    sigma = math.sqrt(math.log1p(cv * cv))
    normal = NormalDist()
    values = [math.exp(sigma * normal.inv_cdf((k + 0.5) / NOISE_STEPS))
              for k in range(NOISE_STEPS)]
    mean = sum(values) / NOISE_STEPS
    return tuple(v / mean for v in values)


_PLANS: dict[int, tuple[Profile, Plan]] = {}


def plan_for(profile: Profile) -> Plan:
    """The shared plan of ``profile`` (built on first use)."""
    hit = _PLANS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    plan = Plan(profile)
    _PLANS[id(profile)] = (profile, plan)
    return plan
