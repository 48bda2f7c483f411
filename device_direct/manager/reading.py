"""From what an agent answered to what the manager reports: printer or not, and its reading.

Sans-I/O: :func:`is_printer` decides from the quick probe, :func:`interpret` turns the
values read from one printer (``{oid: value}``) and its vendor definition into a
:class:`PrinterReading`. Rules:

- read what is there, never invent: a value the printer did not give is ``None`` (or
  left out, for ``black``/``color``) and named in ``missing``;
- vendor objects (from the vendor's data file) come before the standard ones only
  where the standard is known to fall short (meters); identity prefers the standard
  columns and falls back on the vendor's objects;
- a supply's state comes from the printer's own alerts for that supply (almost
  empty/full -> ``low``, empty/full -> ``empty``), then from the special levels
  (-1 ``unlimited``, -2 ``unknown``, -3 ``some-remaining``), then ``empty`` at level 0
  for a consumed supply, else ``ok``; ``percent`` only where level and capacity are
  both real numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from device_direct.manager import hostinfo, mib
from device_direct.manager import names as n
from device_direct.manager.mib import Oid, Raw, Value, int_of, text_of
from device_direct.manager.vendors import Vendor

_SYSTEM_TOTALS = 3  # IcServiceTypeTC systemTotals
_CONSUMED = 3  # supplyThatIsConsumed


def is_printer(raw: Raw) -> bool:
    """A printer answers hrDeviceType = hrDevicePrinter or has a prtGeneral row."""
    for _, value in mib.rows(raw, mib.HR_DEVICE_TYPE):
        if value == mib.HR_DEVICE_PRINTER:
            return True
    return any(o[:len(mib.PRT_GENERAL)] == mib.PRT_GENERAL for o in raw)


@dataclass(frozen=True, slots=True)
class SupplyReading:
    index: int
    description: str | None
    type: str | None
    level: int | None
    max_capacity: int | None
    percent: float | None
    state: str  # ok | low | empty | unknown | some-remaining | unlimited
    unit: str | None = None
    colorant: str | None = None


@dataclass(frozen=True, slots=True)
class AlertReading:
    index: int
    severity: str | None
    code: int | None
    code_name: str | None
    description: str | None
    group: str | None
    group_index: int | None


@dataclass(frozen=True, slots=True)
class TrayReading:
    index: int
    name: str | None
    max_capacity: int | None
    level: int | None
    media: str | None


@dataclass(frozen=True, slots=True)
class PrinterReading:
    """Everything read from one printer, ready for the report and the payload."""

    address: str
    vendor: str | None
    model: str | None
    serial: str | None
    sys_object_id: str | None
    mac: str | None
    firmware: str | None
    sys_descr: str | None
    sys_name: str | None
    sys_location: str | None
    sys_contact: str | None
    uptime_s: int | None
    status: dict[str, Any]
    counters: dict[str, Any]
    supplies: tuple[SupplyReading, ...]
    trays: tuple[TrayReading, ...]
    properties: dict[str, Any]
    console: tuple[str, ...]
    missing: tuple[str, ...]
    vendor_file: str | None = None
    problems: tuple[str, ...] = field(default=())
    # ip, subnet_mask, gateway, hostname (sysName), dns_name (reverse lookup)
    network: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The scan report's printer object (the issue's shape, plus what else was read)."""
        out = asdict(self)
        out["supplies"] = [asdict(s) for s in self.supplies]
        out["trays"] = [asdict(t) for t in self.trays]
        out["console"] = list(self.console)
        out["missing"] = list(self.missing)
        out["problems"] = list(self.problems)
        return out


def _mac(raw: Raw) -> str | None:
    types = {idx: v for idx, v in mib.rows(raw, mib.IF_TYPE)}
    candidates = [(types.get(idx) != 6, idx, v) for idx, v in mib.rows(raw, mib.IF_PHYS_ADDRESS)
                  if isinstance(v, bytes) and len(v) == 6 and any(v)]
    if not candidates:
        return None
    return ":".join(f"{b:02x}" for b in min(candidates)[2])


def _printer_index(raw: Raw) -> int:
    for idx, value in mib.rows(raw, mib.HR_DEVICE_TYPE):
        if value == mib.HR_DEVICE_PRINTER and len(idx) == 1:
            return idx[0]
    general = mib.table(raw, mib.PRT_GENERAL)
    return min((i[0] for i in general if i), default=1)


def _errors(value: Value | None) -> list[str] | None:
    if not isinstance(value, bytes):
        return None
    bits = int.from_bytes(value, "big") if value else 0
    width = len(value) * 8
    return [name for i, name in enumerate(n.ERROR_BITS)
            if i < width and bits >> (width - 1 - i) & 1]


def _name(table: dict[int, str], value: Value | None) -> str | None:
    if not isinstance(value, int):
        return None
    return table.get(value, f"code {value}")


def _mine(table: dict[Oid, dict[int, Value]], hr: int) -> list[tuple[int, dict[int, Value]]]:
    """Rows of a Printer-MIB table that belong to printer ``hr`` (index hrDev.row)."""
    return [(idx[1], row) for idx, row in sorted(table.items()) if len(idx) == 2 and idx[0] == hr]


