"""A manager's payload: one printer's SNMP reading as ``device-data.xml`` in a zip.

The decision (issue 20): a manager's payload is the device payload of
``fixtures/payload.xsd`` (same namespace, same root ``DeviceData``, same zip with one
entry) with an optional ``<Source kind="manager">`` element last, naming the manager
(host name, IP, OS, app version, printers in / out of scope, database size, security
mode), the discovery (date, method, address) and what the printer did not report. What
SNMP cannot give (product code, fault history, transfer history, alert times, supply
class, lifetime impressions, usage, ...) is simply absent: the schema makes those
optional and the server requires them only of payloads *without* ``<Source>``. A value
is never invented to fill a field.

Section by section (objects from :class:`~device_direct.manager.reading.PrinterReading`):

* ``Identity``: Manufacturer = the recognised vendor, Model, Serial (prtGeneralSerial-
  Number or the vendor's object), Firmware/Module ``firmware`` (vendor object or sysDescr);
* ``Network``: MAC (IF-MIB ifPhysAddress), IPv4 = the address it was read at,
  SubnetMask (ipAdEntNetMask / ipAddressPrefix), Gateway (the default route's next
  hop), Hostname (sysName, when shaped like a host name); see
  :mod:`device_direct.manager.hostinfo`;
* ``Properties``: sysName, sysLocation, sysContact, sysDescr, sysObjectID, uptime, the
  printer and device status, detected errors, console lines, input trays, marker data,
  ``dnsName`` (reverse lookup), ``disk.N.*`` and ``disk_bytes`` (hrStorageTable);
* ``Status``: one ``Alert`` per prtAlertTable row (severity and code as Printer-MIB
  numbers, the description as text; no ``raisedAt``: SNMP does not say when);
* ``Counters``: total / black / colour impressions where the printer reports them;
* ``Supplies``: prtMarkerSupplies rows (description, type, unit, capacity, level,
  colorant, the state the reading decided).

Reuses the device's own building blocks: :class:`~device_direct.core.xmlwrite.XmlWriter`
through the core's text writer (privacy scrubbing, XML-safe text), ``pack_zip``,
``format_time``, ``PayloadMeta`` and ``new_upload_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from device_direct.core.payload import (
    NAMESPACE,
    SCHEMA_VERSION,
    PayloadMeta,
    _Writer,
    format_time,
    pack_zip,
)
from device_direct.core.privacy import PrivacyPolicy, TextScrubber
from device_direct.errors import PayloadError
from device_direct.manager import names
from device_direct.manager.reading import PrinterReading

SECURITY_MODES = ("normal", "locked-down")
_SEVERITY = {v: k for k, v in names.ALERT_SEVERITY.items()}
_METERS = (("total_impressions", "total-impressions"), ("black", "black-impressions"),
           ("color", "color-impressions"))


@dataclass(frozen=True, slots=True)
class ManagerIdentity:
    """The ``Source/Manager`` element: who read the printers."""

    hostname: str
    os: str
    app_version: str
    ip: str | None = None
    manager_id: str | None = None
    printers_in_scope: int = 0
    printers_out_of_scope: int = 0
    database_bytes: int = 0
    security_mode: str = "normal"

    def __post_init__(self) -> None:
        if not self.hostname or not self.os or not self.app_version:
            raise PayloadError("manager identity needs hostname, os and app_version")
        if self.security_mode not in SECURITY_MODES:
            raise PayloadError(f"security_mode must be one of {', '.join(SECURITY_MODES)}, "
                               f"got {self.security_mode!r}")
        for name in ("printers_in_scope", "printers_out_of_scope", "database_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PayloadError(f"manager identity {name} must be an integer >= 0")


def _host(address: str) -> str:
    """The IP part of a scan address (``a.b.c.d`` or ``a.b.c.d:port``)."""
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def build_manager_xml(reading: PrinterReading, meta: PayloadMeta, manager: ManagerIdentity,
                      *, read_at: Any, method: str) -> bytes:
    """``device-data.xml`` for one printer's reading (deterministic bytes).

    Raises :class:`PayloadError` when the reading has no serial or model: a printer the
    server cannot identify cannot be reported.
    """
    if not reading.serial or not reading.model:
        raise PayloadError(f"printer at {reading.address}: no "
                           f"{'serial' if not reading.serial else 'model'} was read, so it "
                           "cannot be reported")
    # The manager's IP addresses are reported even locked down (the documents say so);
    # e-mail addresses in device strings (sysContact...) are blanked as on a device.
    w = _Writer(TextScrubber(PrivacyPolicy()).scrub)
    out = w.out
    out.start("DeviceData", [
        ("xmlns", NAMESPACE), ("schemaVersion", str(SCHEMA_VERSION)),
        ("uploadId", meta.upload_id), ("sequence", str(meta.sequence)),
        ("generatedAt", format_time(meta.generated_at, "generated_at")),
        ("trigger", meta.trigger)])
    out.start("Identity")
    if reading.vendor:
        out.leaf("Manufacturer", text=w.text(reading.vendor))
    out.leaf("Model", text=w.text(reading.model))
    out.leaf("Serial", text=w.text(reading.serial))
    if reading.firmware:
        out.start("Firmware")
        out.leaf("Module", [("name", "firmware"), ("version", w.text(reading.firmware))])
        out.end()
    out.end()
    out.start("Network")
    if reading.mac:
        out.leaf("MAC", text=w.text(reading.mac))
    out.leaf("IPv4", text=w.text(_host(reading.address)))
    net = reading.network
    for tag, key in (("SubnetMask", "subnet_mask"), ("Gateway", "gateway"),
                     ("Hostname", "hostname")):
        if net.get(key):
            out.leaf(tag, text=w.text(str(net[key])))
    out.end()
    _properties(w, reading)
    out.start("Status")
    for alert in sorted(reading.status.get("alerts") or (), key=lambda a: a["index"])[:256]:
        severity = _SEVERITY.get(alert.get("severity") or "")
        out.leaf("Alert", [
            ("index", str(alert["index"])),
            ("severity", str(severity) if severity else None),
            ("code", str(alert["code"]) if isinstance(alert.get("code"), int)
             and alert["code"] > 0 else None),
            ("groupIndex", str(alert["group_index"])
             if isinstance(alert.get("group_index"), int) else None),
        ], w.text(alert.get("description") or alert.get("code_name") or ""))
    out.end()
    out.start("Counters")
    for key, name in _METERS:
        value = reading.counters.get(key)
        if isinstance(value, int) and value >= 0:
            out.leaf("Meter", [("name", name)], str(value))
    out.end()
    out.start("Supplies")
    for sup in sorted(reading.supplies, key=lambda s: s.index)[:64]:
        if sup.index < 1:
            continue
        out.leaf("Supply", [
            ("index", str(sup.index)),
            ("name", w.text(sup.description or f"supply {sup.index}")),
            ("type", w.text(sup.type) if sup.type else None),
            ("unit", w.text(sup.unit) if sup.unit else None),
            ("capacity", str(sup.max_capacity) if sup.max_capacity is not None
             and sup.max_capacity >= -3 else None),
            ("level", str(sup.level) if sup.level is not None and sup.level >= -3 else None),
            ("colorant", w.text(sup.colorant) if sup.colorant else None),
            ("status", sup.state)])
    out.end()
    _source(w, reading, manager, read_at=read_at, method=method)
    out.end()
    return out.getvalue()


def _properties(w: _Writer, r: PrinterReading) -> None:
    props: dict[str, str] = {}
    for name, value in (("sysName", r.sys_name), ("sysLocation", r.sys_location),
                        ("sysContact", r.sys_contact), ("sysDescr", r.sys_descr),
                        ("sysObjectID", r.sys_object_id),
                        ("uptimeSeconds", r.uptime_s),
                        ("printerStatus", r.status.get("printer_status")),
                        ("deviceStatus", r.status.get("device_status"))):
        if value is not None and value != "":
            props[name] = str(value)
    errors = r.status.get("detected_errors")
    if errors is not None:
        props["detectedErrors"] = ",".join(errors) or "none"
    for i, line in enumerate(r.console, 1):
        props[f"console.{i}"] = line
    if r.network.get("dns_name"):
        props["dnsName"] = str(r.network["dns_name"])
    for disk in r.properties.get("disks") or ():
        for key, name in (("description", "description"), ("size_bytes", "sizeBytes"),
                          ("used_bytes", "usedBytes")):
            if disk.get(key) is not None:
                props[f"disk.{disk['index']}.{name}"] = str(disk[key])
    for t in r.trays:
        for key, value in (("name", t.name), ("maxCapacity", t.max_capacity),
                           ("level", t.level), ("media", t.media)):
            if value is not None:
                props[f"tray.{t.index}.{key}"] = str(value)
    for key, value in sorted(r.properties.items()):
        if key == "snmp":
            continue  # the credential used: in Source/Discovery@method, not here
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            props[key] = str(value)
    w.out.start("Properties")
    for name in sorted(props)[:512]:
        w.out.leaf("Property", [("name", w.text(name)), ("value", w.text(props[name]))])
    w.out.end()


def _source(w: _Writer, r: PrinterReading, m: ManagerIdentity, *, read_at: Any,
            method: str) -> None:
    out = w.out
    out.start("Source", [("kind", "manager")])
    out.leaf("Manager", [
        ("id", w.text(m.manager_id) if m.manager_id else None),
        ("hostname", w.text(m.hostname)), ("ip", w.text(m.ip) if m.ip else None),
        ("os", w.text(m.os)), ("appVersion", w.text(m.app_version)),
        ("printersInScope", str(m.printers_in_scope)),
        ("printersOutOfScope", str(m.printers_out_of_scope)),
        ("databaseBytes", str(m.database_bytes)), ("securityMode", m.security_mode)])
    out.leaf("Discovery", [("at", format_time(read_at, "read_at")), ("method", method),
                           ("address", w.text(r.address))])
    for item in r.missing[:256]:
        out.leaf("Missing", text=w.text(item))
    out.end()


def build_manager_payload(reading: PrinterReading, meta: PayloadMeta,
                          manager: ManagerIdentity, *, read_at: Any, method: str) -> bytes:
    """The zip to upload for one printer (``pack_zip`` of :func:`build_manager_xml`)."""
    return pack_zip(build_manager_xml(reading, meta, manager, read_at=read_at, method=method))


def reading_from_json(data: dict[str, Any]) -> PrinterReading:
    """A :class:`PrinterReading` back from its ``to_json()`` form (stored readings)."""
    from device_direct.manager.reading import AlertReading, SupplyReading, TrayReading

    _ = AlertReading
    return PrinterReading(**{
        **data,
        "supplies": tuple(SupplyReading(**s) for s in data.get("supplies", ())),
        "trays": tuple(TrayReading(**t) for t in data.get("trays", ())),
        "console": tuple(data.get("console", ())),
        "missing": tuple(data.get("missing", ())),
        "problems": tuple(data.get("problems", ())),
    })
