"""The MIB view of one printer: system group, HOST-RESOURCES-MIB and Printer-MIB rows.

Sans-I/O: :func:`build_table` turns one :class:`MibInput` (frozen values read from the
model at request time) into an :class:`OidTable`. Nothing here is cached or stored,
so a value read over SNMP is never older than the request that reads it.

Index choices (RFC 3805 ties every Printer-MIB table to hrDeviceIndex): the printer is
hrDeviceIndex 1; there is one marker (prtMarkerIndex 1); supplies keep the profile's
prtMarkerSuppliesIndex; colorants are numbered in the order their first supply
appears; input trays are 1..engine.trays; one output bin; media path 1 is the simplex
path and 2 the duplex path when the engine has one; alert rows keep the model's
prtAlertIndex (it only grows and resolved alerts leave the table, as the MIB asks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from device_direct.model import Alert, Counters, Identity, NetworkInfo, PowerState, Supply
from emulator.snmp import printer_status as ps
from emulator.snmp.oid_table import (
    MibValue,
    Oid,
    OidTable,
    counter,
    gauge,
    integer,
    oid_value,
    parse_oid,
    text,
    ticks,
)

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
HOST_RESOURCES = (1, 3, 6, 1, 2, 1, 25)
PRINTER_MIB = (1, 3, 6, 1, 2, 1, 43)
IMAGING_COUNTERS = (1, 3, 6, 1, 4, 1, 2699, 1, 3, 1)  # PWG 5106.3 icMIBObjects
SYS_CONTACT = (*SYSTEM, 4, 0)
SYS_NAME = (*SYSTEM, 5, 0)
SYS_LOCATION = (*SYSTEM, 6, 0)
PRT_MARKER_LIFE_COUNT = (*PRINTER_MIB, 10, 2, 1, 4, 1, 1)
HR_DEVICE_PRINTER = (1, 3, 6, 1, 2, 1, 25, 3, 1, 5)
ZERO_DOT_ZERO = (0, 0)
HR_DEV = 1  # hrDeviceIndex of the printer

# IANA-PRINTER-MIB codes (the model keeps the names).
SUPPLY_TYPES = {"other": 1, "toner": 3, "wasteToner": 4, "opc": 9, "developer": 10,
                "fuser": 15, "cleanerUnit": 18, "transferUnit": 20, "tonerCartridge": 21,
                "staples": 32}
SUPPLY_UNITS = {"other": 1, "impressions": 7, "sheets": 8, "items": 18, "percent": 19}
_TENTHOUSANDTHS_OF_INCHES = 3
_A4 = (116929, 82677)  # feed, cross-feed in 1/10000 inch (297 x 210 mm)
_A3 = (165354, 116929)
_A5 = (82677, 58268)


@dataclass(frozen=True, slots=True)
class HardwareFacts:
    """What does not change while the device runs (from its profile)."""

    sys_object_id: str
    firmware_labels: tuple[tuple[str, str], ...]  # (module, sysDescr label)
    color: bool
    trays: int
    ppm: int
    duplex: bool
    a3: bool
    # Job kinds the device offers (the profile's job mix): print, copy, fax, scan.
    services: tuple[str, ...] = ("print", "copy", "fax", "scan")

    def __post_init__(self) -> None:
        parse_oid(self.sys_object_id)
        if not 1 <= self.trays <= 12 or self.ppm < 1:
            raise ValueError(f"trays must be 1..12 and ppm >= 1, got {self.trays}, {self.ppm}")

    @property
    def enterprise(self) -> int:
        """The vendor's private enterprise number (the arc after 1.3.6.1.4.1)."""
        return parse_oid(self.sys_object_id)[6]


@dataclass(frozen=True, slots=True)
class SystemText:
    """The writable system-group strings (sysContact, sysName, sysLocation)."""

    contact: str
    name: str
    location: str


