"""Device profiles: what one kind of emulated printer is made of and how it is used.

A profile is a TOML file in ``fixtures/devices/`` (see ``office-color.toml`` for every
key). :func:`load_profile` reads it with ``device_direct.tomlreader`` so that an error
names the file and the key, unknown keys included, and turns it into frozen values.
Value checks that need more than one key live in ``__post_init__``; the loader reports
them against the table they came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device_direct.errors import ConfigError
from device_direct.model import CHAIN_LINK
from device_direct.tomlreader import Table, load_toml
from emulator.errors import ProfileError
from emulator.model.equipment import (
    Equipment,
    HistorySpec,
    MibSpec,
    equipment,
    read_history,
    read_mib,
)

PROFILE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "devices"

# IANA-PRINTER-MIB PrtMarkerSuppliesTypeTC (the subset a laser MFP reports).
SUPPLY_TYPE_CODES: dict[str, int] = {
    "other": 1,
    "toner": 3,
    "wasteToner": 4,
    "opc": 9,
    "developer": 10,
    "fuser": 15,
    "cleanerUnit": 18,
    "transferUnit": 20,
    "tonerCartridge": 21,
    "staples": 32,
}
# PrtMarkerSuppliesSupplyUnitTC.
SUPPLY_UNIT_CODES: dict[str, int] = {
    "other": 1,
    "impressions": 7,
    "sheets": 8,
    "items": 18,
    "percent": 19,
}
# prtAlertGroup values a fault may be filed under.
ALERT_GROUPS: dict[int, str] = {
    5: "generalPrinter",
    6: "cover",
    8: "input",
    9: "output",
    10: "marker",
    11: "markerSupplies",
    13: "mediaPath",
}
COLORANTS = ("black", "cyan", "magenta", "yellow", "")
# coverage: toner, level in impressions at the reference coverage.
# impressions / sheets: a unit worn by use, level in percent of its life.
# waste: a receptacle filled by the toner that is used.
SUPPLY_RULES = ("coverage", "impressions", "sheets", "waste")
HFSI_RULES = ("impressions", "sheets", "a4-units", "mm-paper")
FAULT_RATE_UNITS = ("1000-sheets", "day")
# Bounds far past any real printer (the fastest production engines run about 150 ppm
# and 100,000 pages a day), which keep a typo such as 1e12 from running the model out
# of memory or time.
MAX_PPM = 500
MAX_PAGES_PER_DAY = 200_000
MAX_FAULT_RATE = 100.0
FAULT_CLEARS = ("operator", "auto", "service")
JOB_KINDS = ("print", "copy", "fax", "scan")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class FirmwareModule:
    """One firmware module as listed in sysDescr ("SS 100.002.057.09608")."""

    name: str  # system | network | ui | engine | ...
    label: str  # the short sysDescr label: SS, NC, UI, ME
    version: str

    def __post_init__(self) -> None:
        _need(bool(self.name) and bool(self.label), "module name and label must not be empty")
        _need(bool(_VERSION.match(self.version)), f"bad version {self.version!r}")


@dataclass(frozen=True, slots=True)
class IdentitySpec:
    manufacturer: str
    model: str
    product_code: str
    sys_object_id: str
    firmware: tuple[FirmwareModule, ...]  # the first one is the system software (A/B bank)
    options: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _need(bool(self.manufacturer and self.model), "manufacturer and model are required")
        _need(len(self.firmware) >= 1, "at least one firmware module is required")
        _need(bool(re.match(r"^1\.3\.6\.1\.4\.1(\.\d+)+$", self.sys_object_id)),
              f"sys_object_id must be under 1.3.6.1.4.1, got {self.sys_object_id!r}")


@dataclass(frozen=True, slots=True)
class EngineSpec:
    ppm: int
    color: bool
    trays: int
    boot_seconds: float = 90.0
    shutdown_seconds: float = 5.0
    # A fault that needs a technician stays until the visit this many working days
    # later (device-local calendar); the visit power-cycles the machine.
    service_response_days: int = 1
    # Working days from an overdue preventive-maintenance alert (an HFSI item at its
    # life) to the technician's visit that replaces the due items.
    maintenance_response_days: int = 5

    def __post_init__(self) -> None:
        _need(self.ppm >= 1, "ppm must be >= 1")
        _need(1 <= self.trays <= 12, "trays must be 1..12")
        _need(self.boot_seconds >= 0 and self.shutdown_seconds >= 0, "times must be >= 0")
        _need(self.service_response_days >= 0, "service_response_days must be >= 0")
        _need(self.maintenance_response_days >= 0, "maintenance_response_days must be >= 0")


@dataclass(frozen=True, slots=True)
class SupplySpec:
    """One replaceable unit; ``index`` is its prtMarkerSuppliesIndex (1-based)."""

    index: int
    name: str
    part_number: str
    type: str
    colorant: str
    unit: str
    capacity: int
    rule: str
    life: int  # in impressions at reference coverage, impressions, or sheets
    reference_coverage: float = 0.05
    low_percent: int = 10
    supply_class: int = 3
    # Supplies replenishment orders a unit when this much is left (at the latest when
    # the low alert comes): the courier's lead time has to fit before the unit is out.
    order_percent: int = 40
    hfsi: str = ""  # the HFSI item counting the same part: a swap clears its counter
    # Empty (or full, for a receptacle) stops marking. None: by type (toner and waste
    # toner stop the engine; a worn drum or fuser only warns).
    blocks: bool | None = None

    def __post_init__(self) -> None:
        _need(self.type in SUPPLY_TYPE_CODES, f"type must be one of {sorted(SUPPLY_TYPE_CODES)}")
        _need(self.unit in SUPPLY_UNIT_CODES, f"unit must be one of {sorted(SUPPLY_UNIT_CODES)}")
        _need(self.colorant in COLORANTS, f"colorant must be one of {COLORANTS}")
        _need(self.rule in SUPPLY_RULES, f"rule must be one of {SUPPLY_RULES}")
        _need(self.capacity >= 1, "capacity must be >= 1")
        _need(self.life >= 1, "life must be >= 1")
        _need(0 < self.reference_coverage <= 1, "reference_coverage must be in (0, 1]")
        _need(0 <= self.low_percent < 100, "low_percent must be 0..99")
        _need(0 <= self.order_percent < 100, "order_percent must be 0..99")
        _need(self.supply_class in (3, 4), "class must be 3 (consumed) or 4 (filled)")
        _need((self.rule == "waste") == (self.supply_class == 4),
              "rule 'waste' goes with class 4 (receptacleThatIsFilled) and only with it")

    @property
    def stops_marking(self) -> bool:
        if self.blocks is not None:
            return self.blocks
        return self.type in ("toner", "tonerCartridge", "wasteToner")

    @property
    def type_code(self) -> int:
        return SUPPLY_TYPE_CODES[self.type]

    @property
    def unit_code(self) -> int:
        return SUPPLY_UNIT_CODES[self.unit]


@dataclass(frozen=True, slots=True)
class HfsiSpec:
    id: str
    name: str
    life: int
    rule: str
    per: int = 1  # raw units per count, e.g. one count per 216 mm of paper
    maximum: int = 999_999
    share: float = 1.0  # share of the sheets that pass this part (a tray's feed roll)

    def __post_init__(self) -> None:
        _need(bool(CHAIN_LINK.match(self.id)), f"id must be a chain-link NNN-NNN, got {self.id!r}")
        _need(self.rule in HFSI_RULES, f"rule must be one of {HFSI_RULES}")
        _need(self.per >= 1 and self.life >= 1, "per and life must be >= 1")
        _need(self.maximum >= self.life, "maximum must be >= life")
        _need(0 < self.share <= 1, "share must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    code: str
    subsystem: str
    description: str
    rate: float
    per: str  # 1000-sheets | day
    stops_machine: bool
    clears: str  # operator | auto | service
    alert_code: int  # prtAlertCode, e.g. jam(8)
    alert_group: int  # prtAlertGroup, e.g. mediaPath(13)
    parts: tuple[str, ...] = ()  # HFSI ids the technician replaces for this fault

    def __post_init__(self) -> None:
        _need(bool(CHAIN_LINK.match(self.code)),
              f"code must be a chain-link NNN-NNN, got {self.code!r}")
        _need(self.rate >= 0, "rate must be >= 0")
        _need(self.per in FAULT_RATE_UNITS, f"per must be one of {FAULT_RATE_UNITS}")
        _need(self.clears in FAULT_CLEARS, f"clears must be one of {FAULT_CLEARS}")
        _need(self.alert_group in ALERT_GROUPS,
              f"alert_group must be one of {sorted(ALERT_GROUPS)}")
        _need(self.alert_code >= 1, "alert_code must be a prtAlertCode (>= 1)")

    @property
    def is_jam(self) -> bool:
        return self.alert_code == 8


@dataclass(frozen=True, slots=True)
class NvmSpec:
    id: str
    name: str
    default: int
    minimum: int
    maximum: int
    protected: bool = False

    def __post_init__(self) -> None:
        _need(bool(CHAIN_LINK.match(self.id)), f"id must be a chain-link NNN-NNN, got {self.id!r}")
        _need(self.minimum <= self.default <= self.maximum, "needs min <= default <= max")


@dataclass(frozen=True, slots=True)
class UsagePattern:
    pages_per_day: float  # mean pages (sides) on a working day, all job kinds
    color_share: float
    duplex_share: float  # share of impressions printed two-sided
    large_share: float  # share of impressions on A3/tabloid
    job_sizes: tuple[tuple[int, float], ...]  # (pages, weight)
    job_mix: tuple[float, float, float, float]  # print, copy, fax, scan shares of pages
    office_start_hour: int = 8
    office_end_hour: int = 18
    weekend_factor: float = 0.05
    day_to_day_cv: float = 0.35
    coverage: float = 0.05
    timezone: str = "UTC"
    users: int = 25
    fax_sent_share: float = 0.1  # share of scanned images that are sent as fax
    # How devices of the class differ (drawn once per device, see traits.py):
    volume_spread: float = 0.5  # sigma of ln(device volume / class median)
    color_share_spread: float = 0.1  # standard deviation of a device's colour share
    coverage_spread: float = 0.25  # sigma of ln(device coverage / class), per colorant
    coverage_day_cv: float = 0.3  # day-to-day variation of coverage, per colorant
    # How days differ: the last days of a month, months, days nobody prints.
    month_end_factor: float = 1.3  # volume on the last 3 days of a month
    month_factors: tuple[float, ...] = (1.0,) * 12  # Jan..Dec, northern hemisphere
    days_off_per_year: float = 3.0  # working days with no printing (office closed)
    power_cycles_per_month: float = 0.5  # class mean; drawn per device
    # Replenishment: share of customers keeping a spare unit; courier lead time.
    spare_share: float = 0.35
    spare_units: int = 1  # units a spare-keeping customer orders (and keeps) at a time
    lead_time_days: tuple[int, int] = (2, 5)  # working days, drawn per device
    country: str | None = None  # holidays of this country instead of the zone's

    def __post_init__(self) -> None:
        _need(self.pages_per_day >= 0, "pages_per_day must be >= 0")
        for name in ("color_share", "duplex_share", "large_share", "weekend_factor",
                     "fax_sent_share"):
            _need(0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1]")
        _need(0 <= self.day_to_day_cv <= 3, "day_to_day_cv must be in [0, 3]")
        _need(0 < self.coverage <= 1, "coverage must be in (0, 1]")
        _need(len(self.job_sizes) >= 1, "job_sizes needs at least one [pages, weight]")
        _need(all(p >= 1 and w > 0 for p, w in self.job_sizes),
              "job_sizes entries need pages >= 1 and weight > 0")
        _need(len(self.job_mix) == 4 and all(s >= 0 for s in self.job_mix),
              "job_mix shares must be >= 0")
        _need(abs(sum(self.job_mix) - 1.0) < 1e-6, f"job_mix shares must add up to 1, "
              f"got {sum(self.job_mix):g}")
        _need(0 <= self.office_start_hour < self.office_end_hour <= 24,
              "office hours need 0 <= start < end <= 24")
        _need(self.users >= 1, "users must be >= 1")
        for name in ("volume_spread", "coverage_spread", "coverage_day_cv"):
            _need(0 <= getattr(self, name) <= 2, f"{name} must be in [0, 2]")
        _need(0 <= self.color_share_spread < 0.5, "color_share_spread must be in [0, 0.5)")
        _need(0 < self.month_end_factor <= 5, "month_end_factor must be in (0, 5]")
        _need(len(self.month_factors) == 12 and all(0 <= f <= 5 for f in self.month_factors),
              "month_factors needs 12 values in [0, 5] (January first)")
        _need(0 <= self.days_off_per_year <= 100, "days_off_per_year must be in [0, 100]")
        _need(0 <= self.power_cycles_per_month <= 60, "power_cycles_per_month must be 0..60")
        _need(0 <= self.spare_share <= 1, "spare_share must be in [0, 1]")
        _need(1 <= self.spare_units <= 20, "spare_units must be 1..20")
        _need(0 <= self.lead_time_days[0] <= self.lead_time_days[1] <= 60,
              "lead_time_days needs [min, max] working days with 0 <= min <= max <= 60")
        _need(self.country is None or bool(re.match(r"^[A-Z]{2}$", self.country)),
              "country must be an ISO 3166 alpha-2 code such as DE")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True, slots=True)
class Profile:
    """One kind of device: identity, parts, faults, settings and how it is used."""

    name: str
    source: str
    identity: IdentitySpec
    engine: EngineSpec
    supplies: tuple[SupplySpec, ...]
    hfsi: tuple[HfsiSpec, ...]
    faults: tuple[FaultSpec, ...]
    nvm: tuple[NvmSpec, ...]
    usage: UsagePattern
    # [web] admin_password: the embedded web pages' admin password for devices of this
    # profile (None: each device's serial number, as many printers ship).
    admin_password: str | None = None
    # How the printer presents itself on the network, and the age of a used one
    # (optional [mib] and [history] tables; see emulator/model/equipment.py).
    mib: MibSpec = field(default_factory=MibSpec)
    history: HistorySpec = field(default_factory=HistorySpec)

    def __post_init__(self) -> None:
        _need(len(self.supplies) >= 1, "at least one supply is required")
        _need(self.admin_password is None or 4 <= len(self.admin_password) <= 128,
              "web.admin_password must be 4-128 characters")
        for kind, ids in (("supply name", [s.name for s in self.supplies]),
                          ("HFSI id", [h.id for h in self.hfsi]),
                          ("fault code", [f.code for f in self.faults]),
                          ("NVM id", [n.id for n in self.nvm])):
            dup = {i for i in ids if ids.count(i) > 1}
            _need(not dup, f"duplicate {kind}: {sorted(dup)}")
        hfsi_ids = {h.id for h in self.hfsi}
        for s in self.supplies:
            _need(not s.hfsi or s.hfsi in hfsi_ids,
                  f"supply {s.name!r}: hfsi {s.hfsi!r} is not an HFSI item of this profile")
        for f in self.faults:
            unknown = [p for p in f.parts if p not in hfsi_ids]
            _need(not unknown, f"fault {f.code}: parts {unknown} are not HFSI items")
        if not self.engine.color:
            _need(self.usage.color_share == 0, "a mono engine needs usage.color_share = 0")
            _need(all(s.colorant in ("black", "") for s in self.supplies),
                  "a mono engine has only black or colorless supplies")

    @property
    def equipment(self) -> Equipment:
        """Trays, bins, languages and vendor objects as the network faces report them."""
        return equipment(self.mib, trays=self.engine.trays,
                         a3="a3" in self.identity.features)

    def fault(self, code: str) -> FaultSpec:
        """The catalog entry for ``code``; KeyError names the known codes."""
        for f in self.faults:
            if f.code == code:
                return f
        raise KeyError(f"fault {code!r} is not in profile {self.name!r}; known: "
                       f"{', '.join(f.code for f in self.faults)}")


# -- loading ---------------------------------------------------------------------------

T = TypeVar("T")


def _checked(table: Table, build: Callable[[], T]) -> T:
    """Build a value from ``table``; a ValueError from its checks names the table."""
    try:
        value = build()
    except ValueError as exc:
        raise ProfileError(f"{table.source}: key '{table.prefix}': {exc}") from exc
    table.done()
    return value


def _module(m: Table) -> FirmwareModule:
    return _checked(m, lambda: FirmwareModule(
        name=m.str("module"), label=m.str("label"), version=m.str("version")))


def _identity(t: Table) -> IdentitySpec:
    modules = [_module(m) for m in t.tables("firmware")]
    return _checked(t, lambda: IdentitySpec(
        manufacturer=t.str("manufacturer"),
        model=t.str("model"),
        product_code=t.str("product_code"),
        sys_object_id=t.str("sys_object_id"),
        firmware=tuple(modules),
        options=t.str_list("options", ()),
        features=t.str_list("features", ()),
    ))


def _engine(t: Table) -> EngineSpec:
    return _checked(t, lambda: EngineSpec(
        ppm=t.int("ppm", min=1, max=MAX_PPM),
        color=t.bool("color"),
        trays=t.int("trays", min=1),
        boot_seconds=t.float("boot_seconds", 90.0, min=0),
        shutdown_seconds=t.float("shutdown_seconds", 5.0, min=0),
        service_response_days=t.int("service_response_days", 1, min=0),
        maintenance_response_days=t.int("maintenance_response_days", 5, min=0),
    ))


def _supply(t: Table, index: int) -> SupplySpec:
    def build() -> SupplySpec:
        rule = t.choice("rule", SUPPLY_RULES)
        capacity = t.int("capacity", min=1)
        life = t.int("life", capacity if rule == "coverage" else None, min=1)
        if life is None:
            raise t.error("life", f"is required for rule {rule!r}")
        return SupplySpec(
            index=index,
            name=t.str("name"),
            part_number=t.str("part_number", ""),
            type=t.choice("type", tuple(SUPPLY_TYPE_CODES)),
            colorant=t.choice("colorant", COLORANTS, ""),
            unit=t.choice("unit", tuple(SUPPLY_UNIT_CODES)),
            capacity=capacity,
            rule=rule,
            life=life,
            reference_coverage=t.float("reference_coverage", 0.05, min=0.001, max=1),
            low_percent=t.int("low_percent", 10, min=0, max=99),
            supply_class=t.int("class", 3),
            order_percent=t.int("order_percent", 40, min=0, max=99),
            hfsi=t.str("hfsi", ""),
            blocks=t.bool("blocks") if t.raw("blocks", None) is not None else None,
        )
    return _checked(t, build)


def _hfsi(t: Table) -> HfsiSpec:
    return _checked(t, lambda: HfsiSpec(
        id=t.str("id"), name=t.str("name"), life=t.int("life", min=1),
        rule=t.choice("rule", HFSI_RULES), per=t.int("per", 1, min=1),
        maximum=t.int("maximum", 999_999, min=1), share=t.float("share", 1.0, min=0, max=1)))


def _fault(t: Table) -> FaultSpec:
    return _checked(t, lambda: FaultSpec(
        code=t.str("code"), subsystem=t.str("subsystem"), description=t.str("description"),
        rate=t.float("rate", min=0, max=MAX_FAULT_RATE), per=t.choice("per", FAULT_RATE_UNITS),
        stops_machine=t.bool("stops_machine"), clears=t.choice("clears", FAULT_CLEARS),
        alert_code=t.int("alert_code", min=1), alert_group=t.int("alert_group"),
        parts=t.str_list("parts", ())))


def _nvm(t: Table) -> NvmSpec:
    return _checked(t, lambda: NvmSpec(
        id=t.str("id"), name=t.str("name"), default=t.int("default"),
        minimum=t.int("min"), maximum=t.int("max"), protected=t.bool("protected", False)))


def _job_sizes(t: Table) -> tuple[tuple[int, float], ...]:
    raw = t.raw("job_sizes")
    out = []
    if not isinstance(raw, list):
        raise t.error("job_sizes", f"expected a list of [pages, weight] pairs, got {raw!r}")
    for item in raw:
        ok = (isinstance(item, list) and len(item) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)
              and isinstance(item[0], int))
        if not ok:
            raise t.error("job_sizes", f"each entry must be [pages, weight], got {item!r}")
        out.append((int(item[0]), float(item[1])))
    return tuple(out)


def _floats(t: Table, key: str, default: tuple[float, ...], n: int) -> tuple[float, ...]:
    raw = t.raw(key, list(default))
    if (not isinstance(raw, list) or len(raw) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)):
        raise t.error(key, f"expected a list of {n} numbers, got {raw!r}")
    return tuple(float(v) for v in raw)


def _int_pair(t: Table, key: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = t.raw(key, list(default))
    if (not isinstance(raw, list) or len(raw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw)):
        raise t.error(key, f"expected [min, max] whole numbers, got {raw!r}")
    return raw[0], raw[1]


def _usage(t: Table) -> UsagePattern:
    def build() -> UsagePattern:
        mix_t = t.table("job_mix")
        mix = tuple(mix_t.float(k, 0.0, min=0) for k in JOB_KINDS)
        mix_t.done()
        hours = t.raw("office_hours", [8, 18])
        if (not isinstance(hours, list) or len(hours) != 2
                or not all(isinstance(h, int) and not isinstance(h, bool) for h in hours)):
            raise t.error("office_hours", f"expected [start_hour, end_hour], got {hours!r}")
        return UsagePattern(
            pages_per_day=t.float("pages_per_day", min=0, max=MAX_PAGES_PER_DAY),
            color_share=t.float("color_share", min=0, max=1),
            duplex_share=t.float("duplex_share", min=0, max=1),
            large_share=t.float("large_share", min=0, max=1),
            job_sizes=_job_sizes(t),
            job_mix=(mix[0], mix[1], mix[2], mix[3]),
            office_start_hour=hours[0],
            office_end_hour=hours[1],
            weekend_factor=t.float("weekend_factor", 0.05, min=0, max=1),
            day_to_day_cv=t.float("day_to_day_cv", 0.35, min=0, max=3),
            coverage=t.float("coverage", 0.05, min=0.001, max=1),
            timezone=t.str("timezone", "UTC"),
            users=t.int("users", 25, min=1),
            fax_sent_share=t.float("fax_sent_share", 0.1, min=0, max=1),
            volume_spread=t.float("volume_spread", 0.5, min=0, max=2),
            color_share_spread=t.float("color_share_spread", 0.1, min=0, max=0.49),
            coverage_spread=t.float("coverage_spread", 0.25, min=0, max=2),
            coverage_day_cv=t.float("coverage_day_cv", 0.3, min=0, max=2),
            month_end_factor=t.float("month_end_factor", 1.3, min=0.01, max=5),
            month_factors=_floats(t, "month_factors", (1.0,) * 12, 12),
            days_off_per_year=t.float("days_off_per_year", 3.0, min=0, max=100),
            power_cycles_per_month=t.float("power_cycles_per_month", 0.5, min=0, max=60),
            spare_share=t.float("spare_share", 0.35, min=0, max=1),
            spare_units=t.int("spare_units", 1, min=1, max=20),
            lead_time_days=_int_pair(t, "lead_time_days", (2, 5)),
            country=t.str("country", "") or None,
        )
    return _checked(t, build)


def read_profile(path: Path | str, *, name: str | None = None) -> Profile:
    """Read one profile file; every error names the file and the key."""
    p = Path(path)
    try:
        root = load_toml(p)
        profile_name = name or p.stem
        identity = _identity(root.table("identity"))
        engine = _engine(root.table("engine"))
        supplies = tuple(_supply(t, i + 1) for i, t in enumerate(root.tables("supplies")))
        hfsi = tuple(_hfsi(t) for t in root.tables("hfsi", []))
        faults = tuple(_fault(t) for t in root.tables("faults", []))
        nvm = tuple(_nvm(t) for t in root.tables("nvm", []))
        usage = _usage(root.table("usage"))
        web = root.table("web", None)
        admin_password = web.str("admin_password", None) if web is not None else None
        if web is not None:
            if admin_password is not None and not 4 <= len(admin_password) <= 128:
                raise web.error("admin_password", "must be 4-128 characters")
            web.done()
        mib_t, history_t = root.table("mib", None), root.table("history", None)
        mib = _checked(mib_t, lambda: read_mib(mib_t)) if mib_t else MibSpec()
        history = (_checked(history_t, lambda: read_history(history_t)) if history_t
                   else HistorySpec())
        profile = _checked(root, lambda: Profile(
            name=profile_name, source=str(p), identity=identity, engine=engine,
            supplies=supplies, hfsi=hfsi, faults=faults, nvm=nvm, usage=usage,
            admin_password=admin_password, mib=mib, history=history))
    except ConfigError as exc:
        raise ProfileError(str(exc)) from exc
    return profile


def available_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped in fixtures/devices."""
    return tuple(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))


_CACHE: dict[Path, tuple[float, Profile]] = {}


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a profile by name ("office-color", from fixtures/devices) or by file path.

    Loaded profiles are cached by path and modification time, so a fleet of ten
    thousand devices shares one Profile object per kind.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = Path(name_or_path)
    else:
        path = PROFILE_DIR / f"{text}.toml"
        if not path.exists():
            raise ProfileError(f"{path}: no such device profile {text!r}; available: "
                               f"{', '.join(available_profiles()) or 'none'}")
    path = path.resolve()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    profile = read_profile(path)
    _CACHE[path] = (mtime, profile)
    return profile
