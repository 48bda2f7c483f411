"""What a print job sent to port 9100 is, and how many pages it prints (sans-I/O).

Page counting rules (simple, documented, good enough to move the meters the way a
client expects; not a page description language interpreter):

- PostScript (starts with ``%!`` or named by ``ENTER LANGUAGE=POSTSCRIPT``): one page
  per ``showpage`` token outside ``%`` comments.
- PCL 5 (starts with ``ESC``, or named ``PCL``): escape sequences are skipped,
  including the binary data of ``ESC * b # W``-style sequences; a form feed ejects a
  page; ``ESC E`` (reset) ejects a page that has marks; a page with marks at the end
  of the job is ejected too.
- PCL XL (``) HP-PCL XL`` header) is binary and not parsed: one page per job.
- Plain text: the text is cut at form feeds; each non-empty part prints
  ceil(lines / 60) pages (60 lines per page).
- Anything else (binary noise) is ``garbage``: not printed.

Job settings come from the PJL lines before the data: ``@PJL SET COPIES=`` or
``QTY=``, ``DUPLEX=ON``, ``RENDERMODE=COLOR|GRAYSCALE``, ``PAPER=A3|LEDGER`` (large),
``@PJL JOB NAME="..."`` and ``@PJL SET USERNAME="..."``. Without a RENDERMODE a job
is colour when it uses a colour operator (PostScript ``setrgbcolor``/``setcmykcolor``,
PCL ``ESC*r-3U`` or a ``ESC*v6W`` palette).

DLM firmware files begin with a ``%%XRXbegin`` ... ``%%XRXend`` text header:
:func:`parse_dlm` turns one into a :class:`DlmFile`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

LINES_PER_PAGE = 60
DLM_BEGIN = b"%%XRXbegin"
DLM_END = b"%%XRXend"
MAX_DLM_HEADER = 16 * 1024


class Language(enum.Enum):
    POSTSCRIPT = "postscript"
    PCL = "pcl"
    PCLXL = "pclxl"
    TEXT = "text"
    DLM = "dlm"
    GARBAGE = "garbage"


class DlmError(ValueError):
    """A DLM header is malformed; the message names the line or field."""


@dataclass(frozen=True, slots=True)
class DlmFile:
    """A firmware file received as a print job."""

    name: str
    version: str
    signature: bytes
    job_type: str
    payload: bytes  # everything after the %%XRXend line

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise DlmError("DLM header needs OID_ATT_DLM_NAME and OID_ATT_DLM_VERSION")
        if not self.signature:
            raise DlmError("DLM header needs OID_ATT_DLM_SIGNATURE (hex)")


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Job attributes taken from PJL SET / JOB lines."""

    copies: int = 1
    duplex: bool = False
    render_color: bool | None = None  # None: decide from the data
    large: bool = False
    job_name: str = ""
    user: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.copies <= 999:
            raise ValueError(f"copies must be 1..999, got {self.copies}")


@dataclass(frozen=True, slots=True)
class PageCount:
    language: Language
    pages: int
    color: bool


_PJL_ASSIGN = re.compile(r"^@PJL\s+(SET|JOB)\b(.*)$", re.IGNORECASE)
_PAIR = re.compile(r'(\w+)\s*=\s*("([^"]*)"|\S+)')
_LARGE_PAPERS = {"A3", "LEDGER", "TABLOID", "11X17", "B4", "RA3", "SRA3"}


def settings_from_pjl(lines: list[str]) -> JobSettings:
    """The job settings the PJL ``lines`` (in order) ask for; unknown ones are ignored."""
    copies, duplex, color, large, name, user = 1, False, None, False, "", ""
    for line in lines:
        m = _PJL_ASSIGN.match(line.strip())
        if not m:
            continue
        for key, raw, quoted in _PAIR.findall(m.group(2)):
            key = key.upper()
            value = quoted if raw.startswith('"') else raw
            upper = value.upper()
            if key in ("COPIES", "QTY") and value.isdigit():
                copies = max(1, min(999, int(value)))
            elif key == "DUPLEX":
                duplex = upper == "ON"
            elif key == "RENDERMODE":
                color = upper == "COLOR"
            elif key == "PAPER":
                large = upper in _LARGE_PAPERS
            elif key == "NAME" and m.group(1).upper() == "JOB":
                name = value[:80]
            elif key in ("USERNAME", "JOBATTR_USERNAME"):
                user = value[:64]
    return JobSettings(copies=copies, duplex=duplex, render_color=color, large=large,
                       job_name=name, user=user)


def detect_language(data: bytes, named: str | None) -> Language:
    """The job's language: the DLM header wins, then ENTER LANGUAGE, then the bytes."""
    head = data.lstrip(b"\r\n\t \x04")[:64]
    if head.startswith(DLM_BEGIN):
        return Language.DLM
    if named:
        if named.startswith("POSTSCRIPT"):
            return Language.POSTSCRIPT
        if named in ("PCLXL", "PCL XL", "PCL6"):
            return Language.PCLXL
        if named.startswith("PCL"):
            return Language.PCL
    if head.startswith(b"%!"):
        return Language.POSTSCRIPT
    if head.startswith(b") HP-PCL XL"):
        return Language.PCLXL
    if head.startswith(b"\x1b"):
        return Language.PCL
    return Language.TEXT if _looks_like_text(data) else Language.GARBAGE


def _looks_like_text(data: bytes) -> bool:
    sample = data[:8192]
    if not sample:
        return False
    try:
        decoded = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
            return False
        decoded = sample[:exc.start].decode("utf-8")
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\r\n\t\x0c")
    return printable >= 0.95 * len(decoded)


