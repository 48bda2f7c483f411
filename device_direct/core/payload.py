"""Building and reading the upload payload: ``device-data.xml`` in a zip.

The XML follows ``fixtures/payload.xsd`` (namespace ``urn:device-direct:payload:1``).
Building is deterministic - the same snapshot, meta and policy give the same bytes - so
a payload can be rebuilt and compared, and the fleet replays exactly:

* every list is put in an explicit order (modules and properties by name, alerts and
  supplies by index, HFSI and NVM by id, faults newest first, transfers and jobs oldest
  first) and cut to the schema's limit (at most 40 faults, the last 100 transfers, ...);
* attributes are written in a fixed order, times as UTC ``...Z``;
* text is stripped of characters XML 1.0 cannot carry and cut to 256 characters;
* the zip has one entry with a fixed timestamp (1980-01-01), fixed attributes and
  deflate at a fixed level.

A device keeps a :class:`PayloadCache`: its next payload writes again, as they were, the
parts whose data did not change since (the same bytes as a build without it).

What may appear at all is decided by :mod:`.privacy`. Values the schema cannot express
(a negative meter, a malformed chain-link code) raise :class:`PayloadError` naming the
field: sending data the server will reject with 4xx helps nobody.

stdlib only: the device module must not depend on lxml (tests validate with it).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Literal, get_args

from device_direct.core.privacy import PrivacyPolicy, TextScrubber
from device_direct.core.upload_id import is_upload_id as is_upload_id
from device_direct.core.upload_id import new_upload_id as new_upload_id
from device_direct.core.xmlwrite import XmlWriter, attr_value, plain, text_value
from device_direct.errors import PayloadError
from device_direct.model import CHAIN_LINK, Counters, DeviceSnapshot

if TYPE_CHECKING:
    # At run time ElementTree and zipfile are imported by the functions that build or
    # read a payload: an idle agent (which only holds the values defined here) should
    # not pay for them at every start.
    pass

NAMESPACE = "urn:device-direct:payload:1"
SCHEMA_VERSION = 1
ENTRY_NAME = "device-data.xml"
MAX_TEXT = 256
MAX_FAULTS = 40
MAX_TRANSFERS = 100
MAX_MODULES = 64
MAX_OPTIONS = 256
MAX_PROPERTIES = 512
MAX_ALERTS = 256
MAX_SUPPLIES = 64
MAX_HFSI = 256
MAX_NVM = 1024
MAX_JOBS = 1000
DEFAULT_MAX_XML_BYTES = 4 << 20

Trigger = Literal["scheduled", "on-demand", "action"]
TransferResult = Literal["stored", "duplicate", "rejected", "failed", "dropped"]
TRIGGERS: tuple[str, ...] = get_args(Trigger)
TRANSFER_RESULTS: tuple[str, ...] = get_args(TransferResult)

# The complement of the XML 1.0 Char production (#x9 | #xA | #xD | [#x20-#xD7FF] |
# [#xE000-#xFFFD] | [#x10000-#x10FFFF]): anything here makes the document unreadable.
# Written as the short complement because compiling the long negated class costs
# several milliseconds at every start.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o100644 << 16  # regular file, rw-r--r--
_ZIP_LEVEL = 6


def _require_aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise PayloadError(f"{what} must be an aware datetime, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PayloadMeta:
    """Root attributes of one payload; fixed when it is built, kept across retries."""

    upload_id: str
    sequence: int
    generated_at: datetime
    trigger: Trigger = "scheduled"

    def __post_init__(self) -> None:
        if not is_upload_id(self.upload_id):
            raise PayloadError(f"upload_id must be a lower-case UUID, got {self.upload_id!r}")
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int):
            raise PayloadError(f"sequence must be an integer, got {self.sequence!r}")
        if self.sequence < 0:
            raise PayloadError(f"sequence must be >= 0, got {self.sequence}")
        _require_aware(self.generated_at, "generated_at")
        if self.trigger not in TRIGGERS:
            raise PayloadError(
                f"trigger must be one of {', '.join(TRIGGERS)}, got {self.trigger!r}"
            )


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One line of the transfer history reported in the next payloads."""

    at: datetime
    result: TransferResult
    bytes: int
    upload_id: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        _require_aware(self.at, "TransferRecord.at")
        if self.result not in TRANSFER_RESULTS:
            raise PayloadError(
                f"TransferRecord.result must be one of {', '.join(TRANSFER_RESULTS)}, "
                f"got {self.result!r}"
            )
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 0:
            raise PayloadError(f"TransferRecord.bytes must be an integer >= 0, got {self.bytes!r}")
        if self.upload_id is not None and not is_upload_id(self.upload_id):
            raise PayloadError(f"TransferRecord.upload_id is not a UUID: {self.upload_id!r}")
        if not isinstance(self.detail, str):
            raise PayloadError(f"TransferRecord.detail must be a string, got {self.detail!r}")


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """How the upload reaches the server: ``DIRECT`` or ``PROXY host:port``, and why."""

    route: str
    source: str  # off | manual | env | wpad-dhcp | wpad-dns | pac

    def __post_init__(self) -> None:
        if not self.route or not self.source:
            raise PayloadError("ProxyRoute needs a route and a source")


