"""Objects outside the IETF printer MIBs: the vendor's private MIB and PWG imaging
counters (sans-I/O).

- The IEEE 1284 device id, at the OID the profile names under the vendor's enterprise
  arc (``[mib] device_id_oid``; Xerox keeps it at 1.3.6.1.4.1.253.8.51.1.2.1.20.1),
  or at ``<arc>.1.1.1.0`` for a profile that names none.
- Billing meters at the OIDs the profile's ``[mib.meters]`` names (the vendor's public
  private-MIB objects that fleet tools read, e.g. Xerox xcmHrDevDetailValueInteger).
- PWG-IMAGING-COUNTER-MIB (PWG 5106.3): key and service tables, lifetime work totals.
"""

from __future__ import annotations

from collections.abc import Callable

from device_direct.model import Counters, Identity, PowerState
from emulator.model.equipment import MibSpec
from emulator.snmp.oid_table import MibValue, Oid, integer, parse_oid, text

IMAGING_COUNTERS = (1, 3, 6, 1, 4, 1, 2699, 1, 3, 1)  # PWG 5106.3 icMIBObjects
_MAX_I32 = 2_147_483_647

Adder = Callable[[tuple[Oid, MibValue]], None]


def device_id_1284(identity: Identity, mib: MibSpec, color: bool) -> str:
    """The IEEE 1284 device id: the profile's, or one built from the identity."""
    if mib.device_id:
        return mib.device_id
    return (f"MFG:{identity.manufacturer};CMD:PJL,PCL,POSTSCRIPT;MDL:{identity.model};"
            f"CLS:PRINTER;DES:{identity.manufacturer} {identity.model};"
            f"CID:{'COLOR' if color else 'MONO'};")


def device_id_oid(mib: MibSpec, enterprise: int) -> Oid:
    """Where the 1284 device id lives under the vendor's arc."""
    if mib.device_id_oid:
        return parse_oid(mib.device_id_oid)
    return (1, 3, 6, 1, 4, 1, enterprise, 1, 1, 1, 0)


def meter_value(counters: Counters, name: str) -> int:
    """The counter ``name`` (a :data:`emulator.model.equipment.METER_NAMES` entry)."""
    return int(getattr(counters, name))


def vendor_objects(add: Adder, *, identity: Identity, mib: MibSpec, color: bool,
                   enterprise: int, counters: Counters) -> None:
    """The 1284 device id and the vendor's billing meters."""
    add((device_id_oid(mib, enterprise), text(device_id_1284(identity, mib, color))))
    for name, oid in mib.meters:
        add((parse_oid(oid), integer(min(meter_value(counters, name), _MAX_I32))))


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


def _ic(v: int) -> MibValue:
    return integer(min(max(v, 0), _MAX_I32))  # IcCounter32 is Integer32 (0..2^31-1)


def imaging_counters(add: Adder, *, counters: Counters, power: PowerState,
                     services: tuple[str, ...]) -> None:
    """icKeyTable, icServiceTable and lifetime work totals per service.

    The model keeps black/color and sheets for the whole device and impressions per
    job kind, so the totals row has monochrome/full-color impressions and sheets and
    the service rows have their total impressions (scan: images). Columns the model
    has no value for are not instantiated.
    """
    ic, c = IMAGING_COUNTERS, counters
    per_service = {"print": c.print_impressions, "copy": c.copy_impressions,
                   "fax": c.fax_impressions}
    state = 7 if power in (PowerState.OFF, PowerState.FAULTED) else (
        4 if power is PowerState.PRINTING else 3)  # down / processing / idle
    rows = [row for row in _IC_SERVICES if row[1] == "systemTotals" or row[1] in services]
    add(((*ic, 1, 2, 0), _ic(len(rows))))  # icGeneralTotalServiceRecords
    for key, name, service_type in rows:
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
