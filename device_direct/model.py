"""The interface between Device Direct and the printer it runs in.

``device_direct`` talks to its host only through :class:`DeviceModel`. The read side
returns frozen values (a :class:`DeviceSnapshot` holds all of them); the command side
is async because commands take (simulated) time. ``emulator.model`` implements it for
the emulated MFP; a real printer's firmware implements it over its own services.

Values follow the public remote-services data tables and the Printer-MIB (RFC 3805):
supply types and units are IANA-PRINTER-MIB names, alert codes are prtAlertCode
numbers, fault and HFSI ids are chain-link codes ``NNN-NNN``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

CHAIN_LINK = re.compile(r"^\d{3}-\d{3}$")

# Printer-MIB special values for capacity and level (RFC 3805 prtMarkerSuppliesLevel).
LEVEL_OTHER = -1
LEVEL_UNKNOWN = -2
LEVEL_SOME_REMAINS = -3
SPECIAL_LEVELS = frozenset({LEVEL_OTHER, LEVEL_UNKNOWN, LEVEL_SOME_REMAINS})


class PowerState(enum.Enum):
    """Power and engine state of the device."""

    OFF = "off"
    BOOTING = "booting"
    READY = "ready"
    PRINTING = "printing"
    SLEEPING = "sleeping"
    FAULTED = "faulted"


class Severity(enum.Enum):
    """prtAlertSeverityLevel."""

    OTHER = 1
    CRITICAL = 3
    WARNING = 4
    WARNING_BINARY_CHANGE = 5


class JobKind(enum.Enum):
    PRINT = "print"
    COPY = "copy"
    FAX = "fax"  # a received fax that is printed
    SCAN = "scan"  # scanned images, nothing printed
    REPORT = "report"  # internal pages: configuration report, test page


@dataclass(frozen=True, slots=True)
class Identity:
    """What the device is: maker, model, serial, firmware per module, options."""

    manufacturer: str
    model: str
    serial: str
    product_code: str
    firmware: Mapping[str, str]  # module name -> version, e.g. {"system": "100.002.057"}
    installed_options: tuple[str, ...] = ()
    install_date: date | None = None
    profile: str = ""  # name of the device profile it was built from (emulator)


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """The device's network settings, as its host reports them."""

    mac: str
    ipv4: str
    subnet_mask: str
    gateway: str = ""
    hostname: str = ""
    domain: str = ""  # DNS domain the device is in; the WPAD walk starts here
    wpad_url: str | None = None  # DHCP option 252 as handed over by the host
    dns_servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Property:
    """One hardware or software configuration item (name, value)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Alert:
    """One active Printer-MIB alert (a row of prtAlertTable)."""

    index: int
    severity: Severity
    code: int  # prtAlertCode
    group: int  # prtAlertGroup
    group_index: int
    location: int
    description: str
    raised_at: datetime
    uptime_ticks: int = 0  # sysUpTime when raised (prtAlertTime)
    training_level: int = 4  # prtAlertTrainingLevel: untrained(3) trained(4) fieldService(5)


@dataclass(frozen=True, slots=True)
class Fault:
    """One entry of the fault history."""

    code: str  # chain-link NNN-NNN
    subsystem: str
    description: str
    at: datetime
    impressions: int  # total impressions when it happened
    stops_machine: bool = False


@dataclass(frozen=True, slots=True)
class Counters:
    """Billing meters and usage counters. All only grow."""

    black_impressions: int = 0
    color_impressions: int = 0
    total_impressions: int = 0
    black_large_impressions: int = 0
    color_large_impressions: int = 0
    total_large_impressions: int = 0
    sheets: int = 0
    duplex_sheets: int = 0
    print_impressions: int = 0
    copy_impressions: int = 0
    fax_impressions: int = 0
    report_impressions: int = 0
    scan_images: int = 0
    fax_sent_images: int = 0


@dataclass(frozen=True, slots=True)
class Supply:
    """One row of prtMarkerSuppliesTable, plus replenishment data."""

    index: int
    name: str  # "Black Toner Cartridge"
    type: str  # IANA-PRINTER-MIB PrtMarkerSuppliesTypeTC name: toner, wasteToner, opc, ...
    unit: str  # impressions | sheets | percent | ...
    capacity: int  # max capacity, or -1 / -2
    level: int  # current level, or -1 / -2 / -3
    colorant: str = ""  # black | cyan | magenta | yellow | ""
    supply_class: int = 3  # supplyThatIsConsumed(3) | receptacleThatIsFilled(4)
    status: str = "ok"  # ok | low | empty | full | near-full
    serial: str = ""
    part_number: str = ""
    lifetime_impressions: int = 0  # impressions made with this unit
    installed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HfsiItem:
    """One high-frequency service item (wear part counter)."""

    id: str  # chain-link, e.g. 950-800
    name: str
    count: int
    life: int
    maximum: int  # the counter stops here until cleared
    rule: str  # how it counts: impressions | sheets | a4-units | mm-paper | days
    replacements: int = 0
    last_replaced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NvmSetting:
    """One non-volatile memory setting (NNN-NNN) with its range."""

    id: str  # NNN-NNN
    name: str
    value: int
    default: int
    minimum: int
    maximum: int
    protected: bool = False


@dataclass(frozen=True, slots=True)
class FirmwareBank:
    """One firmware bank of the A/B pair and the version it holds."""

    name: str  # "A" | "B"
    version: str  # "" when empty
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class FirmwareState:
    """A/B firmware banks: the running bank, and whether it is on trial."""

    active: str  # bank name
    banks: tuple[FirmwareBank, FirmwareBank]
    trial: bool = False  # booted into a new bank that is not committed yet

    @property
    def running_version(self) -> str:
        return next(b.version for b in self.banks if b.name == self.active)

    @property
    def inactive(self) -> FirmwareBank:
        return next(b for b in self.banks if b.name != self.active)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job in the device's job log. Holds personal data: the payload filters it."""

    kind: JobKind
    at: datetime
    pages: int
    impressions: int
    user: str = ""
    job_name: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """Everything the collector reads from the model, at one instant."""

    taken_at: datetime
    power: PowerState
    identity: Identity
    network: NetworkInfo
    properties: tuple[Property, ...]
    alerts: tuple[Alert, ...]
    faults: tuple[Fault, ...]  # newest first, at most 40
    counters: Counters
    supplies: tuple[Supply, ...]
    hfsi: tuple[HfsiItem, ...]
    nvm: tuple[NvmSetting, ...]
    firmware: FirmwareState
    jobs: tuple[JobRecord, ...] = field(default=())  # recent job log (personal data)