# -- XML building ------------------------------------------------------------------------


def format_time(value: datetime, what: str = "time", subject: object = None) -> str:
    """xs:dateTime in UTC with a ``Z``; microseconds only when present.

    ``what`` names the value in the error (``subject`` fills its ``{}``)."""
    if type(value) is datetime and value.tzinfo is UTC:  # the usual case, quickly
        return value.isoformat()[:-6] + "Z"
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise PayloadError(f"{_what(what, subject)} must be an aware datetime, got {value!r}")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat() of a UTC time ends in "+00:00" and shows microseconds only when set
    return value.isoformat()[:-6] + "Z"


def _clean(text: str, limit: int | None = MAX_TEXT) -> str:
    if not (text.isascii() and text.isprintable()):  # printable ASCII is always XML
        text = _NOT_XML_CHAR.sub("", text)
    return text[:limit] if limit is not None else text


# The checks below name the value in their error as ``what``, whose ``{}`` the
# ``subject`` fills (the supply's index, the fault's code): formatted only for the error,
# not for each of the few hundred values of every payload that is fine.


def _what(what: str, subject: object) -> str:
    return what if subject is None else what.format(subject)


def _nonneg(value: int, what: str, subject: object = None) -> str:
    if type(value) is int and value >= 0:  # the usual case, quickly
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{_what(what, subject)} must be an integer >= 0, got {value!r}")
    return str(value)


def _positive(value: int, what: str, subject: object = None) -> str:
    if type(value) is int and value >= 1:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PayloadError(f"{_what(what, subject)} must be an integer >= 1, got {value!r}")
    return str(value)


def _integer(value: int, what: str, subject: object = None, minimum: int | None = None) -> str:
    if type(value) is int and (minimum is None or value >= minimum):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{_what(what, subject)} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise PayloadError(f"{_what(what, subject)} must be >= {minimum}, got {value}")
    return str(value)


def _chain_link(value: str, what: str) -> str:
    if not isinstance(value, str) or not CHAIN_LINK.match(value):
        raise PayloadError(f"{what} must be a chain-link code NNN-NNN, got {value!r}")
    return value


def _bool(value: bool) -> str:
    return "true" if value else "false"


class _Writer:
    """The XML writer plus the text scrubber: ``text()`` is what every free text goes
    through (personal data blanked, characters XML cannot carry dropped); ``attr()``
    and ``etext()`` give the same, escaped for an attribute or element text, for the
    elements the sections format themselves (:meth:`XmlWriter.markup`)."""

    __slots__ = ("_attr", "_done", "_etext", "_plain", "_scrub", "all_plain", "out", "slow")

    def __init__(self, scrub: Callable[[str], str],
                 unchanged: frozenset[str] = frozenset(), all_unchanged: bool = False) -> None:
        """``unchanged``: texts that ``scrub`` returns as they are (the scrubber's
        ``unchanged``); those that cleaning and escaping leave as they are too are
        written without either (most of a payload's texts). ``all_unchanged``: every
        free text of the snapshot is in ``unchanged``."""
        self._scrub = scrub
        self._plain = plain(unchanged, MAX_TEXT)
        #: Every free text of the snapshot is written as it is: a section made only of
        #: them depends on its data alone (see :class:`PayloadCache`).
        self.all_plain = all_unchanged and self._plain is unchanged
        self.slow = 0  # texts written that were not plain: cleaned, scrubbed, escaped
        self._done: dict[str, str] = {}  # a payload repeats many strings ("ok", "toner")
        self._attr: dict[str, str] = {}
        self._etext: dict[str, str] = {}
        self.out = XmlWriter()

    def text(self, value: str) -> str:
        if value in self._plain:
            return value
        self.slow += 1
        done = self._done.get(value)
        if done is None:
            done = self._done[value] = _clean(self._scrub(value))
        return done

    def attr(self, value: str) -> str:
        if value in self._plain:
            return value
        self.slow += 1
        done = self._attr.get(value)
        if done is None:
            done = self._attr[value] = attr_value(self.text(value))
        return done

    def etext(self, value: str) -> str:
        if value in self._plain:
            return value
        self.slow += 1
        done = self._etext.get(value)
        if done is None:
            done = self._etext[value] = text_value(self.text(value))
        return done


