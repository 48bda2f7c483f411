"""Checking an uploaded payload zip and pulling out the facts the server stores.

Pure and synchronous (no I/O beyond reading the XSD once), so the server can run it
in a worker thread and tests can call it directly. Checks, in order, each failing with a
:class:`PayloadRejected` that names what was wrong:

1. the zip opens and holds exactly one entry, ``device-data.xml`` (no directories, no
   ``..`` or absolute paths, no other names);
2. the entry's declared size is within the limit and its compression ratio is sane
   (a zip bomb is refused before it is inflated), and inflating stops at the limit
   whatever the header claims;
3. the XML parses with entity resolution, DTD loading and network access off; any
   DOCTYPE is refused outright (no entities, no XXE, no billion laughs);
4. it is valid against ``fixtures/payload.xsd``;
5. a payload without ``<Source>`` (the printer's own) carries everything a device knows
   (:data:`DEVICE_REQUIRED`: the schema makes those optional for manager payloads only
   because XSD 1.0 cannot say "required unless <Source> is present").
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

NS = "urn:device-direct:payload:1"
ENTRY_NAME = "device-data.xml"
XSD_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "payload.xsd"

MAX_XML_BYTES = 8 << 20  # inflated size limit of device-data.xml
MAX_COMPRESSION_RATIO = 100  # real payloads compress about 5-15x; bombs 1000x+
# The biggest number the server stores (an SQLite INTEGER is 64-bit); the schema's
# integers have no upper bound, so a bigger one is refused here, naming it.
MAX_STORED_INT = (1 << 63) - 1


class PayloadRejected(ValueError):
    """The upload is not acceptable; ``error`` is the wire code, ``status`` the HTTP one."""

    def __init__(self, error: str, detail: str, *, status: int = 422) -> None:
        self.error = error
        self.detail = detail
        self.status = status
        super().__init__(f"{error}: {detail}")


@dataclass(frozen=True, slots=True)
class SupplyFact:
    index: int
    name: str
    type: str
    unit: str
    capacity: int
    level: int
    status: str


@dataclass(frozen=True, slots=True)
class FaultFact:
    code: str
    subsystem: str
    at: str
    impressions: int
    stops_machine: bool
    description: str


@dataclass(frozen=True, slots=True)
class PayloadFacts:
    """What the server keeps from a valid payload besides the raw zip."""

    upload_id: str
    sequence: int
    serial: str
    model: str
    generated_at: str
    trigger: str
    meters: dict[str, int] = field(default_factory=dict)
    supplies: tuple[SupplyFact, ...] = ()
    faults: tuple[FaultFact, ...] = ()
    source: str = "device"  # or "manager": who read the printer

    def __post_init__(self) -> None:
        if self.sequence < 0:
            raise ValueError(f"sequence must be >= 0, got {self.sequence}")
        if not self.serial:
            raise ValueError("serial is empty")


# lxml validators keep their error log on the object, so one compiled schema per
# worker thread; the XSD text itself is read once. Compiling is serialised: libxml2's
# first schema compile initialises process-wide tables, and two threads compiling at
# once (the first uploads of a busy server) corrupted them for good ("Document is not
# valid XML Schema" on every later upload).
_XSD_BYTES: bytes | None = None
_local = threading.local()
_xsd_lock = threading.Lock()


def _schema() -> Any:
    global _XSD_BYTES
    schema = getattr(_local, "schema", None)
    if schema is None:
        with _xsd_lock:
            if _XSD_BYTES is None:
                _XSD_BYTES = XSD_PATH.read_bytes()
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            schema = etree.XMLSchema(etree.fromstring(_XSD_BYTES, parser))
        _local.schema = schema
    return schema


def warm_up() -> None:
    """Compile the schema once in this thread (the server calls it before serving)."""
    _schema()


def _parser() -> Any:
    # collect_ids=False: no table of xml:id values (nothing looks elements up by id;
    # the schema declares no ID types), one hash insert fewer per attribute.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        dtd_validation=False, remove_comments=True, collect_ids=False,
    )


def read_entry(body: bytes, *, max_xml_bytes: int = MAX_XML_BYTES) -> bytes:
    """The bytes of ``device-data.xml`` from the zip ``body``, after the zip checks."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError) as exc:
        # NotImplementedError: an entry claims a zip version newer than zipfile reads.
        raise PayloadRejected("bad_zip", f"the body is not a zip archive: {exc}") from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        for name in names:
            if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") \
                    or ":" in name:
                raise PayloadRejected("bad_zip", f"zip entry name {name!r} is a path trick")
        if names != [ENTRY_NAME]:
            raise PayloadRejected(
                "bad_zip",
                f"the zip must hold exactly one entry {ENTRY_NAME!r}; it holds {names!r}",
            )
        info = infos[0]
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > MAX_COMPRESSION_RATIO:
            raise PayloadRejected(
                "zip_bomb",
                f"{ENTRY_NAME} compression ratio {ratio:.0f}:1 exceeds "
                f"{MAX_COMPRESSION_RATIO}:1",
            )
        if info.file_size > max_xml_bytes:
            raise PayloadRejected(
                "too_large",
                f"{ENTRY_NAME} inflates to {info.file_size} bytes (limit {max_xml_bytes})",
                status=413,
            )
        try:
            with zf.open(info) as fh:
                # The header sizes are the sender's claim: read no more than the limit.
                data = fh.read(max_xml_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError,
                EOFError, ValueError) as exc:
            # RuntimeError: encrypted entry; NotImplementedError: unknown compression.
            raise PayloadRejected("bad_zip", f"cannot inflate {ENTRY_NAME}: {exc}") from exc
        if len(data) > max_xml_bytes or len(data) > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise PayloadRejected("zip_bomb", f"{ENTRY_NAME} inflates past its declared size")
        return data