@dataclass(frozen=True, slots=True)
class PrintJob:
    """A job submitted to the model."""

    kind: JobKind = JobKind.PRINT
    pages: int = 1  # logical pages (sides with content)
    copies: int = 1
    duplex: bool = False
    color: bool = False
    large: bool = False  # A3/tabloid: counts as a large impression
    coverage: float = 0.05  # toner coverage per side, 0..1
    user: str = ""
    job_name: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class PrintResult:
    """What a print job did: sheets, impressions, and a fault if one stopped it."""

    sheets: int
    impressions: int
    completed: bool  # False when a fault stopped the job part way
    fault: Fault | None = None


@runtime_checkable
class DeviceModel(Protocol):
    """What Device Direct needs from the printer it runs in."""

    # -- read side ----------------------------------------------------------------------

    def snapshot(self) -> DeviceSnapshot:
        """All readable data at this instant (cheap: values, not copies of history)."""
        ...

    @property
    def power(self) -> PowerState: ...

    def identity(self) -> Identity: ...

    def network(self) -> NetworkInfo: ...

    def counters(self) -> Counters: ...

    def alerts(self) -> tuple[Alert, ...]: ...

    def firmware(self) -> FirmwareState: ...

    def engineering_log(self) -> str:
        """The engineering (debug) log: only sent with customer consent."""
        ...

    # -- commands -----------------------------------------------------------------------

    async def reboot(self) -> None:
        """Shut down and boot again; returns when the device is ready."""
        ...

    async def power_off(self) -> None: ...

    async def power_on(self) -> None: ...

    async def print_job(self, job: PrintJob) -> PrintResult: ...

    async def print_configuration_report(self) -> str:
        """Print the configuration report (one impression) and return its text."""
        ...

    async def write_inactive_bank(self, version: str, image: bytes | Path) -> None:
        """Write a verified firmware image to the bank that is not running.

        ``image`` is the image, or the file that holds it: a device reads the file in
        chunks, so an image of hundreds of MiB never has to fit in memory."""
        ...

    async def boot_bank(self, bank: str, *, trial: bool) -> None:
        """Reboot into ``bank``; with ``trial`` the old bank stays the fallback."""
        ...

    async def commit_bank(self) -> None:
        """Make the running trial bank permanent."""
        ...

    async def rollback_bank(self) -> None:
        """Reboot into the previous bank and discard the trial."""
        ...

    async def set_nvm(self, nvm_id: str, value: int) -> None: ...