def _element(tag: str, attrs: str, text: str) -> str:
    """``<tag attrs>text</tag>``, or ``<tag attrs />`` without text (as ElementTree);
    ``attrs`` and ``text`` escaped already, ``attrs`` empty or starting with a space.
    ``text`` may be markup: the element's children."""
    return f"<{tag}{attrs}>{text}</{tag}>" if text else f"<{tag}{attrs} />"


def _opt(name: str, value: str | None) -> str:
    """An optional attribute, escaped: `` name="value"``, or nothing for None."""
    return "" if value is None else f' {name}="{attr_value(value)}"'


class PayloadCache:
    """What one device's earlier payloads wrote for the parts that seldom change, so
    that the next payload writes again only what changed since: the identity, network,
    properties, alerts, fault history and NVM settings, each kept with the data it was
    written from and used again while the snapshot's data for it is equal; and each
    transfer record's line (a record never changes).

    A part is kept, and used again, only while every free text of the snapshot is
    written as it is (nothing in them for the privacy rules to blank), and only if it
    was written without a text being cleaned, scrubbed or escaped: it is then its data's
    alone, byte for byte what a build without the cache writes. A transfer with a detail
    text is never kept. One per device; :func:`build_xml` reads and refreshes it.
    """

    __slots__ = ("_parts", "_transfers")

    def __init__(self) -> None:
        self._parts: dict[str, tuple[object, str]] = {}
        self._transfers: dict[int, tuple[TransferRecord, str]] = {}

    def _get(self, w: _Writer, name: str, key: object) -> str | None:
        kept = self._parts.get(name)
        return kept[1] if kept is not None and w.all_plain and kept[0] == key else None

    def _put(self, w: _Writer, name: str, key: object, markup: str, slow: int) -> None:
        if w.all_plain and w.slow == slow:
            self._parts[name] = (key, markup)
        else:
            self._parts.pop(name, None)


def _section(w: _Writer, cache: PayloadCache | None, name: str, key: object,
             write: Callable[[], None]) -> None:
    """``write()`` a whole section, or the markup it wrote last time from ``cache``."""
    if cache is None:
        write()
        return
    kept = cache._get(w, name, key)
    if kept is not None:
        w.out.markup(kept)
        return
    mark, slow = w.out.mark(), w.slow
    write()
    cache._put(w, name, key, w.out.since(mark), slow)


def _part(w: _Writer, cache: PayloadCache | None, name: str, key: object,
          build: Callable[[], str]) -> str:
    """``build()`` a piece of a section's markup, or the one it built last time."""
    if cache is None:
        return build()
    kept = cache._get(w, name, key)
    if kept is not None:
        return kept
    slow = w.slow
    markup = build()
    cache._put(w, name, key, markup, slow)
    return markup


_METERS: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.name.replace("_", "-")) for f in fields(Counters)
)


def build_xml(
    snapshot: DeviceSnapshot,
    meta: PayloadMeta,
    *,
    policy: PrivacyPolicy,
    transfer_history: Sequence[TransferRecord] = (),
    proxy: ProxyRoute | None = None,
    engineering_log: str | None = None,
    cache: PayloadCache | None = None,
) -> bytes:
    """Build ``device-data.xml`` for ``snapshot`` (deterministic UTF-8 bytes).

    ``engineering_log`` is only written with ``policy.send_engineering``; the job log
    only with ``policy.send_job_data``. ``cache``: the device's :class:`PayloadCache`,
    whose kept parts are written again where the data is unchanged (the same bytes; a
    kept part is not checked again: the snapshot it was written from was). Raises
    :class:`PayloadError` naming a field the schema cannot express.
    """
    if not isinstance(snapshot, DeviceSnapshot):
        raise PayloadError(f"expected a DeviceSnapshot, got {type(snapshot).__name__}")
    scrubber = TextScrubber(policy, snapshot.jobs, texts=_free_texts(snapshot, proxy))
    w = _Writer(scrubber.scrub, scrubber.unchanged, scrubber.all_unchanged)
    # Unqualified tags plus an explicit xmlns: ElementTree's default_namespace option
    # refuses unqualified attributes, and this keeps the output byte-for-byte simple.
    w.out.start(
        "DeviceData",
        [
            ("xmlns", NAMESPACE),
            ("schemaVersion", str(SCHEMA_VERSION)),
            ("uploadId", meta.upload_id),
            ("sequence", str(meta.sequence)),
            ("generatedAt", format_time(meta.generated_at, "generated_at")),
            ("trigger", meta.trigger),
        ],
    )
    firmware = snapshot.firmware
    _section(w, cache, "identity",
             (snapshot.identity, firmware.active, firmware.running_version),
             lambda: _identity(w, snapshot))
    _section(w, cache, "network", (snapshot.network, policy.sends_ip_addresses, proxy),
             lambda: _network(w, snapshot, policy, proxy))
    _section(w, cache, "properties", snapshot.properties, lambda: _properties(w, snapshot))
    _status(w, snapshot, transfer_history, cache)
    _counters(w, snapshot.counters)
    _supplies(w, snapshot)
    _usage(w, snapshot, policy, cache)
    if policy.send_engineering and engineering_log is not None:
        w.out.leaf("Engineering", text=_clean(scrubber.scrub(engineering_log), limit=None))
    w.out.end()
    return w.out.getvalue()


