"""The MIB view of one printer: every row the agent serves, from one :class:`MibInput`.

Sans-I/O: :func:`build_table` turns one :class:`MibInput` (frozen values read from the
model at one instant) into an :class:`OidTable`: the system, snmp, engine, interface
and IP rows (:mod:`emulator.snmp.system_mibs`), HOST-RESOURCES-MIB, the Printer-MIB
(RFC 3805) and the vendor and PWG objects (:mod:`emulator.snmp.vendor_mib`). The agent
keeps the table as a snapshot until the model changes; the few values that move on
every request are read live (:data:`emulator.snmp.system_mibs.LIVE`).

Where the Printer-MIB's rows come from: trays, bins and languages from the profile's
equipment (:mod:`emulator.model.equipment`, the same list PJL INFO CONFIG shows), the
display text and lights from the panel (:mod:`emulator.model.console`, the same text
PJL INFO STATUS shows), alerts from the model (the same rows the payload carries).

Index choices (RFC 3805 ties every Printer-MIB table to hrDeviceIndex): the printer is
hrDeviceIndex 1; there is one marker (prtMarkerIndex 1); supplies keep the profile's
prtMarkerSuppliesIndex; colorants are numbered in the order their first supply
appears; input trays and output bins are numbered in the equipment's order; media
path 1 is the simplex path and 2 the duplex path when the engine has one; alert rows
keep the model's prtAlertIndex (it only grows and resolved alerts leave the table, as the MIB asks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from device_direct.model import Alert, Counters, Identity, NetworkInfo, PowerState, Supply
from emulator.model.console import DISPLAY_LINES, MAX_CHARS
from emulator.model.equipment import LANGUAGE_FAMILIES, Equipment, TraySpec
from emulator.snmp import printer_status as ps
from emulator.snmp import system_mibs as sm
from emulator.snmp import vendor_mib as vm
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

SYSTEM = sm.SYSTEM
HOST_RESOURCES = (1, 3, 6, 1, 2, 1, 25)
PRINTER_MIB = (1, 3, 6, 1, 2, 1, 43)
IMAGING_COUNTERS = vm.IMAGING_COUNTERS
SYS_CONTACT = sm.SYS_CONTACT
SYS_NAME = sm.SYS_NAME
SYS_LOCATION = sm.SYS_LOCATION
HR_SYSTEM_DATE = (*HOST_RESOURCES, 1, 2, 0)
HR_SYSTEM_UPTIME = (*HOST_RESOURCES, 1, 1, 0)
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
_UTF8 = 106  # IANACharset utf-8
_PRESENT_OFF = 4  # PresentOnOff off (no security feature on the tray or bin)
_PORTRAIT = 3  # PrtPrintOrientationTC
_YES, _NO = 3, 4  # PrtInterpreterTwoWayTC
_CH_LPD, _CH_PORT9100 = 8, 11  # PrtChannelTypeTC
_CH_PRINT_DATA_ACCEPTED = 3  # PrtChannelStateTC
_GREEN, _ORANGE = 5, 10  # PrtConsoleColorTC


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
    equipment: Equipment
    engine: sm.EngineFacts
    ready_message: str = ""  # PJL RDYMSG (the panel's, emulator.model.console)
    operator_message: str = ""  # PJL OPMSG: shown, and the printer is off line

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        if min(self.uptime_ticks, self.fault_count, self.alert_events,
               self.critical_events, self.power_on_impressions) < 0:
            raise ValueError("uptime and counts must be >= 0")


def sys_descr(identity: Identity, hardware: HardwareFacts, name: str = "") -> str:
    """"<Model>; SS 100.002.057.09608, NC ..." (model, then firmware per module).

    ``name`` is the model part as the vendor writes it (the profile's
    ``[mib] sys_descr``); by default manufacturer and model."""
    parts = [f"{label} {identity.firmware[module]}"
             for module, label in hardware.firmware_labels if module in identity.firmware]
    return f"{name or f'{identity.manufacturer} {identity.model}'}; {', '.join(parts)}"


def date_and_time(now: datetime) -> bytes:
    """SNMPv2-TC DateAndTime, 11 octets, in UTC."""
    t = now.astimezone(UTC)
    return (t.year.to_bytes(2, "big")
            + bytes((t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 100_000))
            + b"+\x00\x00")


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
    status = ps.printer_status(m.power, m.alerts, ready_message=m.ready_message,
                               operator_message=m.operator_message)
    hw, ident, mib = m.hardware, m.identity, m.equipment.mib

    sm.system_group(add, descr=sys_descr(ident, hw, mib.sys_descr),
                    object_id=hw.sys_object_id, contact=m.system.contact,
                    name=m.system.name, location=m.system.location)
    sm.interfaces(add, m.network, speed_mbps=mib.if_speed_mbps,
                  up=m.power is not PowerState.OFF)
    sm.snmp_group(add, m.engine)

    # -- HOST-RESOURCES-MIB ----------------------------------------------------------------
    hr = HOST_RESOURCES
    add((HR_SYSTEM_UPTIME, ticks(m.uptime_ticks)))
    add((HR_SYSTEM_DATE, text(date_and_time(m.now))))
    add(((*hr, 1, 3, 0), integer(HR_DEV)))  # hrSystemInitialLoadDevice
    add(((*hr, 1, 4, 0), text("")))  # hrSystemInitialLoadParameters
    add(((*hr, 1, 5, 0), gauge(0)))  # hrSystemNumUsers
    add(((*hr, 1, 6, 0), gauge(1)))  # hrSystemProcesses
    add(((*hr, 1, 7, 0), integer(0)))  # hrSystemMaxProcesses
    add(((*hr, 2, 2, 0), integer(mib.memory_kb)))  # hrMemorySize, KBytes
    _storage(m, add)
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
    _localization(m, add)
    _covers(m, add)
    _inputs(m, add)
    _outputs(m, add)
    _marker(m, status, add)
    _supplies(m, add)
    _media_paths(m, add)
    _channels(m, status, add)
    _interpreters(m, add)
    _console(status, add)
    _lights(m, status, add)
    _alerts(m, add)
    vm.imaging_counters(add, counters=m.counters, power=m.power, services=hw.services)
    vm.vendor_objects(add, identity=ident, mib=mib, color=hw.color,
                      enterprise=hw.enterprise, counters=m.counters)
    return OidTable(rows)


_Adder = Callable[[tuple[Oid, MibValue]], None]

HR_STORAGE_RAM = (*HOST_RESOURCES, 2, 1, 2)
HR_STORAGE_FIXED_DISK = (*HOST_RESOURCES, 2, 1, 4)
_HDD_OPTION = re.compile(r"^HDD-(\d+)(GB|TB)$")  # the profile's installed option
_RAM_RESIDENT_KB = 262_144  # the firmware's resident share of RAM (256 MiB)
_DISK_SYSTEM_BYTES = 12 * 10**9  # firmware image, fonts, forms and the spool area
_DISK_UNIT = 4096  # hrStorageAllocationUnits of the disk (bytes)


def disk_bytes(options: tuple[str, ...]) -> int | None:
    """Size of the hard disk an ``HDD-320GB`` option installs (decimal units), or None."""
    for option in options:
        m = _HDD_OPTION.match(option)
        if m:
            return int(m.group(1)) * (10**9 if m.group(2) == "GB" else 10**12)
    return None


def _storage(m: MibInput, add: _Adder) -> None:
    """hrStorageTable: RAM (hrMemorySize) and, with the HDD option, the fixed disk."""
    entry = (*HOST_RESOURCES, 2, 3, 1)
    ram_kb = m.equipment.mib.memory_kb
    rows = [(HR_STORAGE_RAM, "RAM", 1024, ram_kb, min(ram_kb, _RAM_RESIDENT_KB))]
    disk = disk_bytes(m.identity.installed_options)
    if disk is not None:
        rows.append((HR_STORAGE_FIXED_DISK, "Hard Disk", _DISK_UNIT, disk // _DISK_UNIT,
                     min(disk, _DISK_SYSTEM_BYTES) // _DISK_UNIT))
    for index, (kind, descr, unit, size, used) in enumerate(rows, start=1):
        for col, value in ((1, integer(index)), (2, oid_value(kind)), (3, text(descr)),
                           (4, integer(unit)), (5, integer(min(size, 2**31 - 1))),
                           (6, integer(used)), (7, counter(0))):
            add(((*entry, col, index), value))


def _general(m: MibInput, add: _Adder) -> None:
    g = (*PRINTER_MIB, 5, 1, 1)
    for col, value in (
        (1, counter(0)),  # prtGeneralConfigChanges
        (2, integer(1)),  # prtGeneralCurrentLocalization: prtLocalizationIndex 1
        (3, integer(3)),  # prtGeneralReset: notResetting
        (4, text("")),  # prtGeneralCurrentOperator
        (5, text("")),  # prtGeneralServicePerson
        (6, integer(1)),  # prtInputDefaultIndex
        (7, integer(1)),  # prtOutputDefaultIndex
        (8, integer(1)),  # prtMarkerDefaultIndex
        (9, integer(1)),  # prtMediaPathDefaultIndex
        (10, integer(1)),  # prtConsoleLocalization: prtLocalizationIndex 1
        (11, integer(DISPLAY_LINES)),  # prtConsoleNumberOfDisplayLines
        (12, integer(MAX_CHARS)),  # prtConsoleNumberOfDisplayChars
        (13, integer(3)),  # prtConsoleDisable: enabled
        (14, integer(4)),  # prtAuxiliarySheetStartupPage: off (NVM 744-220 default)
        (15, integer(4)),  # prtAuxiliarySheetBannerPage: off
        (16, text(m.identity.model)),  # prtGeneralPrinterName
        (17, text(m.identity.serial)),  # prtGeneralSerialNumber
        (18, counter(m.critical_events)),  # prtAlertCriticalEvents
        (19, counter(m.alert_events)),  # prtAlertAllEvents
    ):
        add(((*g, col, HR_DEV), value))


def _localization(m: MibInput, add: _Adder) -> None:
    """prtLocalizationTable: the one localization the panel and PJL LANG use."""
    loc = (*PRINTER_MIB, 7, 1, 1)
    mib = m.equipment.mib
    for col, value in ((2, text(mib.language_code)), (3, text(mib.country_code)),
                       (4, integer(_UTF8))):
        add(((*loc, col, HR_DEV, 1), value))


def _in_group(alerts: tuple[Alert, ...], group: int, index: int) -> list[Alert]:
    return [a for a in alerts if a.group == group and a.group_index == index]


def _covers(m: MibInput, add: _Adder) -> None:
    c = (*PRINTER_MIB, 6, 1, 1)
    open_now = any(a.code in (3, 501) for a in m.alerts)
    add(((*c, 2, HR_DEV, 1), text("Front Cover")))
    add(((*c, 3, HR_DEV, 1), integer(3 if open_now else 4)))  # coverOpen / coverClosed


@dataclass(frozen=True, slots=True)
class TrayState:
    """One input tray as prtInputTable reports it (and the web pages show it)."""

    index: int  # prtInputIndex, in the equipment's order
    tray: TraySpec
    level: int  # prtInputCurrentLevel: 0 empty, -3 "some remains"
    status: int  # prtInputStatus (PrtSubUnitStatusTC)

    def __post_init__(self) -> None:
        if self.index < 1 or self.level not in (0, -3):
            raise ValueError(f"bad tray state {self.index}, level {self.level}")


def tray_states(equipment: Equipment, alerts: tuple[Alert, ...],
                power: PowerState) -> tuple[TrayState, ...]:
    """Every input tray's level and status: an inputMediaSupplyEmpty alert (808) in the
    input group for the tray makes it empty; otherwise some paper remains (-3)."""
    avail = ps.AVAILABLE_STANDBY if power is PowerState.SLEEPING else ps.AVAILABLE_IDLE
    out = []
    for index, tray in enumerate(equipment.trays, start=1):
        mine = _in_group(alerts, 8, index)
        empty = any(a.code == 808 for a in mine)
        out.append(TrayState(index, tray, 0 if empty else -3,
                             ps.subunit_status(avail, mine)))
    return tuple(out)


def _inputs(m: MibInput, add: _Adder) -> None:
    t = (*PRINTER_MIB, 8, 2, 1)
    for st in tray_states(m.equipment, m.alerts, m.power):
        index, tray = st.index, st.tray
        size = tray.dimensions
        for col, value in (
            (2, integer(5 if tray.bypass else 4)),  # sheetFeedManual / AutoNonRemovable
            (3, integer(_TENTHOUSANDTHS_OF_INCHES)),
            (4, integer(size[0])),
            (5, integer(size[1])),
            (6, integer(size[0])),
            (7, integer(size[1])),
            (8, integer(8)),  # prtInputCapacityUnit: sheets
            (9, integer(tray.capacity)),
            (10, integer(st.level)),  # -3: some remains
            (11, integer(st.status)),
            (12, text(tray.media)),
            (13, text(tray.name)),
            (14, text(m.identity.manufacturer)),  # prtInputVendorName
            (15, text(m.identity.model)),  # prtInputModel
            (16, text("")),  # prtInputVersion
            (17, text("")),  # prtInputSerialNumber
            (18, text(tray.name)),
            (19, integer(_PRESENT_OFF)),  # prtInputSecurity
            (20, integer(80)),  # prtInputMediaWeight: g/m2
            (21, text("stationery")),  # prtInputMediaType
            (22, text("white")),  # prtInputMediaColor
            (23, integer(1)),  # prtInputMediaFormParts
        ):
            add(((*t, col, HR_DEV, index), value))


def _outputs(m: MibInput, add: _Adder) -> None:
    o = (*PRINTER_MIB, 9, 2, 1)
    for index, out_bin in enumerate(m.equipment.bins, start=1):
        mine = _in_group(m.alerts, 9, index)
        for col, value in (
            (2, integer(4)),  # prtOutputType: unRemovableBin
            (3, integer(8)),  # sheets
            (4, integer(out_bin.capacity)),
            (5, integer(-3)),  # prtOutputRemainingCapacity: some remains
            (6, integer(ps.subunit_status(ps.AVAILABLE_IDLE, mine))),
            (7, text(out_bin.name)),
            (8, text(m.identity.manufacturer)),  # prtOutputVendorName
            (9, text(m.identity.model)),  # prtOutputModel
            (10, text("")),  # prtOutputVersion
            (11, text("")),  # prtOutputSerialNumber
            (12, text(out_bin.name)),  # prtOutputDescription
            (13, integer(_PRESENT_OFF)),  # prtOutputSecurity
            (19, integer(4)),  # prtOutputStackingOrder: firstToLast
            (20, integer(4)),  # prtOutputPageDeliveryOrientation: faceDown
        ):
            add(((*o, col, HR_DEV, index), value))


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


def _channels(m: MibInput, status: ps.PrinterStatus, add: _Adder) -> None:
    """prtChannelTable: port 9100 and LPD, both with PJL as job control language."""
    c = (*PRINTER_MIB, 14, 1, 1)
    offline = ps.Condition.OFFLINE in status.conditions
    state = ps.AVAILABLE_IDLE | (ps.OFF_LINE if offline else 0)
    for index, (kind, info) in enumerate(((_CH_PORT9100, "Port=9100"),
                                          (_CH_LPD, "Queue=lp")), start=1):
        for col, value in (
            (2, integer(kind)),
            (3, text("")),  # prtChannelProtocolVersion
            (4, integer(1)),  # prtChannelCurrentJobCntlLangIndex: PJL
            (5, integer(2)),  # prtChannelDefaultPageDescLangIndex: the first PDL
            (6, integer(_CH_PRINT_DATA_ACCEPTED)),
            (7, integer(sm.IF_INDEX)),  # prtChannelIfIndex
            (8, integer(state)),  # prtChannelStatus
            (9, text(info)),  # prtChannelInformation
        ):
            add(((*c, col, HR_DEV, index), value))


def _interpreters(m: MibInput, add: _Adder) -> None:
    """prtInterpreterTable: PJL, then the page description languages PJL INFO CONFIG
    lists, in the same order."""
    t = (*PRINTER_MIB, 15, 1, 1)
    version = m.identity.firmware.get("system", "")
    for i, name in enumerate(m.equipment.interpreters, start=1):
        family, description = LANGUAGE_FAMILIES[name]
        for col, value in (
            (2, integer(family)),
            (3, text(name)),  # prtInterpreterLangLevel
            (4, text(version)),  # prtInterpreterLangVersion
            (5, text(description)),
            (6, text(version)),  # prtInterpreterVersion
            (7, integer(_PORTRAIT)),  # prtInterpreterDefaultOrientation
            (8, integer(600)),  # prtInterpreterFeedAddressability (dpi)
            (9, integer(600)),  # prtInterpreterXFeedAddressability
            (10, integer(_UTF8)),  # prtInterpreterDefaultCharSetIn
            (11, integer(_UTF8)),  # prtInterpreterDefaultCharSetOut
            (12, integer(_YES if name == "PJL" else _NO)),  # prtInterpreterTwoWay
        ):
            add(((*t, col, HR_DEV, i), value))


def _console(status: ps.PrinterStatus, add: _Adder) -> None:
    add(((*PRINTER_MIB, 16, 5, 1, 2, HR_DEV, 1), text(status.display[:MAX_CHARS])))


def _lights(m: MibInput, status: ps.PrinterStatus, add: _Adder) -> None:
    """prtConsoleLightTable: Ready (on while it can print), Attention (on for a
    warning, blinking for a critical alert), Energy Saver (on while asleep).
    On/off times in ms: (n, 0) steady on, (0, n) off, both set blinking."""
    on, off, blink = (1000, 0), (0, 1000), (500, 500)
    ready = on if status.device is not ps.DeviceStatus.DOWN else off
    attention = (blink if status.device is ps.DeviceStatus.DOWN
                 else on if status.device is ps.DeviceStatus.WARNING else off)
    saver = on if m.power is PowerState.SLEEPING else off
    lights = ((ready, _GREEN, "Ready"), (attention, _ORANGE, "Attention"),
              (saver, _GREEN, "Energy Saver"))
    t = (*PRINTER_MIB, 17, 6, 1)
    for index, ((on_ms, off_ms), color, name) in enumerate(lights, start=1):
        for col, value in ((2, integer(on_ms)), (3, integer(off_ms)), (4, integer(color)),
                           (5, text(name))):
            add(((*t, col, HR_DEV, index), value))


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