@dataclass(frozen=True, slots=True)
class MibInput:
    """Everything :func:`build_table` reads, taken from the model at one instant."""

    now: datetime
    power: PowerState
    uptime_ticks: int
    identity: Identity
    network: NetworkInfo
    counters: Counters
    supplies: tuple[Supply, ...]
    alerts: tuple[Alert, ...]
    fault_count: int  # entries in the fault history (hrDeviceErrors)
    alert_events: int  # prtAlertAllEvents
    critical_events: int  # prtAlertCriticalEvents
    power_on_impressions: int  # prtMarkerPowerOnCount
    system: SystemText
    hardware: HardwareFacts

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        if min(self.uptime_ticks, self.fault_count, self.alert_events,
               self.critical_events, self.power_on_impressions) < 0:
            raise ValueError("uptime and counts must be >= 0")


def sys_descr(identity: Identity, hardware: HardwareFacts) -> str:
    """"<Model>; SS 100.002.057.09608, NC ..." (model, then firmware per module)."""
    parts = [f"{label} {identity.firmware[module]}"
             for module, label in hardware.firmware_labels if module in identity.firmware]
    return f"{identity.manufacturer} {identity.model}; {', '.join(parts)}"


def device_id_1284(identity: Identity, hardware: HardwareFacts) -> str:
    """The IEEE 1284 device id string printers publish."""
    return (f"MFG:{identity.manufacturer};CMD:PJL,PCL,POSTSCRIPT;MDL:{identity.model};"
            f"CLS:PRINTER;DES:{identity.manufacturer} {identity.model};"
            f"CID:{'COLOR' if hardware.color else 'MONO'};SN:{identity.serial};")


def date_and_time(now: datetime) -> bytes:
    """SNMPv2-TC DateAndTime, 11 octets, in UTC."""
    t = now.astimezone(UTC)
    return (t.year.to_bytes(2, "big")
            + bytes((t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 100_000))
            + b"+\x00\x00")


def vendor_device_id_oid(hardware: HardwareFacts) -> Oid:
    """Where the 1284 device id lives under the vendor's enterprise arc."""
    return (1, 3, 6, 1, 4, 1, hardware.enterprise, 1, 1, 1, 0)


def colorants(supplies: tuple[Supply, ...]) -> tuple[str, ...]:
    """Colorant names in the order of their first supply (prtMarkerColorantIndex order)."""
    seen: list[str] = []
    for s in supplies:
        if s.colorant and s.colorant not in seen:
            seen.append(s.colorant)
    return tuple(seen)


def build_table(m: MibInput) -> OidTable:
    """All instances the agent serves for ``m``, sorted (see module doc)."""
    rows: list[tuple[Oid, MibValue]] = []
    add = rows.append
    status = ps.printer_status(m.power, m.alerts)
    hw = m.hardware
    ident = m.identity

    # -- SNMPv2-MIB system group ---------------------------------------------------------
    add(((*SYSTEM, 1, 0), text(sys_descr(ident, hw))))
    add(((*SYSTEM, 2, 0), oid_value(hw.sys_object_id)))
    add(((*SYSTEM, 3, 0), ticks(m.uptime_ticks)))
    add((SYS_CONTACT, text(m.system.contact)))
    add((SYS_NAME, text(m.system.name)))
    add((SYS_LOCATION, text(m.system.location)))
    add(((*SYSTEM, 7, 0), integer(72)))  # sysServices: applications + end-to-end

    # -- HOST-RESOURCES-MIB ----------------------------------------------------------------
    hr = HOST_RESOURCES
    add(((*hr, 1, 1, 0), ticks(m.uptime_ticks)))
    add(((*hr, 1, 2, 0), text(date_and_time(m.now))))
    add(((*hr, 1, 3, 0), integer(HR_DEV)))  # hrSystemInitialLoadDevice
    add(((*hr, 1, 4, 0), text("")))  # hrSystemInitialLoadParameters
    add(((*hr, 1, 5, 0), gauge(0)))  # hrSystemNumUsers
    add(((*hr, 1, 6, 0), gauge(1)))  # hrSystemProcesses
    add(((*hr, 1, 7, 0), integer(0)))  # hrSystemMaxProcesses
    add(((*hr, 2, 2, 0), integer(2_097_152)))  # hrMemorySize, KBytes
    dev = (*hr, 3, 2, 1)
    add(((*dev, 1, HR_DEV), integer(HR_DEV)))
    add(((*dev, 2, HR_DEV), oid_value(HR_DEVICE_PRINTER)))
    add(((*dev, 3, HR_DEV), text(f"{ident.manufacturer} {ident.model}")))
    add(((*dev, 4, HR_DEV), oid_value(ZERO_DOT_ZERO)))
    add(((*dev, 5, HR_DEV), integer(status.device)))
    add(((*dev, 6, HR_DEV), counter(m.fault_count)))
    prn = (*hr, 3, 5, 1)
    add(((*prn, 1, HR_DEV), integer(status.printer)))
    add(((*prn, 2, HR_DEV), text(status.error_state)))

    # -- Printer-MIB -------------------------------------------------------------------------
    _general(m, add)
    _covers(m, add)
    _inputs(m, add)
    _outputs(m, add)
    _marker(m, status, add)
    _supplies(m, add)
    _media_paths(m, add)
    _interpreters(m, add)
    _console(status, add)
    _alerts(m, add)
    _imaging_counters(m, add)
    add((vendor_device_id_oid(hw), text(device_id_1284(ident, hw))))
    return OidTable(rows)


