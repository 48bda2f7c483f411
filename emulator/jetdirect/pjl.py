"""PJL commands and the answers a printer gives to them (sans-I/O).

Formats follow the HP PJL Technical Reference: every answer repeats the request line,
then its lines, each ending CR LF, then a form feed. ``@PJL ECHO`` is answered word
for word, because tools send ``@PJL ECHO DELIMITER<n>`` after their real command and
read until it comes back. Unknown commands are ignored (as printers do); unknown INFO
categories and INQUIRE variables are answered with ``?`` so a client never waits
for nothing.

Status codes (PJL INFO STATUS / USTATUS DEVICE) come from the same
:class:`emulator.snmp.printer_status.PrinterStatus` the SNMP agent reports:
10001 ready, 10002 offline, 10003 warming up, 10006 toner low, 10023 printing,
40000 operator intervention (door open, toner empty), 41000 load paper,
42000 paper jam, 50000 hardware error (needs service). ``DISPLAY=`` is the panel's
text (:mod:`emulator.model.console`), the same text as SNMP's
prtConsoleDisplayBufferText; RDYMSG, OPMSG and STMSG change the panel, so both faces
follow them.

INFO CONFIG, MEMORY, PRODINFO and FILESYS, and the LANG variable, describe the same
equipment the SNMP agent serves (:mod:`emulator.model.equipment`): the trays and bins
by the names prtInputName/prtOutputName give them, the languages of
prtInterpreterTable (PJL itself, the job control language, is not listed among the
LANGUAGES a job may select), the memory of hrMemorySize, the panel language of
prtLocalizationTable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from device_direct.model import PowerState
from emulator.model.console import DISPLAY_LINES, MAX_CHARS, clean
from emulator.model.equipment import Equipment, MibSpec, equipment
from emulator.snmp.printer_status import Condition, PrinterStatus

FF = "\x0c"
CRLF = "\r\n"
USTATUS_DEVICE = ("OFF", "ON", "VERBOSE")
TIMED_RANGE = (5, 300)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the answers need, read from the model at one instant."""

    model: str
    status: PrinterStatus
    power: PowerState
    page_count: int
    color: bool
    trays: int
    duplex: bool
    a3: bool
    equipment: Equipment | None = None  # None: trays and a3 give the defaults
    serial: str = ""
    product_code: str = ""
    options: tuple[str, ...] = ()
    firmware: tuple[tuple[str, str], ...] = ()  # (sysDescr label, version)

    def __post_init__(self) -> None:
        if self.page_count < 0 or not 1 <= self.trays <= 12:
            raise ValueError("page_count must be >= 0 and trays 1..12")


@dataclass(frozen=True, slots=True)
class PjlStatus:
    code: int
    display: str
    online: bool

    def lines(self) -> list[str]:
        """The CODE / DISPLAY / ONLINE lines."""
        return [f"CODE={self.code}", f'DISPLAY="{self.display}"',
                f"ONLINE={'TRUE' if self.online else 'FALSE'}"]