def _free_texts(s: DeviceSnapshot, proxy: ProxyRoute | None) -> list[str]:
    """The snapshot's texts that the payload scrubs (most of them; any left out are
    scrubbed all the same, only more slowly)."""
    ident, net = s.identity, s.network
    texts = [ident.manufacturer, ident.model, ident.serial, ident.product_code,
             s.firmware.active, net.mac, net.ipv4, net.subnet_mask, net.gateway,
             net.hostname, *ident.firmware.keys(), *ident.firmware.values(),
             *ident.installed_options]
    if proxy is not None:
        texts += (proxy.route, proxy.source)
    texts += chain.from_iterable(map(_PROPERTY_TEXTS, s.properties))
    texts += map(_ALERT_TEXT, s.alerts)
    texts += chain.from_iterable(map(_FAULT_TEXTS, s.faults))
    texts += chain.from_iterable(map(_SUPPLY_TEXTS, s.supplies))
    texts += chain.from_iterable(map(_HFSI_TEXTS, s.hfsi))
    texts += map(_NVM_TEXT, s.nvm)
    return texts


_PROPERTY_TEXTS = attrgetter("name", "value")
_ALERT_TEXT = attrgetter("description")
_FAULT_TEXTS = attrgetter("subsystem", "description")
_SUPPLY_TEXTS = attrgetter("name", "type", "unit", "colorant", "status", "serial", "part_number")
_HFSI_TEXTS = attrgetter("name", "rule")
_NVM_TEXT = attrgetter("name")


def _identity(w: _Writer, s: DeviceSnapshot) -> None:
    ident, out = s.identity, w.out
    out.start("Identity")
    out.leaf("Manufacturer", text=w.text(ident.manufacturer))
    out.leaf("Model", text=w.text(ident.model))
    out.leaf("Serial", text=w.text(ident.serial))
    out.leaf("ProductCode", text=w.text(ident.product_code))
    out.start("Firmware", [("activeBank", w.text(s.firmware.active))])
    modules = sorted(ident.firmware.items()) or [("system", s.firmware.running_version)]
    out.markup("".join([f'<Module name="{w.attr(name)}" version="{w.attr(version)}" />'
                        for name, version in modules[:MAX_MODULES]]))
    out.end()
    out.start("Options")
    out.markup("".join([_element("Option", "", w.etext(option))
                        for option in ident.installed_options[:MAX_OPTIONS]]))
    out.end()
    if ident.install_date is not None:
        if not isinstance(ident.install_date, date):
            raise PayloadError(f"identity.install_date must be a date, got {ident.install_date!r}")
        # An ISO date (digits and dashes) holds no personal data and nothing to escape:
        # through the scrubber it would cost every payload a search for the day's names.
        out.leaf("InstallDate", text=ident.install_date.isoformat()[:10])
    out.end()


def _network(
    w: _Writer,
    s: DeviceSnapshot,
    policy: PrivacyPolicy,
    proxy: ProxyRoute | None,
) -> None:
    net, out = s.network, w.out
    out.start("Network")
    out.leaf("MAC", text=w.text(net.mac))
    if policy.sends_ip_addresses:
        for tag, value in (
            ("IPv4", net.ipv4),
            ("SubnetMask", net.subnet_mask),
            ("Gateway", net.gateway),
            ("Hostname", net.hostname),
        ):
            if value:
                out.leaf(tag, text=w.text(value))
    if proxy is not None:
        out.leaf("Proxy", [("route", w.text(proxy.route)), ("source", w.text(proxy.source))])
    out.end()


def _properties(w: _Writer, s: DeviceSnapshot) -> None:
    out = w.out
    out.start("Properties")
    ordered = sorted(s.properties, key=lambda p: (p.name, p.value))
    out.markup("".join([f'<Property name="{w.attr(p.name)}" value="{w.attr(p.value)}" />'
                        for p in ordered[:MAX_PROPERTIES]]))
    out.end()