_Adder = Callable[[tuple[Oid, MibValue]], None]


def _general(m: MibInput, add: _Adder) -> None:
    g = (*PRINTER_MIB, 5, 1, 1)
    for col, value in (
        (1, counter(0)),  # prtGeneralConfigChanges
        (2, integer(1)),  # prtGeneralCurrentLocalization
        (3, integer(3)),  # prtGeneralReset: notResetting
        (4, text("")),  # prtGeneralCurrentOperator
        (5, text("")),  # prtGeneralServicePerson
        (6, integer(1)),  # prtInputDefaultIndex
        (7, integer(1)),  # prtOutputDefaultIndex
        (8, integer(1)),  # prtMarkerDefaultIndex
        (9, integer(1)),  # prtMediaPathDefaultIndex
        (10, integer(1)),  # prtConsoleLocalization
        (11, integer(1)),  # prtConsoleNumberOfDisplayLines
        (12, integer(40)),  # prtConsoleNumberOfDisplayChars
        (13, integer(3)),  # prtConsoleDisable: enabled
        (16, text(m.identity.model)),  # prtGeneralPrinterName
        (17, text(m.identity.serial)),  # prtGeneralSerialNumber
        (18, counter(m.critical_events)),  # prtAlertCriticalEvents
        (19, counter(m.alert_events)),  # prtAlertAllEvents
    ):
        add(((*g, col, HR_DEV), value))


def _in_group(alerts: tuple[Alert, ...], group: int, index: int) -> list[Alert]:
    return [a for a in alerts if a.group == group and a.group_index == index]


def _covers(m: MibInput, add: _Adder) -> None:
    c = (*PRINTER_MIB, 6, 1, 1)
    open_now = any(a.code in (3, 501) for a in m.alerts)
    add(((*c, 2, HR_DEV, 1), text("Front Cover")))
    add(((*c, 3, HR_DEV, 1), integer(3 if open_now else 4)))  # coverOpen / coverClosed


def _inputs(m: MibInput, add: _Adder) -> None:
    t = (*PRINTER_MIB, 8, 2, 1)
    avail = ps.AVAILABLE_STANDBY if m.power is PowerState.SLEEPING else ps.AVAILABLE_IDLE
    for tray in range(1, m.hardware.trays + 1):
        mine = _in_group(m.alerts, 8, tray)
        empty = any(a.code == 808 for a in mine)
        size = _A3 if (m.hardware.a3 and tray == 2) else _A4
        for col, value in (
            (2, integer(4)),  # prtInputType: sheetFeedAutoNonRemovableTray
            (3, integer(_TENTHOUSANDTHS_OF_INCHES)),
            (4, integer(size[0])),
            (5, integer(size[1])),
            (6, integer(size[0])),
            (7, integer(size[1])),
            (8, integer(8)),  # prtInputCapacityUnit: sheets
            (9, integer(520)),
            (10, integer(0 if empty else -3)),  # -3: some remains
            (11, integer(ps.subunit_status(avail, mine))),
            (12, text("iso-a3" if size == _A3 else "iso-a4")),
            (13, text(f"Tray {tray}")),
            (18, text(f"Tray {tray}")),
        ):
            add(((*t, col, HR_DEV, tray), value))


