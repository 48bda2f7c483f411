"""What the manager knows of each vendor's printers: data files, one per vendor.

As in LibreNMS's ``os_detection``/``os_discovery`` definitions, knowledge lives in
files (``device_direct/manager/vendors/*.toml``) and this module is the engine that
reads them. A vendor file names the vendor, its enterprise number, the sysObjectID
prefixes of its printers, where its printers keep the model name (in order of
preference), and its private objects: serial number and billing meters. Adding a
vendor is adding a file; ``--vendors DIR`` adds a directory of them.

Keys::

    name = "Kyocera"                       # required
    enterprise = 1347                      # required, the arc after 1.3.6.1.4.1
    sys_object_id = ["1.3.6.1.4.1.1347.41"]  # prefixes of its printers (default: the arc)
    model = ["prtGeneralPrinterName", "hrDeviceDescr", "sysDescr"]  # sources, in order
    source = "where these facts come from"
    [objects]   serial = "OID"  firmware = "OID"  model = "OID"
    [meters]    total = "OID"  black = "OID"  color = "OID"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_direct.manager.errors import VendorFileError
from device_direct.manager.mib import Oid, format_oid, parse_oid

VENDOR_DIR = Path(__file__).with_name("vendors")
MODEL_SOURCES = ("prtGeneralPrinterName", "hrDeviceDescr", "sysDescr", "object")
METERS = ("total", "black", "color")
OBJECTS = ("serial", "firmware", "model")
_KEYS = {"name", "enterprise", "sys_object_id", "model", "source", "objects", "meters"}


@dataclass(frozen=True, slots=True)
class Vendor:
    """One vendor's printers, as a data file describes them."""

    name: str
    enterprise: int
    prefixes: tuple[Oid, ...]
    model_sources: tuple[str, ...] = ("prtGeneralPrinterName", "hrDeviceDescr", "sysDescr")
    objects: dict[str, Oid] = field(default_factory=dict)
    meters: dict[str, Oid] = field(default_factory=dict)
    source: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.enterprise < 1:
            raise ValueError("vendor needs a name and an enterprise number >= 1")
        bad = [s for s in self.model_sources if s not in MODEL_SOURCES]
        if bad:
            raise ValueError(f"unknown model source(s) {bad}; known: {list(MODEL_SOURCES)}")

    def private_oids(self) -> tuple[Oid, ...]:
        """Everything to GET from this vendor's printers besides the standard read."""
        return tuple(dict.fromkeys([*self.objects.values(), *self.meters.values()]))


def _oid(path: Path, key: str, value: Any) -> Oid:
    if not isinstance(value, str):
        raise VendorFileError("must be an OID string like \"1.3.6.1.4.1.11...\"",
                              path=path, key=key)
    try:
        return parse_oid(value)
    except ValueError as exc:
        raise VendorFileError(str(exc), path=path, key=key) from None


def load_vendor(path: Path) -> Vendor:
    """One vendor file; VendorFileError names the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise VendorFileError(f"cannot read: {exc}", path=path) from None
    unknown = set(data) - _KEYS
    if unknown:
        raise VendorFileError(f"unknown key(s) {sorted(unknown)}", path=path)
    name, enterprise = data.get("name"), data.get("enterprise")
    if not isinstance(name, str) or not name:
        raise VendorFileError("required, a non-empty string", path=path, key="name")
    if not isinstance(enterprise, int) or enterprise < 1:
        raise VendorFileError("required, a whole number >= 1", path=path, key="enterprise")
    raw_prefixes = data.get("sys_object_id", [f"1.3.6.1.4.1.{enterprise}"])
    if not isinstance(raw_prefixes, list) or not raw_prefixes:
        raise VendorFileError("must be a non-empty list of OIDs", path=path,
                              key="sys_object_id")
    prefixes = tuple(_oid(path, f"sys_object_id[{i}]", p) for i, p in enumerate(raw_prefixes))
    for i, p in enumerate(prefixes):
        if p[:7] != (1, 3, 6, 1, 4, 1, enterprise):
            raise VendorFileError(f"{format_oid(p)} is not under 1.3.6.1.4.1.{enterprise}",
                                  path=path, key=f"sys_object_id[{i}]")
    sections: dict[str, dict[str, Oid]] = {}
    for section, allowed in (("objects", OBJECTS), ("meters", METERS)):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise VendorFileError("must be a table", path=path, key=section)
        extra = set(table) - set(allowed)
        if extra:
            raise VendorFileError(f"unknown key(s) {sorted(extra)}; known: {list(allowed)}",
                                  path=path, key=section)
        sections[section] = {k: _oid(path, f"{section}.{k}", v) for k, v in table.items()}
    model = data.get("model", ["prtGeneralPrinterName", "hrDeviceDescr", "sysDescr"])
    if not isinstance(model, list) or not all(isinstance(m, str) for m in model):
        raise VendorFileError("must be a list of model sources", path=path, key="model")
    try:
        return Vendor(name=name, enterprise=enterprise, prefixes=prefixes,
                      model_sources=tuple(model), objects=sections["objects"],
                      meters=sections["meters"], source=str(data.get("source", "")),
                      path=str(path))
    except ValueError as exc:
        raise VendorFileError(str(exc), path=path, key="model") from None


class VendorCatalog:
    """Every known vendor; finds the one a sysObjectID belongs to (longest prefix wins)."""

    def __init__(self, vendors: list[Vendor]) -> None:
        self.vendors = tuple(vendors)
        self._by_enterprise = {v.enterprise: v for v in vendors}

    @classmethod
    def load(cls, *dirs: Path) -> VendorCatalog:
        """The built-in vendor files, then those in ``dirs`` (a later file may override)."""
        found: dict[str, Vendor] = {}
        for d in (VENDOR_DIR, *dirs):
            if not d.is_dir():
                raise VendorFileError("not a directory of vendor files", path=d)
            for path in sorted(d.glob("*.toml")):
                found[path.stem] = load_vendor(path)
        return cls(list(found.values()))

    def match(self, sys_object_id: Oid | None) -> Vendor | None:
        """The vendor whose printer prefix is the longest match, or None."""
        if not sys_object_id:
            return None
        best: tuple[int, Vendor] | None = None
        for v in self.vendors:
            for p in v.prefixes:
                if sys_object_id[:len(p)] == p and (best is None or len(p) > best[0]):
                    best = (len(p), v)
        return best[1] if best else None

    def enterprise_name(self, sys_object_id: Oid | None) -> str | None:
        """The vendor by enterprise arc alone (its printer prefixes need not match)."""
        if not sys_object_id or len(sys_object_id) < 7 or sys_object_id[:6] != (1, 3, 6, 1, 4, 1):
            return None
        v = self._by_enterprise.get(sys_object_id[6])
        return v.name if v else f"enterprise {sys_object_id[6]}"