@dataclass(frozen=True, slots=True)
class UStatus:
    """The unsolicited-status settings of one connection."""

    device: str = "OFF"
    job: bool = False
    page: bool = False
    timed: int = 0  # seconds; 0 = off

    def __post_init__(self) -> None:
        if self.device not in USTATUS_DEVICE:
            raise ValueError(f"DEVICE must be one of {USTATUS_DEVICE}, got {self.device!r}")
        if self.timed and not TIMED_RANGE[0] <= self.timed <= TIMED_RANGE[1]:
            raise ValueError(f"TIMED must be 0 or {TIMED_RANGE[0]}..{TIMED_RANGE[1]}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one command does: bytes to send, and device-wide changes."""

    reply: str = ""
    ready_message: str | None = None  # set by RDYMSG ("" clears it)
    operator_message: str | None = None  # set by OPMSG / STMSG (the printer goes off line)


def pjl_status(view: DeviceView) -> PjlStatus:
    """Map the printer status onto a PJL status code (see module doc)."""
    st, c = view.status, view.status.conditions
    if view.power is PowerState.BOOTING:
        return PjlStatus(10003, "WARMING UP", False)
    if Condition.JAMMED in c:
        return PjlStatus(42000, _shown(st.display, "PAPER JAM"), False)
    if Condition.NO_PAPER in c:
        return PjlStatus(41000, _shown(st.display, "LOAD PAPER"), False)
    if Condition.DOOR_OPEN in c:
        return PjlStatus(40000, _shown(st.display, "CLOSE DOOR"), False)
    if Condition.NO_TONER in c:
        return PjlStatus(40000, _shown(st.display, "REPLACE TONER"), False)
    if Condition.OFFLINE in c:
        return PjlStatus(10002, _shown(st.display, "OFFLINE"), False)
    if st.critical:
        return PjlStatus(50000, _shown(st.display, "SERVICE REQUIRED"), False)
    if view.power is PowerState.PRINTING:
        return PjlStatus(10023, _shown(st.display, "PROCESSING JOB"), True)
    if Condition.LOW_TONER in c:
        return PjlStatus(10006, _shown(st.display, "TONER LOW"), True)
    return PjlStatus(10001, _shown(st.display, "READY"), True)


def _shown(display: str, fallback: str) -> str:
    return clean(display) or fallback


def answer(request: str, lines: list[str]) -> str:
    """A PJL answer: the request line, ``lines``, then a form feed."""
    return request + CRLF + "".join(line + CRLF for line in lines) + FF


def ustatus_device(view: DeviceView) -> str:
    """An unsolicited ``@PJL USTATUS DEVICE`` message."""
    return answer("@PJL USTATUS DEVICE", pjl_status(view).lines())


def ustatus_job(event: str, name: str, pages: int | None = None) -> str:
    """``@PJL USTATUS JOB`` START or END."""
    lines = [event, f'NAME="{name}"']
    if pages is not None:
        lines.append(f"PAGES={pages}")
    return answer("@PJL USTATUS JOB", lines)


def ustatus_page(number: int) -> str:
    """``@PJL USTATUS PAGE``: one printed page."""
    return answer("@PJL USTATUS PAGE", [str(number)])


_ASSIGN = re.compile(r'(\w+)\s*=\s*("([^"]*)"|\S+)')


@dataclass(slots=True)
class PjlSession:
    """PJL state of one connection: unsolicited-status settings, job lines seen."""

    ustatus: UStatus = field(default_factory=UStatus)
    job_lines: list[str] = field(default_factory=list)
    last_device_code: int | None = None

    def command(self, line: str, view: DeviceView) -> Outcome:
        """Handle one ``@PJL`` line; returns the reply (maybe empty)."""
        text = line.strip()
        words = text[4:].split()
        if not words:
            return Outcome()  # "@PJL" alone is a no-op, as the reference says
        verb = words[0].upper()
        if verb == "ECHO":
            return Outcome(text + CRLF + FF)
        if verb == "INFO" and len(words) >= 2:
            return Outcome(self._info(words[1].upper(), text, view))
        if verb in ("INQUIRE", "DINQUIRE") and len(words) >= 2:
            name = words[1].upper()
            value = _variables(view).get(name, (None,))[0]
            return Outcome(answer(text, [value if value is not None else "?"]))
        if verb == "USTATUSOFF":
            self.ustatus = UStatus()
            return Outcome()
        if verb == "USTATUS":
            return Outcome(self._set_ustatus(text[4:].strip()[7:]))
        if verb in ("RDYMSG", "OPMSG", "STMSG"):
            pairs = {k.upper(): (q if v.startswith('"') else v)
                     for k, v, q in _ASSIGN.findall(text)}
            message = clean(pairs.get("DISPLAY", ""))
            if verb == "RDYMSG":
                return Outcome(ready_message=message)
            return Outcome(operator_message=message)
        if verb in ("SET", "JOB"):
            self.job_lines.append(text)
        elif verb in ("EOJ", "RESET"):
            self.job_lines.clear()
        return Outcome()

    def end_job(self) -> None:
        """The job these settings belonged to is done."""
        self.job_lines.clear()

    def _set_ustatus(self, rest: str) -> str:
        pairs = {k.upper(): (q if v.startswith('"') else v).upper()
                 for k, v, q in _ASSIGN.findall(rest)}
        u = self.ustatus
        try:
            if "DEVICE" in pairs:
                u = replace(u, device=pairs["DEVICE"])
            if "JOB" in pairs:
                u = replace(u, job=pairs["JOB"] == "ON")
            if "PAGE" in pairs:
                u = replace(u, page=pairs["PAGE"] == "ON")
            if "TIMED" in pairs:
                u = replace(u, timed=int(pairs["TIMED"]))
        except ValueError:
            return ""  # out-of-range values are ignored, as the reference says
        self.ustatus = u
        self.last_device_code = None  # the next check reports the status once
        return ""

    def _info(self, category: str, request: str, view: DeviceView) -> str:
        if category == "ID":
            return answer(request, [f'"{view.model}"'])
        if category == "STATUS":
            return answer(request, pjl_status(view).lines())
        if category == "PAGECOUNT":
            return answer(request, [str(view.page_count)])
        if category == "USTATUS":
            u = self.ustatus
            return answer(request, [
                f"DEVICE={u.device} [3 ENUMERATED]", "\tOFF", "\tON", "\tVERBOSE",
                f"JOB={'ON' if u.job else 'OFF'} [2 ENUMERATED]", "\tOFF", "\tON",
                f"PAGE={'ON' if u.page else 'OFF'} [2 ENUMERATED]", "\tOFF", "\tON",
                f"TIMED={u.timed} [2 RANGE]", f"\t{TIMED_RANGE[0]}", f"\t{TIMED_RANGE[1]}",
            ])
        if category == "CONFIG":
            return answer(request, _config(view))
        if category == "MEMORY":
            total = _equipment(view).mib.memory_kb * 1024
            return answer(request, [f"TOTAL={total}", f"LARGEST={total * 7 // 8}"])
        if category == "PRODINFO":
            return answer(request, _prodinfo(view))
        if category == "FILESYS":
            return answer(request, _filesys(view))
        if category == "VARIABLES":
            out = []
            for name, (value, choices) in _variables(view).items():
                out.append(f"{name}={value} {choices[0]}")
                out.extend(f"\t{c}" for c in choices[1:])
            return answer(request, out)
        return answer(request, ["?"])


def _equipment(view: DeviceView) -> Equipment:
    if view.equipment is not None:
        return view.equipment
    return equipment(MibSpec(), trays=view.trays, a3=view.a3)


def _prodinfo(view: DeviceView) -> list[str]:
    lines = [f'MODEL="{view.model}"', f'PRODUCTNUMBER="{view.product_code}"',
             f'SERIALNUMBER="{view.serial}"']
    lines += [f'FIRMWARE {label}="{version}"' for label, version in view.firmware]
    return lines


def _filesys(view: DeviceView) -> list[str]:
    """The volumes: RAM disk 0:, and the hard disk 1: when an HDD option is installed."""
    ram = _equipment(view).mib.memory_kb * 1024 // 4
    lines = ["VOLUME\tTOTAL SIZE\tFREE SPACE\tLOCATION\tLABEL\tSTATUS",
             f"0:\t{ram}\t{ram * 9 // 10}\tRAM\t?\tREAD-WRITE"]
    for option in view.options:
        m = re.match(r"^HDD-(\d+)GB$", option)
        if m:
            size = int(m.group(1)) * 1_000_000_000
            lines.append(f"1:\t{size}\t{size * 4 // 5}\tDISK\t?\tREAD-WRITE")
    return lines


def _papers(view: DeviceView) -> list[str]:
    return ["A4", "LETTER", "LEGAL", "A5", "EXECUTIVE"] + (["A3", "LEDGER"] if view.a3 else [])


def _config(view: DeviceView) -> list[str]:
    eq = _equipment(view)
    trays = [f"\t{t.name.upper()}" for t in eq.trays]
    bins = [f"\t{b.name.upper()}" for b in eq.bins]
    papers = _papers(view)
    lines = [f"IN TRAYS [{len(trays)} ENUMERATED]", *trays,
             f"OUTPUT BINS [{len(bins)} ENUMERATED]", *bins]
    if view.duplex:
        lines.append("DUPLEX")
    lines += [f"PAPERS [{len(papers)} ENUMERATED]", *(f"\t{p}" for p in papers),
              f"LANGUAGES [{len(eq.languages)} ENUMERATED]",
              *(f"\t{lang}" for lang in eq.languages),
              "USTATUS [4 ENUMERATED]", "\tDEVICE", "\tJOB", "\tPAGE", "\tTIMED",
              f"MEMORY={eq.mib.memory_kb * 1024}", f"DISPLAY LINES={DISPLAY_LINES}",
              f"DISPLAY CHARACTER SIZE={MAX_CHARS}"]
    return lines


def _variables(view: DeviceView) -> dict[str, tuple[str, list[str]]]:
    """name -> (current value, [type marker, choices...]) as INFO VARIABLES lists them."""
    papers = _papers(view)
    eq = _equipment(view)
    out: dict[str, tuple[str, list[str]]] = {
        "COPIES": ("1", ["[2 RANGE]", "1", "999"]),
        "PAPER": ("A4", [f"[{len(papers)} ENUMERATED]", *papers]),
        "ORIENTATION": ("PORTRAIT", ["[2 ENUMERATED]", "PORTRAIT", "LANDSCAPE"]),
        "RESOLUTION": ("600", ["[2 ENUMERATED]", "600", "1200"]),
        "PERSONALITY": ("AUTO", [f"[{len(eq.languages) + 1} ENUMERATED]", "AUTO",
                                 *eq.languages]),
        "TIMEOUT": ("15", ["[2 RANGE]", "5", "300"]),
        "LANG": (eq.mib.pjl_lang, ["[1 ENUMERATED]", eq.mib.pjl_lang]),
    }
    if view.duplex:
        out["DUPLEX"] = ("OFF", ["[2 ENUMERATED]", "OFF", "ON"])
    if view.color:
        out["RENDERMODE"] = ("COLOR", ["[2 ENUMERATED]", "COLOR", "GRAYSCALE"])
    return out