def _outputs(m: MibInput, add: _Adder) -> None:
    o = (*PRINTER_MIB, 9, 2, 1)
    mine = _in_group(m.alerts, 9, 1)
    for col, value in (
        (2, integer(4)),  # prtOutputType: unRemovableBin
        (3, integer(8)),  # sheets
        (4, integer(500)),
        (5, integer(-3)),
        (6, integer(ps.subunit_status(ps.AVAILABLE_IDLE, mine))),
        (7, text("Center Output Tray")),
    ):
        add(((*o, col, HR_DEV, 1), value))


def _marker(m: MibInput, status: ps.PrinterStatus, add: _Adder) -> None:
    k = (*PRINTER_MIB, 10, 2, 1)
    for col, value in (
        (2, integer(4)),  # prtMarkerMarkTech: electrophotographicLaser
        (3, integer(7)),  # prtMarkerCounterUnit: impressions
        (4, counter(m.counters.total_impressions)),  # prtMarkerLifeCount
        (5, counter(m.power_on_impressions)),  # prtMarkerPowerOnCount
        (6, integer(4 if m.hardware.color else 1)),  # prtMarkerProcessColorants
        (7, integer(0)),  # prtMarkerSpotColorants
        (8, integer(_TENTHOUSANDTHS_OF_INCHES)),
        (9, integer(600)),
        (10, integer(600)),
        (11, integer(1968)),  # margins: 5 mm
        (12, integer(1968)),
        (13, integer(1968)),
        (14, integer(1968)),
        (15, integer(status.marker_status)),
    ):
        add(((*k, col, HR_DEV, 1), value))


def _supplies(m: MibInput, add: _Adder) -> None:
    s = (*PRINTER_MIB, 11, 1, 1)
    names = colorants(m.supplies)
    for sup in m.supplies:
        description = sup.name
        if sup.part_number:
            description += f", PN {sup.part_number}"
        if sup.serial:
            description += f";SN{sup.serial}"
        colorant = names.index(sup.colorant) + 1 if sup.colorant else 0
        for col, value in (
            (2, integer(1)),
            (3, integer(colorant)),
            (4, integer(sup.supply_class)),
            (5, integer(SUPPLY_TYPES.get(sup.type, 1))),
            (6, text(description)),
            (7, integer(SUPPLY_UNITS.get(sup.unit, 1))),
            (8, integer(sup.capacity)),
            (9, integer(sup.level)),
        ):
            add(((*s, col, HR_DEV, sup.index), value))
    c = (*PRINTER_MIB, 12, 1, 1)
    for i, name in enumerate(names, start=1):
        for col, value in ((2, integer(1)), (3, integer(3)), (4, text(name)), (5, integer(256))):
            add(((*c, col, HR_DEV, i), value))  # marker, role process(3), value, tonality


def _media_paths(m: MibInput, add: _Adder) -> None:
    p = (*PRINTER_MIB, 13, 4, 1)
    big = _A3 if m.hardware.a3 else _A4
    paths = [(5, "Simplex path")]  # prtMediaPathType simplex(5)
    if m.hardware.duplex:
        paths.append((3, "Duplex path"))  # longEdgeBindingDuplex(3)
    for index, (kind, name) in enumerate(paths, start=1):
        mine = _in_group(m.alerts, 13, index)
        for col, value in (
            (2, integer(7)),  # prtMediaPathMaxSpeedPrintUnit: impressionsPerHour
            (3, integer(_TENTHOUSANDTHS_OF_INCHES)),
            (4, integer(m.hardware.ppm * 60)),
            (5, integer(big[0])),
            (6, integer(big[1])),
            (7, integer(_A5[0])),
            (8, integer(_A5[1])),
            (9, integer(kind)),
            (10, text(name)),
            (11, integer(ps.subunit_status(ps.AVAILABLE_IDLE, mine))),
        ):
            add(((*p, col, HR_DEV, index), value))


_INTERPRETERS = ((5, "PJL", "PJL"), (3, "PCL", "PCL 6"), (6, "PostScript", "PostScript 3"))


