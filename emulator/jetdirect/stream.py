"""Splitting a port 9100 byte stream into PJL commands and print jobs (sans-I/O).

Theory of operation
-------------------
A raw-print connection carries PJL command lines and print data, framed by the
Universal Exit Language sequence ``ESC%-12345X`` (UEL). The splitter is in one of
three states:

- ``PJL``: at the start of the stream and after every UEL. A line starting with
  ``@PJL`` is a command; blank lines are skipped; anything else starts print data.
  ``@PJL ENTER LANGUAGE=...`` also switches to data, with the language named.
- ``DATA``: bytes are job data until the next UEL (or the end of the stream), which
  ends the job.
- ``CLOSED``: the stream ended or broke a limit; nothing more is accepted.

Every change is a pair in ``TRANSITIONS``; a pair missing from it is a bug in the
splitter and raises, rather than silently dropping bytes. :meth:`StreamSplitter.feed`
takes whatever chunk the socket gave and returns the events it completes, so a UEL or
a command line split across reads is handled the same as one that arrived whole.
Limits (line length, job size) turn into a :class:`Violation` event and ``CLOSED``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

UEL = b"\x1b%-12345X"
_PJL_PREFIX = b"@PJL"


class State(enum.Enum):
    PJL = "pjl"
    DATA = "data"
    CLOSED = "closed"


class Input(enum.Enum):
    UEL = "uel"
    PJL_LINE = "pjl-line"
    ENTER_LANGUAGE = "enter-language"
    BLANK_LINE = "blank-line"
    DATA = "data"
    EOF = "eof"
    LIMIT = "limit"


_S, _I = State, Input
TRANSITIONS: dict[tuple[State, Input], State] = {
    (_S.PJL, _I.UEL): _S.PJL,
    (_S.PJL, _I.PJL_LINE): _S.PJL,
    (_S.PJL, _I.ENTER_LANGUAGE): _S.DATA,
    (_S.PJL, _I.BLANK_LINE): _S.PJL,
    (_S.PJL, _I.DATA): _S.DATA,
    (_S.PJL, _I.EOF): _S.CLOSED,
    (_S.PJL, _I.LIMIT): _S.CLOSED,
    (_S.DATA, _I.DATA): _S.DATA,
    (_S.DATA, _I.UEL): _S.PJL,
    (_S.DATA, _I.EOF): _S.CLOSED,
    (_S.DATA, _I.LIMIT): _S.CLOSED,
}


@dataclass(frozen=True, slots=True)
class PjlCommand:
    """One ``@PJL ...`` line, without its line end."""

    line: str


@dataclass(frozen=True, slots=True)
class JobData:
    """A complete job's bytes (between a UEL or PJL header and the next UEL or EOF)."""

    data: bytes
    language: str | None  # from @PJL ENTER LANGUAGE, upper case; None: detect


@dataclass(frozen=True, slots=True)
class Violation:
    """The peer broke a limit; the connection should be closed."""

    reason: str


Event = PjlCommand | JobData | Violation


@dataclass(frozen=True, slots=True)
class Limits:
    max_line: int = 4096
    max_job: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_line < 64 or self.max_job < 1024:
            raise ValueError("max_line must be >= 64 and max_job >= 1024")