def _supplies(raw: Raw, hr: int, alerts: list[AlertReading]) -> tuple[SupplyReading, ...]:
    colorants = {i: text_of(row.get(4)) for i, row in _mine(mib.table(raw, mib.PRT_COLORANT), hr)}
    flagged: dict[int, str] = {}
    for a in alerts:
        if a.group == "markerSupplies" and a.group_index is not None and a.code is not None:
            if a.code in n.SUPPLY_ALERT_EMPTY:
                flagged[a.group_index] = "empty"
            elif a.code in n.SUPPLY_ALERT_LOW:
                flagged.setdefault(a.group_index, "low")
    out = []
    for i, row in _mine(mib.table(raw, mib.PRT_SUPPLIES), hr):
        level, cap = int_of(row.get(9)), int_of(row.get(8))
        cls = int_of(row.get(4))
        percent = (round(100.0 * level / cap, 1)
                   if level is not None and cap is not None and cap > 0 and level >= 0 else None)
        if i in flagged:
            state = flagged[i]
        elif level is None or level == -2:
            state = "unknown"
        elif level == -3:
            state = "some-remaining"
        elif level == -1:
            state = "unlimited"
        elif level < 0:
            state = "unknown"
        elif level == 0 and cls in (None, _CONSUMED):
            state = "empty"
        else:
            state = "ok"
        colorant_index = int_of(row.get(3))
        out.append(SupplyReading(
            index=i, description=text_of(row.get(6)), type=_name(n.SUPPLY_TYPE, row.get(5)),
            level=level, max_capacity=cap, percent=percent, state=state,
            unit=_name(n.SUPPLY_UNIT, row.get(7)),
            colorant=colorants.get(colorant_index) if colorant_index else None))
    return tuple(out)


def _alerts(raw: Raw, hr: int) -> list[AlertReading]:
    out = []
    for i, row in _mine(mib.table(raw, mib.PRT_ALERT), hr):
        code = int_of(row.get(7))
        out.append(AlertReading(
            index=i, severity=_name(n.ALERT_SEVERITY, row.get(2)), code=code,
            code_name=n.ALERT_CODE.get(code) if code is not None else None,
            description=text_of(row.get(8)), group=_name(n.ALERT_GROUP, row.get(4)),
            group_index=int_of(row.get(5))))
    return out


def _system_totals(raw: Raw) -> dict[int, Value]:
    """icImpressionTable columns of the systemTotals service (lifetime work totals)."""
    keys = {idx[0]: v for idx, v in mib.rows(raw, (*mib.IC_KEY, 2)) if len(idx) == 1}
    total_keys = [k for k, v in keys.items() if v == _SYSTEM_TOTALS]
    if not total_keys:
        return {}
    wanted = (total_keys[0], 3, 3)  # workTotals, lifetime
    return {idx[0]: v for idx, v in mib.rows(raw, mib.IC_IMPRESSION) if idx[1:] == wanted}


