"""Frozen views of a :class:`DeviceState`, built only when someone reads them.

The hot path keeps ints; this module turns them into ``device_direct.model`` values
(Counters, Supply, Alert, ...) with names and descriptions from the profile. Synthetic
personal data of the job log (user, job name, e-mail) is derived from small numbers
drawn by the seeded RNG, so it costs no memory per job and replays exactly.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar, cast

from device_direct.model import (
    Alert,
    Counters,
    Fault,
    FirmwareBank,
    FirmwareState,
    HfsiItem,
    JobKind,
    JobRecord,
    NvmSetting,
    Property,
    Severity,
    Supply,
)
from emulator.model.plan import Plan
from emulator.model.state import (
    FAULT_FIELDS,
    JOB_FIELDS,
    JOB_KIND_CODES,
    LOW,
    OK,
    REPL_FIELDS,
    REPL_SUPPLY,
    SRC_DOOR,
    SRC_HFSI,
    SRC_SUPPLY,
    DeviceState,
)

T = TypeVar("T")
BANK_NAMES = ("A", "B")
_FIRST = ("Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
          "Kemal", "Lena", "Mateo", "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tara")
_LAST = ("Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat",
         "Ivanova", "Jansen", "Keller", "Lopez", "Moreau", "Novak", "Okafor", "Petrov")
_TITLES = ("Quarterly report", "Invoice", "Meeting minutes", "Contract draft", "Price list",
           "Travel expenses", "Project plan", "Delivery note", "Board slides", "Payslip")
_EXT = (".pdf", ".docx", ".xlsx", ".pptx", ".txt")
_KINDS = {k.value: k for k in JobKind}


@dataclass(frozen=True, slots=True)
class Replacement:
    """One unit swapped or part replaced, as the device logged it."""

    kind: str  # supply | part
    name: str  # the supply's name, or the HFSI id
    index: int  # supply index (1-based) or HFSI position (0-based)
    at: datetime
    total_impressions: int  # the billing meter at the swap
    old_unit_count: int  # impressions of the old unit, or the part's HFSI count
    ordered_at: datetime | None  # the order that brought the new unit (None: none)
    due: date | None  # the local day that order was due

    def __post_init__(self) -> None:
        if self.kind not in ("supply", "part"):
            raise ValueError(f"kind must be supply or part, got {self.kind!r}")
        if self.total_impressions < 0 or self.old_unit_count < 0:
            raise ValueError("counts must be >= 0")


def when(t: int) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


# The views below build every record each day (a snapshot a device-day). They call the
# frozen dataclasses' constructors with positional arguments, in field order (a comment
# names the fields): CPython takes that at about half the cost of keywords (0.8 against
# 1.8 us for a JobRecord). tests/emulator/model/test_snapshot_views.py checks each
# field against its source; bench/payload_build.py that the payloads' bytes stay the same.
_fromtimestamp = datetime.fromtimestamp


@functools.lru_cache(maxsize=1024)  # a profile has tens of users; shared by all devices
def synthetic_user(n: int) -> tuple[str, str]:
    """(login, e-mail) of synthetic user number ``n``."""
    first = _FIRST[n % len(_FIRST)]
    last = _LAST[(n * 7 + n // len(_FIRST)) % len(_LAST)]
    return f"{first[0]}{last}".lower(), f"{first}.{last}@example.com".lower()


def synthetic_job_name(job_no: int) -> str:
    return f"{_TITLES[job_no % len(_TITLES)]} {job_no}{_EXT[(job_no // 3) % len(_EXT)]}"


def counters(st: DeviceState) -> Counters:
    return Counters(
        black_impressions=st.black,
        color_impressions=st.color,
        total_impressions=st.black + st.color,
        black_large_impressions=st.black_large,
        color_large_impressions=st.color_large,
        total_large_impressions=st.black_large + st.color_large,
        sheets=st.sheets,
        duplex_sheets=st.duplex_sheets,
        print_impressions=st.print_imps,
        copy_impressions=st.copy_imps,
        fax_impressions=st.fax_imps,
        report_impressions=st.report_imps,
        scan_images=st.scan_images,
        fax_sent_images=st.fax_sent,
    )


def supplies(st: DeviceState, plan: Plan, serial: str) -> tuple[Supply, ...]:
    out = []
    units = st.supply_units
    if units is None:
        units = st.supply_units = [None] * len(plan.profile.supplies)
    for i, spec in enumerate(plan.profile.supplies):
        status = st.sup_status[i]
        receptacle = spec.supply_class == 4
        if status == OK:
            text = "ok"
        elif status == LOW:
            text = "near-full" if receptacle else "low"
        else:
            text = "full" if receptacle else "empty"
        # The unit in place: its serial and install time change only with the unit.
        unit = units[i]
        if (unit is None or unit[0] != st.sup_repl[i] or unit[1] != st.sup_installed[i]
                or unit[4] != serial):
            repl, installed = st.sup_repl[i], st.sup_installed[i]
            unit = units[i] = (repl, installed,
                               f"{zlib.crc32(f'{serial}:{i}:{repl}'.encode()):08X}",
                               _fromtimestamp(installed, UTC), serial)
        # index, name, type, unit, capacity, level, colorant, supply_class, status,
        # serial, part_number, lifetime_impressions, installed_at
        out.append(Supply(
            spec.index, spec.name, spec.type, spec.unit, spec.capacity,
            st.supply_level(plan, i), spec.colorant, spec.supply_class, text, unit[2],
            spec.part_number, st.sup_imps[i], unit[3]))
    return tuple(out)


def alerts(st: DeviceState, plan: Plan) -> tuple[Alert, ...]:
    out = []
    for index, source, src_i, code, severity, group, group_index, t, ticks in st.alerts:
        if source == SRC_SUPPLY:
            spec = plan.profile.supplies[src_i]
            word = {1104: "low", 1101: "empty", 1107: "nearly full", 1109: "full",
                    1111: "near end of life", 1112: "at end of life",
                    10: "near end of life", 11: "at end of life"}.get(code, "needs attention")
            text = f"{spec.name} {word}"
        elif source == SRC_HFSI:
            h = plan.profile.hfsi[src_i]
            text = f"{h.id} {h.name}: preventive maintenance overdue"
        elif source == SRC_DOOR:
            text = "Front door open"
        else:
            f = plan.profile.faults[src_i]
            text = f"{f.code} {f.description}"
        # index, severity, code, group, group_index, location, description, raised_at,
        # uptime_ticks
        out.append(Alert(index, Severity(severity), code, group, group_index, 0, text,
                         _fromtimestamp(t, UTC), ticks))
    return tuple(out)


def faults(st: DeviceState, plan: Plan) -> tuple[Fault, ...]:
    log = st.fault_log
    out = []
    for k in range(0, len(log), FAULT_FIELDS):
        spec = plan.profile.faults[log[k]]
        # code, subsystem, description, at, impressions, stops_machine
        out.append(Fault(spec.code, spec.subsystem, spec.description,
                         _fromtimestamp(log[k + 1], UTC), log[k + 2], spec.stops_machine))
    return tuple(out)


def hfsi(st: DeviceState, plan: Plan) -> tuple[HfsiItem, ...]:
    # id, name, count, life, maximum, rule, replacements, last_replaced_at
    return tuple(
        HfsiItem(h.id, h.name, st.hfsi_count(plan, i), h.life, h.maximum, h.rule,
                 st.hfsi_repl[i],
                 _fromtimestamp(st.hfsi_repl_at[i], UTC) if st.hfsi_repl_at[i] >= 0 else None)
        for i, h in enumerate(plan.profile.hfsi)
    )


_MADE_ONCE: tuple[object, object] = (object(), None)  # made, not kept (equal to nothing)


def kept_view(st: DeviceState, view: str, made_from: object, make: Callable[[], T]) -> T:
    """``make()``, or the object the last snapshot made for ``view`` if ``made_from``
    (what the view is made of) is equal to what it was then.

    The views are frozen values, so an equal one may as well be the same object: a
    consumer comparing two snapshots (the agent's payload cache) then finds it unchanged
    by identity, and nothing is built for it. ``made_from`` is compared with ``==`` and
    kept as given: pass a copy of anything that changes in place. A view is kept from
    its second making on: a device that is asked for one snapshot (a one-day fleet's)
    keeps none (about 2.2 KB a device)."""
    views = st.kept_views
    if views is None:
        views = st.kept_views = {}
    last = views.get(view)
    if last is not None and last[0] == made_from:
        return cast(T, last[1])
    value = make()
    views[view] = (made_from, value) if last is not None else _MADE_ONCE
    return value


def nvm(st: DeviceState, plan: Plan) -> tuple[NvmSetting, ...]:
    values = st.nvm

    def make() -> tuple[NvmSetting, ...]:
        # id, name, value, default, minimum, maximum, protected
        return tuple(
            NvmSetting(n.id, n.name, values.get(n.id, n.default), n.default, n.minimum,
                       n.maximum, n.protected)
            for n in plan.profile.nvm
        )

    return kept_view(st, "nvm", (plan, dict(values)), make)  # a copy: set_nvm changes it


def firmware(st: DeviceState) -> FirmwareState:
    versions, sha = st.bank_versions, st.bank_sha

    def make() -> FirmwareState:
        banks = (FirmwareBank("A", versions[0], sha[0]), FirmwareBank("B", versions[1], sha[1]))
        return FirmwareState(active=BANK_NAMES[st.active_bank], banks=banks, trial=st.trial)

    return kept_view(st, "firmware",
                     (st.active_bank, versions[0], versions[1], sha[0], sha[1], st.trial), make)


def firmware_modules(st: DeviceState, plan: Plan) -> dict[str, str]:
    """Module -> version; the system module is whatever the running bank holds."""
    modules = {m.name: m.version for m in plan.profile.identity.firmware}
    first = plan.profile.identity.firmware[0].name
    modules[first] = st.bank_versions[st.active_bank]
    return modules


def jobs(st: DeviceState) -> tuple[JobRecord, ...]:
    """The job log, newest first. A logged job never changes: the records made for the
    last snapshot (``st.job_records``) are used again; only new jobs get new ones."""
    log = st.job_log
    out = []
    kinds = _KINDS
    texts = st.job_text
    made, kept = st.job_records or {}, {}
    for k in range(0, len(log), JOB_FIELDS):
        job_no = log[k + JOB_FIELDS - 1]
        record = made.get(job_no)
        if record is None:
            kind, t, pages, imps, user, _ = log[k:k + JOB_FIELDS]
            login, email = synthetic_user(user)
            name = synthetic_job_name(job_no)
            given = texts.get(job_no)
            if given is not None:
                login, name, email = (g or d for g, d in zip(given, (login, name, email),
                                                              strict=True))
            # kind, at, pages, impressions, user, job_name, email
            record = JobRecord(kinds[JOB_KIND_CODES[kind]], _fromtimestamp(t, UTC), pages,
                               imps, login, name, email)
        kept[job_no] = record
        out.append(record)
    st.job_records = kept
    return tuple(out)


def replacements(st: DeviceState, plan: Plan) -> tuple[Replacement, ...]:
    """The replacement log, newest first."""
    log = st.repl_log
    out = []
    for k in range(0, len(log), REPL_FIELDS):
        kind, i, t, total, old, order_at, due = log[k:k + REPL_FIELDS]
        supply = kind == REPL_SUPPLY
        out.append(Replacement(
            kind="supply" if supply else "part",
            name=plan.profile.supplies[i].name if supply else plan.profile.hfsi[i].id,
            index=i + 1 if supply else i,
            at=when(t), total_impressions=total, old_unit_count=old,
            ordered_at=when(order_at) if order_at else None,
            due=date.fromordinal(due) if due else None))
    return tuple(out)


def properties(st: DeviceState, plan: Plan) -> tuple[Property, ...]:
    p = plan.profile

    def make() -> tuple[Property, ...]:
        items = [
            ("sys-object-id", p.identity.sys_object_id),
            ("product-code", p.identity.product_code),
            ("engine-speed-ppm", str(p.engine.ppm)),
            ("color-capable", "yes" if p.engine.color else "no"),
            ("paper-trays", str(p.engine.trays)),
            ("features", ", ".join(p.identity.features)),
            ("installed-options", ", ".join(p.identity.options)),
            ("power-on-count", str(st.power_on_count)),
            ("device-profile", p.name),
        ]
        return tuple(Property(n, v) for n, v in items)

    return kept_view(st, "properties", (plan, st.power_on_count), make)


def install_date(st: DeviceState) -> date:
    return when(st.install_epoch).date()