class StreamSplitter:
    """Feed bytes, get :data:`Event` values (see module doc)."""

    __slots__ = ("_buf", "_job", "_language", "_limits", "state")

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self._buf = bytearray()
        self._job = bytearray()
        self._language: str | None = None
        self.state = State.PJL

    def _to(self, event: Input) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise RuntimeError(f"stream splitter: no transition for {event.value} in "
                               f"state {self.state.value}") from None

    def _open(self) -> bool:
        return self.state is not State.CLOSED

    def feed(self, chunk: bytes) -> list[Event]:
        """Take the next bytes of the stream; return the events they complete."""
        if self.state is State.CLOSED:
            return []
        self._buf += chunk
        out: list[Event] = []
        while self._open() and self._step(out, eof=False):
            pass
        return out

    def eof(self) -> list[Event]:
        """The peer closed: finish what is pending."""
        out: list[Event] = []
        while self._open() and self._step(out, eof=True):
            pass
        if self.state is State.DATA:  # the job ends with the stream
            self._job += self._buf
            self._buf.clear()
            self._finish_job(out)
        if self.state is not State.CLOSED:
            self._to(Input.EOF)
        return out

    # -- one step: returns True when it consumed something and may continue ----------

    def _step(self, out: list[Event], *, eof: bool) -> bool:
        buf = self._buf
        if not buf:
            return False
        if self.state is State.DATA:
            return self._step_data(out, eof=eof)
        if buf.startswith(UEL):
            del buf[:len(UEL)]
            self._to(Input.UEL)
            return True
        if bytes(buf[:1]) in (b"\r", b"\n"):
            del buf[:1]
            self._to(Input.BLANK_LINE)
            return True
        head = bytes(buf[:len(_PJL_PREFIX)])
        if head.upper() == _PJL_PREFIX[:len(head)] or UEL.startswith(bytes(buf[:len(UEL)])):
            return self._step_line(out, eof=eof)
        self._to(Input.DATA)  # anything else is print data, from here on
        return True

    def _step_line(self, out: list[Event], *, eof: bool) -> bool:
        buf = self._buf
        end = buf.find(b"\n")
        uel_at = buf.find(UEL)
        if uel_at > 0 and (end < 0 or uel_at < end):
            end = uel_at  # a command cut short by a UEL (tools do send that)
        if end < 0:
            if len(buf) > self._limits.max_line:
                return self._violate(out, f"PJL line longer than {self._limits.max_line} bytes")
            if not eof:
                return False  # the rest of the line (or of a UEL) is still arriving
            end = len(buf)
        if end > self._limits.max_line:
            return self._violate(out, f"PJL line longer than {self._limits.max_line} bytes")
        raw = bytes(buf[:end])
        line = raw.rstrip(b"\r").decode("latin-1")
        if not line.upper().startswith("@PJL"):
            if UEL.startswith(raw) and not eof:
                return False
            self._to(Input.DATA)  # not PJL after all: it is data (left in the buffer)
            return True
        del buf[:end + (1 if buf[end:end + 1] == b"\n" else 0)]
        words = line[4:].split()
        if len(words) >= 2 and words[0].upper() == "ENTER" and \
                words[1].upper().startswith("LANGUAGE"):
            lang = line.split("=", 1)[1].strip().upper() if "=" in line else ""
            self._language = lang or None
            out.append(PjlCommand(line))
            self._to(Input.ENTER_LANGUAGE)
            return True
        out.append(PjlCommand(line))
        self._to(Input.PJL_LINE)
        return True

    def _step_data(self, out: list[Event], *, eof: bool) -> bool:
        buf = self._buf
        at = buf.find(UEL)
        if at >= 0:
            self._job += buf[:at]
            del buf[:at + len(UEL)]
            if len(self._job) > self._limits.max_job:
                return self._violate(out, f"job larger than {self._limits.max_job} bytes")
            self._finish_job(out)
            self._to(Input.UEL)
            return True
        # Keep a tail that could be the start of a UEL; the rest is job data.
        keep = len(UEL) - 1
        if len(buf) > keep:
            self._job += buf[:-keep]
            del buf[:-keep]
        if len(self._job) > self._limits.max_job:
            return self._violate(out, f"job larger than {self._limits.max_job} bytes")
        return False

    def _finish_job(self, out: list[Event]) -> None:
        if self._job.strip(b"\r\n\x00 "):
            out.append(JobData(bytes(self._job), self._language))
        self._job = bytearray()
        self._language = None

    def _violate(self, out: list[Event], reason: str) -> bool:
        out.append(Violation(reason))
        self._buf.clear()
        self._job = bytearray()
        self._to(Input.LIMIT)
        return False
