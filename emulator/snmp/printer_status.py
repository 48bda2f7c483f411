"""Overall printer status from the power state and the active alerts (sans-I/O).

Rules (RFC 2790 hrPrinterDetectedErrorState, RFC 3805 section 2.2.13.2 and appendix E):

- Each active alert sets condition bits by its prtAlertCode (jam -> jammed, coverOpen ->
  doorOpen, markerTonerEmpty -> noToner, ...). A critical alert whose code names no
  condition sets serviceRequested, and so does a plain warning with no condition
  (a drum near its end of life needs a visit, not a new sheet of paper).
  subunitLifeOver(11) in the generalPrinter group is a wear part (HFSI) past its life
  with its technician visit still to come: overduePreventMaint and serviceRequested.
- hrDeviceStatus is the worst of: lowPaper, lowToner, serviceRequested -> warning(3);
  noPaper, noToner, doorOpen, jammed, offline -> down(5); any critical alert -> down(5);
  any other warning alert -> warning(3); otherwise running(2). A booting device is
  down(5) and warming up; a faulted device is down(5) even without an alert row.
- hrPrinterStatus: other(1) while a critical alert is active or the engine is faulted,
  warmup(5) while booting, printing(4) while printing, otherwise idle(3).
- prtMarkerStatus and the other subunit statuses are PrtSubUnitStatusTC sums: the
  availability (0 idle, 2 standby, 4 active, 3 broken) plus 8 for a non-critical
  alert, 16 for a critical one, 64 while transitioning (booting).

- An operator message (PJL OPMSG, :mod:`emulator.model.console`) holds the printer
  off line: condition offline, hrDeviceStatus down(5), prtMarkerStatus +32.
- The display text is :func:`emulator.model.console.display_text`, the one text every
  face of the printer reports.

The JetDirect port maps the same :class:`PrinterStatus` onto PJL status codes, so the
two views of one printer never disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from device_direct.model import Alert, PowerState, Severity
from emulator.model.console import display_text
from emulator.model.device import EmulatedDevice


class Condition(enum.IntEnum):
    """hrPrinterDetectedErrorState bit numbers (bit 0 = MSB of the first octet)."""

    LOW_PAPER = 0
    NO_PAPER = 1
    LOW_TONER = 2
    NO_TONER = 3
    DOOR_OPEN = 4
    JAMMED = 5
    OFFLINE = 6
    SERVICE_REQUESTED = 7
    INPUT_TRAY_MISSING = 8
    OUTPUT_TRAY_MISSING = 9
    MARKER_SUPPLY_MISSING = 10
    OUTPUT_NEAR_FULL = 11
    OUTPUT_FULL = 12
    INPUT_TRAY_EMPTY = 13
    OVERDUE_PREVENT_MAINT = 14


_C = Condition
# prtAlertCode (IANA-PRINTER-MIB PrtAlertCodeTC) -> conditions it reports.
CODE_CONDITIONS: dict[int, tuple[Condition, ...]] = {
    3: (_C.DOOR_OPEN,),  # coverOpen
    5: (_C.DOOR_OPEN,),  # interlockOpen
    501: (_C.DOOR_OPEN,),  # doorOpen
    8: (_C.JAMMED,),  # jam
    22: (_C.OFFLINE,),  # subunitOffline
    801: (_C.INPUT_TRAY_MISSING,),  # inputMediaTrayMissing
    807: (_C.LOW_PAPER,),  # inputMediaSupplyLow
    808: (_C.NO_PAPER, _C.INPUT_TRAY_EMPTY),  # inputMediaSupplyEmpty
    901: (_C.OUTPUT_TRAY_MISSING,),  # outputMediaTrayMissing
    902: (_C.OUTPUT_NEAR_FULL,),  # outputMediaTrayAlmostFull
    903: (_C.OUTPUT_FULL,),  # outputMediaTrayFull
    1101: (_C.NO_TONER,),  # markerTonerEmpty
    1104: (_C.LOW_TONER,),  # markerTonerAlmostEmpty
    1115: (_C.MARKER_SUPPLY_MISSING,),  # markerTonerCartridgeMissing
}
# (prtAlertCode, prtAlertGroup) -> conditions, where the group tells what the code means:
# subunitLifeOver of the printer as a whole (not of a supply) is overdue maintenance.
CODE_GROUP_CONDITIONS: dict[tuple[int, int], tuple[Condition, ...]] = {
    (11, 5): (_C.OVERDUE_PREVENT_MAINT, _C.SERVICE_REQUESTED),  # subunitLifeOver, general
}
WARNING_CONDITIONS = frozenset({_C.LOW_PAPER, _C.LOW_TONER, _C.SERVICE_REQUESTED})
DOWN_CONDITIONS = frozenset({_C.NO_PAPER, _C.NO_TONER, _C.DOOR_OPEN, _C.JAMMED, _C.OFFLINE})


class DeviceStatus(enum.IntEnum):
    """hrDeviceStatus."""

    UNKNOWN = 1
    RUNNING = 2
    WARNING = 3
    TESTING = 4
    DOWN = 5


class PrinterState(enum.IntEnum):
    """hrPrinterStatus."""

    OTHER = 1
    UNKNOWN = 2
    IDLE = 3
    PRINTING = 4
    WARMUP = 5


# PrtSubUnitStatusTC parts.
AVAILABLE_IDLE = 0
AVAILABLE_STANDBY = 2
AVAILABLE_ACTIVE = 4
UNAVAILABLE_BROKEN = 3
NON_CRITICAL_ALERT = 8
CRITICAL_ALERT = 16
OFF_LINE = 32
TRANSITIONING = 64


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """The derived status objects of one printer at one instant."""

    device: DeviceStatus
    printer: PrinterState
    conditions: frozenset[Condition]
    marker_status: int  # prtMarkerStatus (PrtSubUnitStatusTC)
    display: str  # the control panel's first line (prtConsoleDisplayBufferText)

    def __post_init__(self) -> None:
        if not 0 <= self.marker_status <= 126:
            raise ValueError(f"prtMarkerStatus out of range: {self.marker_status}")

    @property
    def error_state(self) -> bytes:
        """hrPrinterDetectedErrorState: two octets, bit 0 = MSB of the first one."""
        bits = 0
        for c in self.conditions:
            bits |= 1 << (15 - c)
        return bits.to_bytes(2, "big")

    @property
    def critical(self) -> bool:
        """True when the printer cannot print (down)."""
        return self.device is DeviceStatus.DOWN


def conditions_of(alerts: Iterable[Alert]) -> frozenset[Condition]:
    """The hrPrinterDetectedErrorState conditions the active ``alerts`` report."""
    found: set[Condition] = set()
    for a in alerts:
        named = CODE_GROUP_CONDITIONS.get((a.code, a.group)) or CODE_CONDITIONS.get(a.code)
        if named:
            found.update(named)
        elif a.severity in (Severity.CRITICAL, Severity.WARNING):
            found.add(_C.SERVICE_REQUESTED)
    return frozenset(found)


def subunit_status(availability: int, alerts: Iterable[Alert]) -> int:
    """A PrtSubUnitStatusTC value: ``availability`` plus the alert bits of ``alerts``."""
    value = availability
    for a in alerts:
        if a.severity is Severity.CRITICAL:
            value |= CRITICAL_ALERT
        elif a.severity is Severity.WARNING:
            value |= NON_CRITICAL_ALERT
    return value


def printer_status(power: PowerState, alerts: tuple[Alert, ...], *, ready_message: str = "",
                   operator_message: str = "") -> PrinterStatus:
    """Apply the status rules (module doc) to ``power``, the active ``alerts`` and the
    panel's messages."""
    conditions = conditions_of(alerts)
    if operator_message and power is not PowerState.OFF:
        conditions = conditions | {_C.OFFLINE}
    critical = [a for a in alerts if a.severity is Severity.CRITICAL]
    warnings = [a for a in alerts if a.severity is Severity.WARNING]
    faulted = power is PowerState.FAULTED
    if faulted and not critical and not conditions & DOWN_CONDITIONS:
        conditions = conditions | {_C.SERVICE_REQUESTED}

    device = DeviceStatus.RUNNING
    if conditions & WARNING_CONDITIONS or warnings:
        device = DeviceStatus.WARNING
    if conditions & DOWN_CONDITIONS or critical or faulted or power is PowerState.BOOTING:
        device = DeviceStatus.DOWN

    if critical or faulted:
        printer = PrinterState.OTHER
    elif power is PowerState.BOOTING:
        printer = PrinterState.WARMUP
    elif power is PowerState.PRINTING:
        printer = PrinterState.PRINTING
    elif power is PowerState.OFF:
        printer = PrinterState.UNKNOWN
    else:
        printer = PrinterState.IDLE

    availability = {
        PowerState.PRINTING: AVAILABLE_ACTIVE,
        PowerState.SLEEPING: AVAILABLE_STANDBY,
        PowerState.FAULTED: UNAVAILABLE_BROKEN,
    }.get(power, AVAILABLE_IDLE)
    marker = subunit_status(availability, alerts)
    if power is PowerState.BOOTING:
        marker |= TRANSITIONING
    if _C.OFFLINE in conditions:
        marker |= OFF_LINE
    return PrinterStatus(device=device, printer=printer, conditions=conditions,
                         marker_status=marker,
                         display=display_text(power, alerts, ready_message, operator_message))


def status_of_device(device: EmulatedDevice) -> PrinterStatus:
    """The status of ``device`` now, its panel's messages included."""
    console = device.console
    return printer_status(device.power, device.alerts(), ready_message=console.ready_message,
                          operator_message=console.operator_message)