def _status(w: _Writer, s: DeviceSnapshot, history: Sequence[TransferRecord],
            cache: PayloadCache | None) -> None:
    out = w.out
    out.start("Status", [("power", s.power.value)])
    out.markup(_part(w, cache, "alerts", s.alerts, lambda: _alerts(w, s))
               + _part(w, cache, "faults", s.faults, lambda: _fault_history(w, s))
               + _transfer_history(w, history, cache))
    out.end()


def _alerts(w: _Writer, s: DeviceSnapshot) -> str:
    parts: list[str] = []
    for alert in sorted(s.alerts, key=lambda a: a.index)[:MAX_ALERTS]:
        text = w.etext(alert.description)
        parts.append(_element(
            "Alert",
            f' index="{_positive(alert.index, "alert.index")}"'
            f' severity="{_positive(alert.severity.value, "alert.severity")}"'
            f' code="{_positive(alert.code, "alert {} code", alert.index)}"'
            f' group="{_positive(alert.group, "alert {} group", alert.index)}"'
            f' groupIndex="{_integer(alert.group_index, "alert {} group_index", alert.index)}"'
            f' location="{_integer(alert.location, "alert {} location", alert.index)}"'
            f' raisedAt="{format_time(alert.raised_at, "alert {} raised_at", alert.index)}"',
            text,
        ))
    return "".join(parts)


def _fault_history(w: _Writer, s: DeviceSnapshot) -> str:
    faults: list[str] = []
    # Newest first; the stable sort keeps the model's order among equal times.
    newest = sorted(s.faults, key=lambda f: _require_aware(f.at, "fault.at"), reverse=True)
    for fault in newest[:MAX_FAULTS]:
        text = w.etext(fault.description)
        faults.append(_element(
            "Fault",
            f' code="{attr_value(_chain_link(fault.code, "fault.code"))}"'
            f' subsystem="{w.attr(fault.subsystem)}"'
            f' at="{format_time(fault.at, "fault.at")}"'
            f' impressions="{_nonneg(fault.impressions, "fault {} impressions", fault.code)}"'
            f' stopsMachine="{_bool(fault.stops_machine)}"',
            text,
        ))
    return _element("FaultHistory", "", "".join(faults))


def _transfer_history(w: _Writer, history: Sequence[TransferRecord],
                      cache: PayloadCache | None) -> str:
    kept = cache._transfers if cache is not None else {}
    keep: dict[int, tuple[TransferRecord, str]] = {}
    transfers: list[str] = []
    for rec in list(history)[-MAX_TRANSFERS:]:
        hit = kept.get(id(rec))
        if hit is not None and hit[0] is rec:
            line = hit[1]
        else:
            line = (f'<Transfer at="{format_time(rec.at, "transfer.at")}"'
                    f' result="{attr_value(rec.result)}"'
                    f' bytes="{_nonneg(rec.bytes, "transfer.bytes")}"'
                    f'{_opt("uploadId", rec.upload_id)}'
                    f'{_opt("detail", w.text(rec.detail) if rec.detail else None)} />')
        if cache is not None and not rec.detail:  # a detail is scrubbed: not kept
            keep[id(rec)] = (rec, line)
        transfers.append(line)
    if cache is not None:
        cache._transfers = keep
    return _element("TransferHistory", "", "".join(transfers))


def _counters(w: _Writer, counters: Counters) -> None:
    out = w.out
    out.start("Counters")
    out.markup("".join([
        f'<Meter name="{name}">{_nonneg(getattr(counters, attr), "counters.{}", attr)}</Meter>'
        for attr, name in _METERS]))
    out.end()


def _supplies(w: _Writer, s: DeviceSnapshot) -> None:
    out = w.out
    out.start("Supplies")
    parts: list[str] = []
    for sup in sorted(s.supplies, key=lambda x: x.index)[:MAX_SUPPLIES]:
        parts.append(
            f'<Supply index="{_positive(sup.index, "supply.index")}"'
            f' name="{w.attr(sup.name)}" type="{w.attr(sup.type)}" unit="{w.attr(sup.unit)}"'
            f' capacity="{_integer(sup.capacity, "supply {} capacity", sup.index, minimum=-3)}"'
            f' level="{_integer(sup.level, "supply {} level", sup.index, minimum=-3)}"'
            + (f' colorant="{w.attr(sup.colorant)}"' if sup.colorant else "")
            + f' class="{_positive(sup.supply_class, "supply {} supply_class", sup.index)}"'
            f' status="{w.attr(sup.status)}"'
            + (f' serial="{w.attr(sup.serial)}"' if sup.serial else "")
            + (f' partNumber="{w.attr(sup.part_number)}"' if sup.part_number else "")
            + " lifetimeImpressions="
            f'"{_nonneg(sup.lifetime_impressions, "supply {} lifetime_impressions", sup.index)}"'
            + (' installedAt='
               f'"{format_time(sup.installed_at, "supply {} installed_at", sup.index)}"'
               if sup.installed_at is not None else "")
            + " />")
    out.markup("".join(parts))
    out.end()


