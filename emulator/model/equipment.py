"""How the printer presents itself on the network: vendor objects, trays, bins, languages.

One place for the facts that several faces of the printer report, so they cannot
disagree: the input trays and output bins (Printer-MIB prtInputTable/prtOutputTable
and PJL INFO CONFIG), the page description languages (prtInterpreterTable and PJL
INFO CONFIG LANGUAGES), the panel language (prtLocalizationTable and PJL LANG), the
vendor identity (sysDescr, the IEEE 1284 device id and where the vendor's private MIB
keeps it, the vendor's billing-meter objects) and the age of a used printer.

Profiles give them in two optional tables (see ``fixtures/devices/office-color.toml``)::

    [mib]
    sys_descr = "Xerox WorkCentre 7545 v1 Multifunction System"  # model part of sysDescr
    device_id = "MFG:Xerox; CMD:PCL, PJL, POSTSCRIPT; MDL:...; CLS:Printer; DES:..."
    device_id_oid = "1.3.6.1.4.1.253.8.51.1.2.1.20.1"
    meters = { total_impressions = "1.3.6.1....", black_impressions = "..." }
    languages = ["PCL", "PCLXL", "POSTSCRIPT"]
    panel_language = "en-US"
    if_speed_mbps = 1000
    memory_kb = 2097152
    [[mib.trays]]  name, capacity, media; default: engine.trays trays of 520 sheets
    [[mib.bins]]   name, capacity; default: one 500-sheet "Center Output Tray"
    [history]
    age_days = 0   # a used printer: this many days of its own use simulated at start

Everything has a default derived from the rest of the profile, so a profile without
these tables is still complete. Values are frozen and checked in ``__post_init__``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from device_direct.tomlreader import Table

# PrtInterpreterLangFamilyTC (IANA-PRINTER-MIB) for the languages a profile may name,
# with the description the interpreter table shows.
LANGUAGE_FAMILIES: dict[str, tuple[int, str]] = {
    "PJL": (5, "PJL"),  # langPJL: the job control language
    "PCL": (3, "PCL 6 (PCL 5e emulation)"),  # langPCL
    "PCLXL": (47, "PCL XL"),  # langPCLXL
    "POSTSCRIPT": (6, "Adobe PostScript 3"),  # langPS
    "PDF": (54, "PDF 1.7"),  # langPDF
    "XPS": (60, "XPS"),  # langXPS
}
DEFAULT_LANGUAGES = ("PCL", "PCLXL", "POSTSCRIPT")
# prtLocalizationLanguage/Country (ISO 639 / ISO 3166) -> the PJL LANG name.
PJL_LANG = {"en": "ENGLISH", "de": "GERMAN", "fr": "FRENCH", "it": "ITALIAN",
            "es": "SPANISH", "nl": "DUTCH", "pt": "PORTUGUESE", "ja": "JAPANESE"}
METER_NAMES = ("total_impressions", "black_impressions", "color_impressions",
               "total_large_impressions", "sheets", "duplex_sheets", "copy_impressions",
               "print_impressions", "fax_impressions", "scan_images")
_OID = re.compile(r"^1\.3\.6\.1\.4\.1(\.\d+)+$")
_LOCALE = re.compile(r"^([a-z]{2})-([A-Z]{2})$")
_A4 = (116929, 82677)  # feed, cross-feed in 1/10000 inch (297 x 210 mm)
_A3 = (165354, 116929)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class TraySpec:
    """One input tray (prtInputEntry; PJL INFO CONFIG IN TRAYS)."""

    name: str
    capacity: int = 520  # sheets
    media: str = "iso-a4"  # prtInputMediaName (PWG media name)
    bypass: bool = False  # a sheet feed manual tray

    def __post_init__(self) -> None:
        _need(bool(self.name) and self.name.isprintable() and len(self.name) <= 63,
              "tray name must be 1..63 printable characters")
        _need(self.capacity >= 1, "tray capacity must be >= 1")

    @property
    def dimensions(self) -> tuple[int, int]:
        """(feed, cross-feed) of the loaded media in 1/10000 inch."""
        return _A3 if "a3" in self.media else _A4


@dataclass(frozen=True, slots=True)
class BinSpec:
    """One output bin (prtOutputEntry; PJL INFO CONFIG OUTPUT BINS)."""

    name: str
    capacity: int = 500

    def __post_init__(self) -> None:
        _need(bool(self.name) and self.name.isprintable() and len(self.name) <= 63,
              "bin name must be 1..63 printable characters")
        _need(self.capacity >= 1, "bin capacity must be >= 1")


@dataclass(frozen=True, slots=True)
class MibSpec:
    """The ``[mib]`` table (see module doc). Empty strings mean "derive it"."""

    sys_descr: str = ""
    device_id: str = ""
    device_id_oid: str = ""
    meters: tuple[tuple[str, str], ...] = ()  # (counter name, OID)
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    panel_language: str = "en-US"
    if_speed_mbps: int = 1000
    memory_kb: int = 2_097_152  # hrMemorySize; PJL INFO MEMORY and CONFIG in bytes
    trays: tuple[TraySpec, ...] = ()
    bins: tuple[BinSpec, ...] = ()

    def __post_init__(self) -> None:
        for what, oid in (("device_id_oid", self.device_id_oid),
                          *((f"meters.{n}", o) for n, o in self.meters)):
            _need(not oid or bool(_OID.match(oid)),
                  f"{what} must be an OID under 1.3.6.1.4.1, got {oid!r}")
        for name, _ in self.meters:
            _need(name in METER_NAMES, f"meters: unknown counter {name!r}; known: "
                  f"{', '.join(METER_NAMES)}")
        _need(len(self.languages) >= 1, "languages needs at least one language")
        for lang in self.languages:
            _need(lang in LANGUAGE_FAMILIES and lang != "PJL",
                  f"languages: {lang!r} is not one of "
                  f"{', '.join(k for k in LANGUAGE_FAMILIES if k != 'PJL')}")
        m = _LOCALE.match(self.panel_language)
        _need(m is not None and m.group(1) in PJL_LANG,
              f"panel_language must look like en-US with a language of "
              f"{', '.join(PJL_LANG)}, got {self.panel_language!r}")
        _need(1 <= self.if_speed_mbps <= 100_000, "if_speed_mbps must be 1..100000")
        _need(1024 <= self.memory_kb <= 2**31 // 1024, "memory_kb must be 1024..2097152")
        _need(len(self.trays) <= 12 and len(self.bins) <= 12, "at most 12 trays and 12 bins")
        for kind, names in (("tray", [t.name for t in self.trays]),
                            ("bin", [b.name for b in self.bins])):
            _need(len(set(names)) == len(names), f"duplicate {kind} name in {names}")

    @property
    def language_code(self) -> str:
        return self.panel_language[:2]

    @property
    def country_code(self) -> str:
        return self.panel_language[3:]

    @property
    def pjl_lang(self) -> str:
        """The panel language as PJL names it (``@PJL DINQUIRE LANG``)."""
        return PJL_LANG[self.language_code]


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """The ``[history]`` table: a used printer starts with this many days behind it."""

    age_days: int = 0

    def __post_init__(self) -> None:
        _need(0 <= self.age_days <= 20 * 366, "age_days must be 0..7320 (20 years)")


@dataclass(frozen=True, slots=True)
class Equipment:
    """What the network faces report about the hardware, derived once per profile."""

    trays: tuple[TraySpec, ...]
    bins: tuple[BinSpec, ...]
    languages: tuple[str, ...]  # page description languages, PJL not included
    mib: MibSpec = field(default_factory=MibSpec)

    @property
    def interpreters(self) -> tuple[str, ...]:
        """prtInterpreterTable rows in order: PJL (the job control language) first."""
        return ("PJL", *self.languages)


def default_trays(trays: int, a3: bool) -> tuple[TraySpec, ...]:
    """``trays`` paper trays of 520 sheets (tray 2 holds A3 on an A3 engine)."""
    return tuple(TraySpec(f"Tray {i}", 520, "iso-a3" if a3 and i == 2 else "iso-a4")
                 for i in range(1, trays + 1))


def equipment(mib: MibSpec, *, trays: int, a3: bool) -> Equipment:
    """The equipment of a profile: its ``[mib]`` table, with defaults filled in."""
    return Equipment(
        trays=mib.trays or default_trays(trays, a3),
        bins=mib.bins or (BinSpec("Center Output Tray", 500),),
        languages=mib.languages, mib=mib)


# -- reading the profile tables ------------------------------------------------------------

def read_mib(t: Table | None) -> MibSpec:
    """The ``[mib]`` table (absent: every default). Key errors name file and key."""
    if t is None:
        return MibSpec()
    meters_t = t.table("meters", None)
    meters: tuple[tuple[str, str], ...] = ()
    if meters_t is not None:
        meters = tuple((name, meters_t.str(name)) for name in list(meters_t.keys()))
        meters_t.done()
    trays = []
    for tt in t.tables("trays", []):
        trays.append(TraySpec(name=tt.str("name"), capacity=tt.int("capacity", 520, min=1),
                              media=tt.str("media", "iso-a4"),
                              bypass=tt.bool("bypass", False)))
        tt.done()
    bins = []
    for bt in t.tables("bins", []):
        bins.append(BinSpec(name=bt.str("name"), capacity=bt.int("capacity", 500, min=1)))
        bt.done()
    spec = MibSpec(
        sys_descr=t.str("sys_descr", ""), device_id=t.str("device_id", ""),
        device_id_oid=t.str("device_id_oid", ""), meters=meters,
        languages=t.str_list("languages", DEFAULT_LANGUAGES),
        panel_language=t.str("panel_language", "en-US"),
        if_speed_mbps=t.int("if_speed_mbps", 1000, min=1),
        memory_kb=t.int("memory_kb", 2_097_152, min=1024),
        trays=tuple(trays), bins=tuple(bins))
    t.done()
    return spec


def read_history(t: Table | None) -> HistorySpec:
    """The ``[history]`` table (absent: a new printer)."""
    if t is None:
        return HistorySpec()
    spec = HistorySpec(age_days=t.int("age_days", 0, min=0))
    t.done()
    return spec