def _counters(raw: Raw, hr: int, vendor: Vendor | None,
              missing: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meters = vendor.meters if vendor else {}
    markers = _mine(mib.table(raw, mib.PRT_MARKER), hr)
    marker_rows: list[dict[str, Any]] = [{"index": i, "life_count": _count(row.get(4)),
                    "unit": _name(n.COUNTER_UNIT, row.get(3)),
                    "technology": _name(n.MARKER_TECH, row.get(2))} for i, row in markers]
    totals = _system_totals(raw)
    out: dict[str, Any] = {}
    total: int | None = _count(raw.get(meters["total"])) if "total" in meters else None
    source: str | None = "vendor" if total is not None else None
    life = [m for m in marker_rows if m["life_count"] is not None]
    if total is None and len(life) == 1:
        total, source = life[0]["life_count"], "prtMarkerLifeCount"
        if life[0]["unit"] not in (None, "impressions"):
            out["unit"] = life[0]["unit"]
    if total is None and _count(totals.get(4)) is not None:
        total, source = _count(totals.get(4)), "icImpressionTable"
    if total is None:
        missing.append("counters.total_impressions" + (
            f" (several marker rows: {[m['index'] for m in life]}, no device total)"
            if len(life) > 1 else ""))
    out["total_impressions"] = total
    out["source"] = source
    for key, column in (("black", 5), ("color", 7)):
        value = _count(raw.get(meters[key])) if key in meters else None
        if value is None:
            value = _count(totals.get(column))
        if value is not None:
            out[key] = value
    return out, marker_rows


def _count(value: Value | None) -> int | None:
    """A page counter: a whole number >= 0 (a negative one is a wrongly typed object, not
    a reading: the counter is then missing rather than a wrong number)."""
    return value if isinstance(value, int) and value >= 0 else None


def _model(raw: Raw, hr: int, vendor: Vendor | None, sys_descr: str | None) -> str | None:
    sources = vendor.model_sources if vendor else ("prtGeneralPrinterName", "hrDeviceDescr",
                                                   "sysDescr")
    for source in sources:
        if source == "prtGeneralPrinterName":
            value = text_of(raw.get((*mib.PRT_GENERAL, 16, hr)))
        elif source == "hrDeviceDescr":
            value = text_of(raw.get((*mib.HR_DEVICE, 3, hr)))
        elif source == "sysDescr":
            value = sys_descr.split(";")[0].strip() if sys_descr else None
        else:
            oid = vendor.objects.get("model") if vendor else None
            value = text_of(raw.get(oid)) if oid else None
        if value:
            return value
    return None


def interpret(address: str, raw: Raw, vendor: Vendor | None, vendor_name: str | None,
              problems: tuple[str, ...] = (), *, ip: str | None = None,
              dns_name: str | None = None) -> PrinterReading:
    """The reading of the printer at ``address`` (IPv4 ``ip``) from the values read there.

    ``dns_name`` is what a reverse lookup of the address gave (the scan does it).
    """
    missing: list[str] = []
    hr = _printer_index(raw)
    sys_descr = text_of(raw.get(mib.SYS_DESCR))
    oid = raw.get(mib.SYS_OBJECT_ID)
    sys_object_id = mib.format_oid(oid) if isinstance(oid, tuple) else None
    objects = vendor.objects if vendor else {}

    serial = text_of(raw.get((*mib.PRT_GENERAL, 17, hr))) or (
        text_of(raw.get(objects["serial"])) if "serial" in objects else None) or None
    firmware = text_of(raw.get(objects["firmware"])) if "firmware" in objects else None
    if not firmware and sys_descr and ";" in sys_descr:
        firmware = sys_descr.split(";", 1)[1].strip() or None
    mac = _mac(raw)
    model = _model(raw, hr, vendor, sys_descr)
    for key, value in (("model", model), ("serial", serial), ("mac", mac),
                       ("firmware", firmware)):
        if not value:
            missing.append(key)

    alerts = _alerts(raw, hr)
    status = {
        "printer_status": _name(n.PRINTER_STATUS, raw.get((*mib.HR_PRINTER, 1, hr))),
        "device_status": _name(n.DEVICE_STATUS, raw.get((*mib.HR_DEVICE, 5, hr))),
        "detected_errors": _errors(raw.get((*mib.HR_PRINTER, 2, hr))),
        "alerts": [{"severity": a.severity, "code": a.code, "code_name": a.code_name,
                    "description": a.description, "group": a.group,
                    "group_index": a.group_index, "index": a.index} for a in alerts],
    }
    for key in ("printer_status", "device_status", "detected_errors"):
        if status[key] is None:
            missing.append(f"status.{key}")
    counters, markers = _counters(raw, hr, vendor, missing)
    supplies = _supplies(raw, hr, alerts)
    if not supplies:
        missing.append("supplies")
    trays = tuple(TrayReading(index=i, name=text_of(row.get(13)) or text_of(row.get(18)),
                              max_capacity=int_of(row.get(9)), level=int_of(row.get(10)),
                              media=text_of(row.get(12)))
                  for i, row in _mine(mib.table(raw, mib.PRT_INPUT), hr))
    console = tuple(t for _, row in _mine(mib.table(raw, mib.PRT_CONSOLE), hr)
                    if (t := text_of(row.get(2))))
    colorants = [t for _, row in _mine(mib.table(raw, mib.PRT_COLORANT), hr)
                 if (t := text_of(row.get(4)))]
    uptime = int_of(raw.get(mib.SYS_UPTIME))
    net = hostinfo.network(raw, ip, dns_name)
    for key in ("subnet_mask", "gateway"):
        if net[key] is None:
            missing.append(f"network.{key}")
    stored = hostinfo.storage(raw)
    if stored is None:
        missing.append("properties.storage")
    disks, ram = stored if stored is not None else (None, None)
    memory_kb = int_of(raw.get(mib.HR_MEMORY_SIZE))
    properties = {
        "memory_kb": memory_kb if memory_kb is not None else (
            ram // 1024 if ram is not None else None),
        "disks": disks,
        "disk_bytes": sum(d["size_bytes"] or 0 for d in disks) if disks else (
            0 if disks == [] else None),
        "markers": markers,
        "colorants": colorants,
        "color": len(colorants) > 1 if colorants else None,
        "input_trays": len(trays),
        "hr_device_index": hr,
        "hr_device_descr": text_of(raw.get((*mib.HR_DEVICE, 3, hr))),
    }
    return PrinterReading(
        address=address, vendor=vendor.name if vendor else vendor_name, model=model,
        serial=serial, sys_object_id=sys_object_id, mac=mac, firmware=firmware,
        sys_descr=sys_descr, sys_name=text_of(raw.get(mib.SYS_NAME)),
        sys_location=text_of(raw.get(mib.SYS_LOCATION)),
        sys_contact=text_of(raw.get(mib.SYS_CONTACT)),
        uptime_s=uptime // 100 if uptime is not None else None, status=status,
        counters=counters, supplies=supplies, trays=trays, properties=properties,
        console=console, missing=tuple(missing),
        vendor_file=vendor.path.rsplit("/", 1)[-1] if vendor else None, problems=problems,
        network=net)