def _usage(w: _Writer, s: DeviceSnapshot, policy: PrivacyPolicy,
           cache: PayloadCache | None) -> None:
    out = w.out
    out.start("Usage")
    parts: list[str] = []
    for item in sorted(s.hfsi, key=lambda h: h.id)[:MAX_HFSI]:
        parts.append(
            f'<Hfsi id="{attr_value(_chain_link(item.id, "hfsi.id"))}"'
            f' name="{w.attr(item.name)}"'
            f' count="{_nonneg(item.count, "hfsi {} count", item.id)}"'
            f' life="{_positive(item.life, "hfsi {} life", item.id)}"'
            f' maximum="{_positive(item.maximum, "hfsi {} maximum", item.id)}"'
            f' rule="{w.attr(item.rule)}"'
            f' replacements="{_nonneg(item.replacements, "hfsi {} replacements", item.id)}"'
            + (' lastReplacedAt='
               f'"{format_time(item.last_replaced_at, "hfsi {} last_replaced_at", item.id)}"'
               if item.last_replaced_at is not None else "")
            + " />")
    parts.append(_part(w, cache, "nvm", s.nvm, lambda: _nvm(w, s)))
    out.markup("".join(parts))
    if policy.send_job_data:  # personal data: otherwise the whole JobLog stays out
        out.start("JobLog")
        jobs = sorted(s.jobs, key=lambda j: _require_aware(j.at, "job.at"))
        out.markup("".join([
            f'<Job kind="{attr_value(job.kind.value)}" at="{format_time(job.at, "job.at")}"'
            f' pages="{_nonneg(job.pages, "job.pages")}"'
            f' impressions="{_nonneg(job.impressions, "job.impressions")}"'
            f'{_opt("user", _clean(job.user) if job.user else None)}'
            f'{_opt("jobName", _clean(job.job_name) if job.job_name else None)}'
            f'{_opt("email", _clean(job.email) if job.email else None)} />'
            for job in jobs[-MAX_JOBS:]]))
        out.end()
    out.end()


def _nvm(w: _Writer, s: DeviceSnapshot) -> str:
    return "".join([
        f'<Nvm id="{attr_value(_chain_link(nvm.id, "nvm.id"))}"'
        f' name="{w.attr(nvm.name)}"'
        f' value="{_integer(nvm.value, "nvm {} value", nvm.id)}"'
        f' default="{_integer(nvm.default, "nvm {} default", nvm.id)}"'
        f' min="{_integer(nvm.minimum, "nvm {} minimum", nvm.id)}"'
        f' max="{_integer(nvm.maximum, "nvm {} maximum", nvm.id)}"'
        f' protected="{_bool(nvm.protected)}" />'
        for nvm in sorted(s.nvm, key=lambda n: n.id)[:MAX_NVM]])


# -- zip ----------------------------------------------------------------------------------


# The zip pack_zip writes, field by field (APPNOTE 4.3.7, 4.3.12, 4.3.16): what
# zipfile.ZipFile.writestr writes for the one entry, without building a ZipFile, a
# ZipInfo and a BytesIO for each payload. Version 2.0 (deflate) to extract and made by
# 2.0 on Unix (3); no flags (the sizes are in the local header: no data descriptor);
# DOS time 0:00:00, date 1980-01-01; no extra fields, no comments.
_ZIP_LOCAL = struct.Struct("<4sBBHHHHIIIHH")
_ZIP_CENTRAL = struct.Struct("<4sBBBBHHHHIIIHHHHHII")
_ZIP_END = struct.Struct("<4sHHHHIIH")
_ZIP_DOS_DATE = (_ZIP_DATE[0] - 1980) << 9 | _ZIP_DATE[1] << 5 | _ZIP_DATE[2]
_ZIP_DOS_TIME = _ZIP_DATE[3] << 11 | _ZIP_DATE[4] << 5 | _ZIP_DATE[5] // 2
# Entries this big take zipfile's own path, which adds the ZIP64 fields they need
# (zipfile switches at 1.05 x the entry size > 2 GiB - 1; a payload is a few KiB).
_ZIP_DIRECT_LIMIT = 1 << 30
_ZIP_DEFLATED = 8  # compression method (zipfile.ZIP_DEFLATED)