def _interpreters(m: MibInput, add: _Adder) -> None:
    t = (*PRINTER_MIB, 15, 1, 1)
    version = m.identity.firmware.get("system", "")
    for i, (family, level, description) in enumerate(_INTERPRETERS, start=1):
        for col, value in ((2, integer(family)), (3, text(level)), (4, text(version)),
                           (5, text(description))):
            add(((*t, col, HR_DEV, i), value))


def _console(status: ps.PrinterStatus, add: _Adder) -> None:
    add(((*PRINTER_MIB, 16, 5, 1, 2, HR_DEV, 1), text(status.display[:40])))


def _alerts(m: MibInput, add: _Adder) -> None:
    a = (*PRINTER_MIB, 18, 1, 1)
    for alert in m.alerts:
        for col, value in (
            (2, integer(alert.severity.value)),
            (3, integer(alert.training_level)),
            (4, integer(alert.group)),
            (5, integer(alert.group_index)),
            (6, integer(alert.location)),
            (7, integer(alert.code)),
            (8, text(alert.description)),
            (9, ticks(alert.uptime_ticks)),
        ):
            add(((*a, col, HR_DEV, alert.index), value))


# -- PWG-IMAGING-COUNTER-MIB (PWG 5106.3) ----------------------------------------------------

# IcServiceTypeTC values, and the icKeyIndex each service gets here (1 is the totals).
_IC_SERVICES: tuple[tuple[int, str, int], ...] = (
    (1, "systemTotals", 3),
    (2, "print", 11),
    (3, "copy", 4),
    (4, "fax", 7),  # faxIn: received faxes are printed
    (5, "scan", 12),
)
_IC_WORK_TOTALS = 3  # IcWorkTypeTC workTotals
_IC_LIFETIME = 3  # IcPersistenceTC lifetime
_IC_MAX = 2_147_483_647  # IcCounter32 is Integer32 (0..2^31-1)


def _ic(v: int) -> MibValue:
    return integer(min(max(v, 0), _IC_MAX))


def _imaging_counters(m: MibInput, add: _Adder) -> None:
    """icKeyTable, icServiceTable and lifetime work totals per service.

    The model keeps black/color and sheets for the whole device and impressions per
    job kind, so the totals row has monochrome/full-color impressions and sheets and
    the service rows have their total impressions (scan: images). Columns the model
    has no value for are not instantiated.
    """
    ic, c = IMAGING_COUNTERS, m.counters
    per_service = {"print": c.print_impressions, "copy": c.copy_impressions,
                   "fax": c.fax_impressions}
    state = 7 if m.power in (PowerState.OFF, PowerState.FAULTED) else (
        4 if m.power is PowerState.PRINTING else 3)  # down / processing / idle
    services = [row for row in _IC_SERVICES
                if row[1] == "systemTotals" or row[1] in m.hardware.services]
    add(((*ic, 1, 2, 0), _ic(len(services))))  # icGeneralTotalServiceRecords
    for key, name, service_type in services:
        add(((*ic, 2, 1, 1, 2, key), integer(service_type)))  # icKeyServiceType
        add(((*ic, 2, 1, 1, 3, key), integer(1)))  # icKeyServiceIndex
        svc = (*ic, 3, 1, 1)
        add(((*svc, 3, service_type, 1), integer(key)))  # icServiceKey
        add(((*svc, 4, service_type, 1), text(name)))  # icServiceInfo
        add(((*svc, 6, service_type, 1), integer(state)))  # icServiceState
        row = (key, _IC_WORK_TOTALS, _IC_LIFETIME)
        imp = (*ic, 8, 1, 1)  # icImpressionTable
        if name == "systemTotals":
            add(((*imp, 4, *row), _ic(c.total_impressions)))
            add(((*imp, 5, *row), _ic(c.black_impressions)))
            add(((*imp, 7, *row), _ic(c.color_impressions)))
            add(((*ic, 10, 1, 1, 4, *row), _ic(c.sheets)))  # icSheetTotalSheets
        elif name == "scan":
            add(((*ic, 7, 1, 1, 4, *row), _ic(c.scan_images)))  # icImageTotalImages
        else:
            add(((*imp, 4, *row), _ic(per_service[name])))
