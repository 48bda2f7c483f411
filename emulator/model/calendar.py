"""A device's working calendar: its local time zone, working days and public holidays.

Theory of operation
-------------------
Everything that happens to an emulated printer happens in its own local time: office
hours, weekends, the public holidays of the country its zone is in, the morning when
the first user swaps an empty toner, the day a courier delivers an order, the day a
technician comes. A :class:`WorkCalendar` answers those questions for one (time zone,
country, office hours) and caches each day as one small tuple, so the ten thousand
devices of a fleet that share a zone and a profile share one calendar and pay a dict
lookup per day.

The country comes from the zone (``zone.tab`` of the system's IANA database, which also
says on which side of the equator the zone lies: a summer dip falls in August in Berlin
and in January in Sydney). Holidays come from the ``holidays`` library (public holidays
by country, maintained upstream); a zone with no country (UTC) or a country the library
does not know has weekends only.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

# Day tuple fields: (office start, epoch s; working day; holiday name or "").
DayInfo = tuple[int, bool, str]


@dataclass(frozen=True, slots=True)
class ZoneFacts:
    """What the IANA zone table says about a zone: its country and hemisphere."""

    country: str  # ISO 3166 alpha-2, "" when the zone has none (UTC, Etc/...)
    southern: bool


@functools.cache
def _zone_table() -> dict[str, ZoneFacts]:
    """zone name -> facts, from the first ``zone.tab`` on the zoneinfo search path."""
    for base in zoneinfo.TZPATH:
        path = Path(base) / "zone.tab"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        out: dict[str, ZoneFacts] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = ZoneFacts(parts[0], parts[1].startswith("-"))
        return out
    return {}


def zone_facts(zone: str) -> ZoneFacts:
    """Country and hemisphere of IANA ``zone`` (no country for UTC and unknown zones)."""
    return _zone_table().get(zone, ZoneFacts("", False))


@functools.cache
def _holidays(country: str, year: int) -> dict[int, str]:
    """Public holidays of ``country`` in ``year``: day ordinal -> name."""
    if not country:
        return {}
    try:
        table = holidays.country_holidays(country, years=year)
    except NotImplementedError:  # a country the library does not cover
        return {}
    return {d.toordinal(): str(name) for d, name in table.items()}


class WorkCalendar:
    """Working days and office hours of devices in one zone (shared, cached)."""

    __slots__ = ("_days", "country", "end_hour", "factors", "southern", "start_hour", "tz",
                 "zone")

    def __init__(self, zone: str, start_hour: int, end_hour: int, country: str | None = None
                 ) -> None:
        self.zone = zone
        self.tz = ZoneInfo(zone)
        facts = zone_facts(zone)
        self.country = facts.country if country is None else country
        self.southern = facts.southern
        self.start_hour = start_hour
        self.end_hour = end_hour
        self._days: dict[int, DayInfo] = {}
        # (id of a plan, day ordinal) -> that class's volume factor here (traits.py).
        self.factors: dict[tuple[int, int], float] = {}

    def day(self, ordinal: int) -> DayInfo:
        """(office start as epoch seconds, working day?, holiday name) of a local day."""
        info = self._days.get(ordinal)
        if info is None:
            d = date.fromordinal(ordinal)
            start = int(datetime(d.year, d.month, d.day, self.start_hour,
                                 tzinfo=self.tz).timestamp())
            holiday = _holidays(self.country, d.year).get(ordinal, "")
            info = (start, d.weekday() < 5 and not holiday, holiday)
            self._days[ordinal] = info
        return info

    def day_start(self, ordinal: int) -> int:
        """Epoch seconds (UTC) when office hours begin on local day ``ordinal``."""
        return self.day(ordinal)[0]

    def is_working_day(self, ordinal: int) -> bool:
        return self.day(ordinal)[1]

    def add_working_days(self, ordinal: int, n: int) -> int:
        """The local day ``n`` working days after ``ordinal`` (n = 0: the day itself if
        it is a working day, else the next working day)."""
        d = ordinal
        if n <= 0:
            while not self.day(d)[1]:
                d += 1
            return d
        while n > 0:
            d += 1
            if self.day(d)[1]:
                n -= 1
        return d

    def local_ordinal(self, epoch: float) -> int:
        """The local day (ordinal) that epoch second ``epoch`` falls on."""
        return datetime.fromtimestamp(epoch, self.tz).toordinal()


_CALENDARS: dict[tuple[str, int, int, str | None], WorkCalendar] = {}


def calendar_for(zone: str, start_hour: int, end_hour: int, country: str | None = None
                 ) -> WorkCalendar:
    """The shared calendar of (zone, office hours, country)."""
    key = (zone, start_hour, end_hour, country)
    cal = _CALENDARS.get(key)
    if cal is None:
        cal = _CALENDARS[key] = WorkCalendar(zone, start_hour, end_hour, country)
    return cal