def pack_zip(xml: bytes) -> bytes:
    """Wrap ``xml`` in a deterministic zip with the single entry ``device-data.xml``.

    The bytes are those ``zipfile.ZipFile.writestr`` writes for the entry
    (``tests/device_direct/core/test_core_payload_bytes.py`` holds them to it), assembled
    directly: ``zlib`` does the deflating and the checksum, ``struct`` the headers.
    """
    if not isinstance(xml, bytes):
        raise PayloadError(f"pack_zip needs bytes, got {type(xml).__name__}")
    if len(xml) >= _ZIP_DIRECT_LIMIT:
        return pack_zip_zipfile(xml)
    deflate = zlib.compressobj(_ZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = deflate.compress(xml) + deflate.flush()
    crc, size, packed = zlib.crc32(xml), len(xml), len(data)
    name = _ENTRY_BYTES
    local = _ZIP_LOCAL.pack(b"PK\x03\x04", 20, 0, 0, _ZIP_DEFLATED, _ZIP_DOS_TIME,
                            _ZIP_DOS_DATE, crc, packed, size, len(name), 0)
    central = _ZIP_CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, _ZIP_DEFLATED,
                                _ZIP_DOS_TIME, _ZIP_DOS_DATE, crc, packed, size, len(name),
                                0, 0, 0, 0, _ZIP_MODE, 0)
    directory_at = len(local) + len(name) + packed
    end = _ZIP_END.pack(b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), directory_at, 0)
    return b"".join((local, name, data, central, name, end))


def pack_zip_zipfile(xml: bytes) -> bytes:
    """:func:`pack_zip` by ``zipfile`` itself: the reference its bytes are held to, and
    the path for an entry big enough to need ZIP64 fields."""
    import zipfile

    if not isinstance(xml, bytes):
        raise PayloadError(f"pack_zip needs bytes, got {type(xml).__name__}")
    info = zipfile.ZipInfo(ENTRY_NAME, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, whatever platform built it
    info.external_attr = _ZIP_MODE
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, xml, compress_type=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL)
    return buf.getvalue()


def read_payload(data: bytes, *, max_xml_bytes: int = DEFAULT_MAX_XML_BYTES) -> bytes:
    """Read ``device-data.xml`` back out of a payload zip and check its root element.

    Raises :class:`PayloadError` saying what is wrong: not a zip, missing or extra
    entries, an entry bigger than ``max_xml_bytes``, a failed checksum, or XML that is
    not a ``DeviceData`` document.
    """
    return read_payload_id(data, max_xml_bytes=max_xml_bytes)[0]


