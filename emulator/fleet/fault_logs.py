"""The log lines a scenario's own faults cause: counted, and shown once per kind.

A scenario injects faults on purpose (an expired server certificate, a cut network), and
every device then logs each failed attempt, at WARNING or ERROR, as a real device should.
In a passing scenario those hundreds of lines are expected and drown what is not. While
a scenario runs, :class:`ExpectedFaultLogs` counts the warnings and errors of the agents
(``device_direct.*``) and of the reference server (``emulator.server.*``) by *kind*,
logs the first of each kind once at INFO on ``emulator.fleet.scenario``, and keeps the
rest off the log handlers; the report prints the counts. With ``quiet=False``
(``--log-level debug``) every line goes through as well, and is still counted.

A kind is the logger and the message's template, with short word-like arguments (a
cause such as ``tls-expired`` or ``ConnectError``) kept and the others (Upload-Ids,
delays, details) blanked: ``device_direct.agent: registration failed (tls-expired): ...``.
Lines of other loggers (the fleet's own, e.g. an agent that crashed) are never held back.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress

PREFIXES = ("device_direct", "emulator.server")
_WORD = re.compile(r"[A-Za-z][A-Za-z_.-]{0,39}")  # no digits: ids and numbers are blanked
log = logging.getLogger("emulator.fleet.scenario")


def fault_kind(record: logging.LogRecord) -> str:
    """The kind of a log record: logger, template, word-like arguments kept."""
    template = str(record.msg)
    args = record.args if isinstance(record.args, tuple) else ("...",)
    if record.args:
        parts = []
        for a in args:
            text = str(a)
            parts.append(text if _WORD.fullmatch(text) else "...")
        with suppress(TypeError, ValueError):
            template = re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfi]", "%s", template) % tuple(parts)
    return f"{record.name}: {template}"


def _ours(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING and record.name.startswith(PREFIXES)


class _Hold(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _ours(record)


class ExpectedFaultLogs(logging.Handler):
    """Counts the fault log lines of a scenario run (install with :meth:`installed`)."""

    def __init__(self, *, quiet: bool = True) -> None:
        super().__init__(logging.WARNING)
        self.quiet = quiet
        self.counts: Counter[str] = Counter()
        self._hold = _Hold()

    def emit(self, record: logging.LogRecord) -> None:
        if not _ours(record):
            return
        kind = fault_kind(record)
        self.counts[kind] += 1
        if self.counts[kind] == 1 and self.quiet:
            log.info("expected fault (logged once per kind, counted in the summary; "
                     "--log-level debug shows each): %s", record.getMessage())

    @contextmanager
    def installed(self) -> Iterator[ExpectedFaultLogs]:
        """Count (and, quiet, hold back) fault lines until the block ends."""
        root = logging.getLogger()
        others = list(root.handlers)
        # The agents' warnings are counted even when the log level shows only errors.
        loggers = [logging.getLogger(p) for p in PREFIXES]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            if lg.getEffectiveLevel() > logging.WARNING:
                lg.setLevel(logging.WARNING)
        root.addHandler(self)
        if self.quiet:
            for h in others:
                h.addFilter(self._hold)
        try:
            yield self
        finally:
            root.removeHandler(self)
            for h in others:
                h.removeFilter(self._hold)
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