_PS_COMMENT = re.compile(rb"%[^\r\n]*")
_SHOWPAGE = re.compile(rb"(?<![\w/])showpage(?![\w])")
_PS_COLOR = re.compile(rb"(?<![\w/])(setrgbcolor|setcmykcolor|sethsbcolor)(?![\w])")


def count_postscript(data: bytes) -> tuple[int, bool]:
    """(pages, uses colour) of a PostScript job."""
    body = _PS_COMMENT.sub(b"", data)
    return len(_SHOWPAGE.findall(body)), bool(_PS_COLOR.search(body))


def count_pcl(data: bytes) -> tuple[int, bool]:
    """(pages, uses colour) of a PCL 5 job (see module doc)."""
    pages = 0
    marks = False
    color = False
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            i, marked, is_reset, is_color = _skip_escape(data, i)
            marks = marks or marked
            color = color or is_color
            if is_reset and marks:
                pages += 1
                marks = False
        elif b == 0x0C:
            pages += 1
            marks = False
            i += 1
        else:
            if b > 0x20:
                marks = True
            i += 1
    if marks:
        pages += 1
    return pages, color


_NUMBER = re.compile(rb"[+-]?\d*(\.\d*)?")


def _skip_escape(data: bytes, i: int) -> tuple[int, bool, bool, bool]:
    """Skip the escape at ``i``; returns (next index, marks, is reset, is colour)."""
    n = len(data)
    if i + 1 >= n:
        return n, False, False, False
    c = data[i + 1]
    if c == ord("E"):
        return i + 2, False, True, False
    if not 0x21 <= c <= 0x2F:  # two-character escape (ESC 9, ESC =, ...)
        return i + 2, False, False, False
    if i + 2 >= n:
        return n, False, False, False
    group = data[i + 2]
    if 0x60 <= group <= 0x7E:
        j, prefix = i + 3, bytes((c, group))
    else:  # no group character, as in ESC ( 8 U
        j, prefix = i + 2, bytes((c,))
    marks = color = False
    while j < n:
        m = _NUMBER.match(data, j)
        end = m.end() if m else j
        number = data[j:end]
        if end >= n:
            return n, marks, False, color
        term = data[end]
        j = end + 1
        try:
            value = int(float(number)) if number not in (b"", b"+", b"-", b".") else 0
        except ValueError:
            value = 0
        letter = chr(term).upper()
        if prefix == b"*r" and letter == "U" and value == -3:
            color = True
        if letter == "W" or (prefix == b"&p" and letter == "X"):
            if prefix == b"*v" and letter == "W" and value >= 6:
                color = True
            if prefix in (b"*b", b"&p", b"*g"):
                marks = True
            j += max(0, value)  # binary data follows
        if 0x40 <= term <= 0x5E or not 0x60 <= term <= 0x7E:  # upper case ends it
            break
    return min(j, n), marks, False, color


def count_text(data: bytes) -> int:
    """Pages of a plain text job (see module doc)."""
    pages = 0
    for part in data.split(b"\x0c"):
        lines = part.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n").split(b"\n")
        if part.strip():
            pages += -(-len(lines) // LINES_PER_PAGE)
    return pages


def count_pages(data: bytes, language: Language) -> PageCount:
    """Pages and colour use of ``data`` in ``language`` (DLM and garbage: 0 pages)."""
    if language is Language.POSTSCRIPT:
        pages, color = count_postscript(data)
    elif language is Language.PCL:
        pages, color = count_pcl(data)
    elif language is Language.PCLXL:
        pages, color = 1, False
    elif language is Language.TEXT:
        pages, color = count_text(data), False
    else:
        pages, color = 0, False
    return PageCount(language, pages, color)


_DLM_LINE = re.compile(rb'^%%(\w+)\s*(.*?)\s*$')


def parse_dlm(data: bytes) -> DlmFile:
    """Parse a DLM file (header fields and payload); DlmError names what is wrong."""
    start = data.find(DLM_BEGIN)
    if start < 0 or data[:start].strip(b"\r\n\t \x04"):
        raise DlmError("not a DLM file: it must begin with %%XRXbegin")
    end = data.find(DLM_END, start)
    if end < 0 or end - start > MAX_DLM_HEADER:
        raise DlmError(f"no %%XRXend within the first {MAX_DLM_HEADER} bytes of the header")
    header = data[start + len(DLM_BEGIN):end]
    after = data.find(b"\n", end)
    payload = data[after + 1:] if after >= 0 else b""
    fields: dict[str, str] = {}
    for number, raw in enumerate(header.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _DLM_LINE.match(line)
        if not m:
            raise DlmError(f"DLM header line {number}: expected '%%NAME value', got "
                           f"{line[:60]!r}")
        value = m.group(2).decode("latin-1")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        fields[m.group(1).decode("ascii").upper()] = value
    sig_text = fields.get("OID_ATT_DLM_SIGNATURE", "")
    try:
        signature = bytes.fromhex(sig_text)
    except ValueError:
        raise DlmError(f"OID_ATT_DLM_SIGNATURE is not hex: {sig_text[:40]!r}") from None
    return DlmFile(name=fields.get("OID_ATT_DLM_NAME", ""),
                   version=fields.get("OID_ATT_DLM_VERSION", ""), signature=signature,
                   job_type=fields.get("OID_ATT_JOB_TYPE", ""), payload=payload)