# Any case, as XML parsers are lenient; one scan (upper-casing a daily payload twice
# to search it cost the server about a fifth of its time per upload).
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def has_declaration(xml: bytes) -> bool:
    """Whether ``xml`` holds ``<!DOCTYPE`` or ``<!ENTITY`` in any case (``_DECLARATION``).

    ``bytes.find`` (memchr) skips to each ``<!``, of which a payload has few (a comment,
    a CDATA section): the case-insensitive regex over 40-100 KB of XML took ~40 us an
    upload, this ~0.2 us."""
    at = xml.find(b"<!")
    while at >= 0:
        if _DECLARATION.match(xml, at):
            return True
        at = xml.find(b"<!", at + 2)
    return False


def parse_payload(xml: bytes) -> Any:
    """Parse and schema-validate ``device-data.xml``; return the lxml root element."""
    # Refuse any DOCTYPE before parsing: entities are never legitimate in a payload.
    if has_declaration(xml):
        raise PayloadRejected("bad_xml", "a DOCTYPE or ENTITY declaration is not allowed")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        raise PayloadRejected("bad_xml", f"{ENTRY_NAME} is not well-formed XML: {exc}") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # belt and braces
        raise PayloadRejected("bad_xml", "a DOCTYPE declaration is not allowed")
    schema = _schema()
    if not schema.validate(root):
        err = schema.error_log.last_error
        where = f"line {err.line}: " if err is not None else ""
        msg = err.message if err is not None else "invalid"
        raise PayloadRejected("schema_invalid", f"{ENTRY_NAME} {where}{msg}")
    return root


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


# What a device payload must hold (paths from the root; "@x" = attribute x on every match).
DEVICE_REQUIRED = (
    "Identity/Manufacturer", "Identity/ProductCode", "Identity/Firmware/Module",
    "Identity/Options", "Network/MAC",
    "Status/@power", "Status/FaultHistory", "Status/TransferHistory", "Counters/Meter",
    "Usage", *(f"Status/Alert/@{a}" for a in ("severity", "code", "group", "groupIndex",
                                              "location", "raisedAt")),
    *(f"Supplies/Supply/@{a}" for a in ("type", "unit", "capacity", "level", "class",
                                        "lifetimeImpressions")),
)
# The elements the stored facts come from.
FACT_PATHS = ("Source", "Identity/Serial", "Identity/Model", "Counters/Meter",
              "Supplies/Supply", "Status/FaultHistory/Fault")