def read_payload_id(
    data: bytes, *, max_xml_bytes: int = DEFAULT_MAX_XML_BYTES
) -> tuple[bytes, str]:
    """:func:`read_payload`, plus the root's ``uploadId``, from one parse of the XML."""
    import xml.etree.ElementTree as ET
    import zipfile

    if not isinstance(data, bytes | bytearray | memoryview):
        raise PayloadError(f"payload must be bytes, got {type(data).__name__}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError) as exc:
        # NotImplementedError: an entry claims a zip version newer than zipfile reads.
        raise PayloadError(f"payload is not a zip archive ({exc})") from exc
    with zf:
        names = zf.namelist()
        if names != [ENTRY_NAME]:
            raise PayloadError(f"payload zip must hold exactly '{ENTRY_NAME}', found {names!r}")
        info = zf.getinfo(ENTRY_NAME)
        if info.file_size > max_xml_bytes:
            raise PayloadError(
                f"'{ENTRY_NAME}' is {info.file_size} bytes, more than the limit of {max_xml_bytes}"
            )
        try:
            with zf.open(info) as entry:
                # The header's size can lie (zip bomb): never read past the limit.
                xml = entry.read(max_xml_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError,
                NotImplementedError) as exc:
            # RuntimeError: encrypted entry; NotImplementedError: unknown compression.
            raise PayloadError(f"'{ENTRY_NAME}' cannot be decompressed: {exc}") from exc
    if len(xml) > max_xml_bytes:
        raise PayloadError(f"'{ENTRY_NAME}' is larger than the limit of {max_xml_bytes} bytes")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise PayloadError(f"'{ENTRY_NAME}' is not well-formed XML: {exc}") from exc
    if root.tag != f"{{{NAMESPACE}}}DeviceData":
        raise PayloadError(
            f"'{ENTRY_NAME}' root is {root.tag!r}, expected DeviceData in {NAMESPACE}"
        )
    value = root.get("uploadId", "")
    if not is_upload_id(value):
        raise PayloadError(f"'{ENTRY_NAME}' has no valid uploadId attribute (got {value!r})")
    return xml, value


_HEAD_BYTES = 4096
# What pack_zip writes: one local file header (PK\3\4) for the deflated entry, and an
# end-of-central-directory record without a comment as the last 22 bytes.
_LOCAL_HEADER = struct.Struct("<4s2xHH4x4x4x4xHH")  # signature, flags, method, lengths
_END_RECORD = struct.Struct("<4s4xHH4x4xH")  # signature, entries (disk, total), comment
_ENTRY_BYTES = ENTRY_NAME.encode("ascii")
_ROOT_START = re.compile(
    rb'<\?xml [^<>]*\?>\n<DeviceData xmlns="' + re.escape(NAMESPACE.encode("ascii"))
    + rb'"[^<>]* uploadId="([0-9a-f-]{36})"[^<>]*>')


def read_payload_head_id(data: bytes) -> str:
    """The ``uploadId`` of a payload zip, from the root start tag alone.

    For a payload this process has just built (the outbox checks that the file and its
    metadata agree): the zip's layout and the ``DeviceData`` root are checked, but only
    the first few KiB are inflated and parsed. :func:`read_payload_id` is the full check
    for payloads read back from storage.

    A zip laid out exactly as :func:`pack_zip` lays it out, whose XML starts as
    :func:`build_xml` starts it, is read straight from its bytes (a few microseconds);
    anything else goes through ``zipfile`` and an XML parser, which say what is wrong.
    """
    fast = _own_payload_head_id(data)
    if fast is not None:
        return fast
    import xml.etree.ElementTree as ET
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
            if zf.namelist() != [ENTRY_NAME]:
                raise PayloadError(
                    f"payload zip must hold exactly '{ENTRY_NAME}', found {zf.namelist()!r}")
            with zf.open(ENTRY_NAME) as entry:
                head = entry.read(_HEAD_BYTES)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError) as exc:
        raise PayloadError(f"payload is not a zip archive, or cannot be read ({exc})") from exc
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start",))
    root: ET.Element | None = None
    try:
        # Small pieces: the root tag is in the first few hundred bytes, and feeding the
        # parser more than that builds elements nobody looks at.
        for start in range(0, len(head), 256):
            parser.feed(head[start:start + 256])
            for event in parser.read_events():
                element: object = event[-1]
                if isinstance(element, ET.Element):
                    root = element
                    break
            if root is not None:
                break
    except ET.ParseError as exc:
        raise PayloadError(f"'{ENTRY_NAME}' is not well-formed XML: {exc}") from exc
    if root is None or root.tag != f"{{{NAMESPACE}}}DeviceData":
        raise PayloadError(f"'{ENTRY_NAME}' does not start with DeviceData in {NAMESPACE}")
    value = str(root.get("uploadId", ""))
    if not is_upload_id(value):
        raise PayloadError(f"'{ENTRY_NAME}' has no valid uploadId attribute (got {value!r})")
    return value


def _own_payload_head_id(data: bytes) -> str | None:
    """The uploadId when ``data`` is laid out as this module writes payloads, else None."""
    if not isinstance(data, bytes) or len(data) < _LOCAL_HEADER.size + _END_RECORD.size:
        return None
    signature, flags, method, name_len, extra_len = _LOCAL_HEADER.unpack_from(data)
    end_signature, disk_entries, entries, comment_len = _END_RECORD.unpack_from(
        data, len(data) - _END_RECORD.size)
    start = _LOCAL_HEADER.size + name_len + extra_len
    if (signature != b"PK\x03\x04" or method != 8 or flags & 1 or end_signature != b"PK\x05\x06"
            or (disk_entries, entries, comment_len) != (1, 1, 0)
            or data[_LOCAL_HEADER.size:_LOCAL_HEADER.size + name_len] != _ENTRY_BYTES):
        return None
    try:
        head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:start + 1024], 512)
    except zlib.error:
        return None
    match = _ROOT_START.match(head)
    if match is None:
        return None
    value = match.group(1).decode("ascii")
    return value if is_upload_id(value) else None


def payload_upload_id(xml: bytes) -> str:
    """The ``uploadId`` attribute of a payload's XML (for consistency checks)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise PayloadError(f"'{ENTRY_NAME}' is not well-formed XML: {exc}") from exc
    value = root.get("uploadId", "")
    if not is_upload_id(value):
        raise PayloadError(f"'{ENTRY_NAME}' has no valid uploadId attribute (got {value!r})")
    return value