def _path_tree(paths: tuple[str, ...]) -> dict[str, Any]:
    """The element paths (attributes dropped) as a tree of qualified names."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.partition("/@")[0].split("/"):
            node = node.setdefault(_q(part), {})
    return tree


# One walk of the parsed payload finds every element the device checks and the facts
# need: it enters only the sections they name (never <Usage>'s long tables) and visits
# each child of those once. (It replaced a findall per required path: 28 passes.)
_WALK = _path_tree(DEVICE_REQUIRED + FACT_PATHS)
_DEVICE_CHECKS = tuple(
    (where, attr, "/".join(_q(p) for p in where.split("/")))
    for where, _, attr in (path.partition("/@") for path in DEVICE_REQUIRED)
)
_FACT_KEYS = {path: "/".join(_q(p) for p in path.split("/")) for path in FACT_PATHS}


def index_elements(root: Any) -> dict[str, list[Any]]:
    """The elements at each path of :data:`DEVICE_REQUIRED` and :data:`FACT_PATHS`, in
    document order, keyed by the path in qualified names (``{ns}Status/{ns}Alert``).

    Only elements count: a comment is gone after parsing, and a processing instruction
    (which the schema lets through anywhere) is skipped, as the schema itself skips it.
    """
    found: dict[str, list[Any]] = {}
    # A queue (breadth first: each list stays in document order), not a nested recursive
    # function: that would be a reference cycle holding the elements, and every parsed
    # tree would wait for the garbage collector to be freed (5-7% slower per upload).
    queue: deque[tuple[Any, dict[str, Any], str]] = deque([(root, _WALK, "")])
    while queue:
        parent, branch, prefix = queue.popleft()
        for child in parent:
            sub = branch.get(child.tag)  # a PI's tag is a function: never a key
            if sub is None:
                continue
            key = prefix + child.tag
            found.setdefault(key, []).append(child)
            if sub:
                queue.append((child, sub, key + "/"))
    return found


def check_device_fields(root: Any, found: dict[str, list[Any]] | None = None) -> None:
    """Refuse a device payload (no ``<Source>``) that lacks what only managers may omit.

    The first of :data:`DEVICE_REQUIRED` that fails is named: a missing element, or the
    first element (in document order) without a required attribute. ``found`` is
    :func:`index_elements` of ``root``, when the caller already has it.
    """
    if found is None:
        found = index_elements(root)
    for where, attr, key in _DEVICE_CHECKS:
        elements = found.get(key, ())
        if attr:
            for element in elements:
                if element.get(attr) is None:
                    raise PayloadRejected(
                        "schema_invalid",
                        f"{ENTRY_NAME}: device payload {where} lacks @{attr} "
                        f"(line {element.sourceline})")
        elif not elements:
            raise PayloadRejected("schema_invalid",
                                  f"{ENTRY_NAME}: a device payload needs {where} (only a "
                                  "payload with <Source kind=\"manager\"> may omit it)")


def extract_facts(root: Any) -> PayloadFacts:
    """The stored facts of a schema-valid payload root (device fields checked first when
    it has no ``<Source>``)."""
    found = index_elements(root)
    source = found.get(_FACT_KEYS["Source"])
    if source is None:
        check_device_fields(root, found)
    # The schema makes Identity/Model and Identity/Serial required, once each.
    serial = found[_FACT_KEYS["Identity/Serial"]][0]
    model = found[_FACT_KEYS["Identity/Model"]][0]
    meters = {m.get("name"): int(m.text) for m in found.get(_FACT_KEYS["Counters/Meter"], ())}
    # A manager's supply may lack what SNMP did not give: stored as "" / -2 (unknown).
    supplies = tuple(
        SupplyFact(
            index=int(s.get("index")), name=s.get("name"), type=s.get("type", ""),
            unit=s.get("unit", ""), capacity=int(s.get("capacity", "-2")),
            level=int(s.get("level", "-2")), status=s.get("status"),
        )
        for s in found.get(_FACT_KEYS["Supplies/Supply"], ())
    )
    sequence = int(root.get("sequence"))
    faults = tuple(
        FaultFact(
            code=f.get("code"), subsystem=f.get("subsystem"), at=f.get("at"),
            impressions=int(f.get("impressions")),
            stops_machine=f.get("stopsMachine") in ("true", "1"),
            description=(f.text or "").strip(),
        )
        for f in found.get(_FACT_KEYS["Status/FaultHistory/Fault"], ())
    )
    _check_stored_ints(sequence, meters, supplies, faults)
    return PayloadFacts(
        upload_id=root.get("uploadId"),
        sequence=sequence,
        serial=(serial.text or "").strip(),
        model=(model.text or "").strip(),
        generated_at=_utc_time(root.get("generatedAt")),
        trigger=root.get("trigger"),
        meters=meters,
        supplies=supplies,
        faults=faults,
        source="device" if source is None else str(source[0].get("kind")),
    )


def _utc_time(text: str) -> str:
    """``generatedAt`` as the server stores times: UTC with a ``Z`` (microseconds only
    when present, as devices write it), so that stored times sort in time order and
    their first ten characters are the UTC day the combination view bills by.

    ``xs:dateTime`` also allows a time with an offset (converted here), one with no zone
    at all, ``24:00:00`` and years past 9999 or before 1: those are refused, naming
    the value, rather than stored and failing every later comparison of readings."""
    where = f"{ENTRY_NAME}: DeviceData/@generatedAt {text.strip()!r}"
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadRejected("schema_invalid", f"{where} is not a time the server can "
                                                "store (years 1 to 9999, hours 00 to 23)"
                              ) from None
    if value.tzinfo is None:
        raise PayloadRejected("schema_invalid", f"{where} has no time zone: end it with Z "
                                                "(UTC) or an offset such as +01:00")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise PayloadRejected("schema_invalid", f"{where} is out of range in UTC") from None
    return value.isoformat()[:-6] + "Z"


def _check_stored_ints(sequence: int, meters: dict[str, int],
                       supplies: tuple[SupplyFact, ...], faults: tuple[FaultFact, ...]
                       ) -> None:
    """Refuse (422) a stored number past :data:`MAX_STORED_INT` (the schema's minimums
    keep them all >= -3), naming the first one, rather than fail in the database."""
    if max((sequence, *meters.values(), *(max(s.index, s.capacity, s.level) for s in supplies),
            *(f.impressions for f in faults))) <= MAX_STORED_INT:  # one tuple: may be 1 long
        return  # every upload but a hostile one: no names built
    numbers = [("DeviceData/@sequence", sequence)]
    numbers += [(f"Counters/Meter {name!r}", value) for name, value in meters.items()]
    for s in supplies:
        numbers += [(f"Supply {s.index} @{attr}", value) for attr, value in (
            ("index", s.index), ("capacity", s.capacity), ("level", s.level))]
    numbers += [(f"Fault {f.code} @impressions", f.impressions) for f in faults]
    for where, value in numbers:
        if value > MAX_STORED_INT:
            raise PayloadRejected("schema_invalid",
                                  f"{ENTRY_NAME}: {where} {value} is larger than the "
                                  f"server stores ({MAX_STORED_INT})")


def check_payload(body: bytes, *, upload_id: str, max_xml_bytes: int = MAX_XML_BYTES
                  ) -> PayloadFacts:
    """All checks on an upload body; the facts to store, or :class:`PayloadRejected`."""
    facts = extract_facts(parse_payload(read_entry(body, max_xml_bytes=max_xml_bytes)))
    if facts.upload_id != upload_id:
        raise PayloadRejected(
            "upload_id_mismatch",
            f"payload uploadId {facts.upload_id} differs from the Upload-Id header {upload_id}",
        )
    return facts


