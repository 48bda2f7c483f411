"""The control panel of the emulated printer: what its display says, and its lights.

Theory of operation
-------------------
One text is shown on the panel at any instant, and every face of the printer reports
that same text: SNMP's prtConsoleDisplayBufferText, PJL's ``DISPLAY=`` in INFO STATUS
and USTATUS, and the ``console-display`` property of the payload. :func:`display_text`
decides it from the power state, the active alerts and two messages a host may set
over PJL (HP PJL Technical Reference, "RDYMSG" and "OPMSG"):

- the ready message (``@PJL RDYMSG DISPLAY="..."``) replaces the ready text while the
  printer is ready; an empty one restores the default;
- the operator message (``@PJL OPMSG DISPLAY="..."``) is shown and takes the printer
  off line until someone presses Continue on the panel (:meth:`Console.press_continue`)
  or the power is cycled.

Order of precedence: a critical alert (its description), booting, faulted, the
operator message (off line), printing, energy saver, the ready message, a warning
alert, the ready text. The messages are volatile, like on a real printer: the device
forgets them on power loss or reboot (:meth:`Console.reset`).

Sans-I/O: plain values in, a string out. :attr:`Console.revision` grows with every
change so a reader that caches a view (the SNMP agent) knows when to refresh it.
"""

from __future__ import annotations

from collections.abc import Iterable

from device_direct.model import Alert, PowerState, Severity

READY_TEXT = "Ready to print"
MAX_CHARS = 40  # prtConsoleNumberOfDisplayChars; PJL messages are cut to it
DISPLAY_LINES = 1


def clean(text: str) -> str:
    """A message as the panel can show it: printable, no double quotes, 40 characters."""
    shown = "".join(ch if ch.isprintable() else " " for ch in text).replace('"', "'")
    return shown.strip()[:MAX_CHARS]


class Console:
    """The panel's volatile messages (see module doc)."""

    __slots__ = ("operator_message", "ready_message", "revision")

    def __init__(self) -> None:
        self.ready_message = ""
        self.operator_message = ""
        self.revision = 0

    @property
    def offline(self) -> bool:
        """True while an operator message holds the printer off line."""
        return bool(self.operator_message)

    def set_ready_message(self, text: str) -> None:
        """``@PJL RDYMSG``: shown instead of the ready text ("" restores it)."""
        self.ready_message = clean(text)
        self.revision += 1

    def set_operator_message(self, text: str) -> None:
        """``@PJL OPMSG``: shown, and the printer goes off line until Continue."""
        self.operator_message = clean(text) or "Press Continue"
        self.revision += 1

    def press_continue(self) -> None:
        """The Continue key: the operator message goes and the printer is on line."""
        if self.operator_message:
            self.operator_message = ""
            self.revision += 1

    def reset(self) -> None:
        """Power cycle: both messages are forgotten."""
        if self.ready_message or self.operator_message:
            self.ready_message = self.operator_message = ""
            self.revision += 1

    def display(self, power: PowerState, alerts: Iterable[Alert]) -> str:
        """The text on the panel now."""
        return display_text(power, tuple(alerts), self.ready_message, self.operator_message)


def display_text(power: PowerState, alerts: tuple[Alert, ...], ready_message: str = "",
                 operator_message: str = "") -> str:
    """Apply the precedence of the module doc."""
    critical = [a for a in alerts if a.severity is Severity.CRITICAL]
    if power is PowerState.OFF:
        return ""
    if critical:
        return clean(critical[0].description)
    if power is PowerState.BOOTING:
        return "Warming up"
    if power is PowerState.FAULTED:
        return "Call for service"
    if operator_message:
        return operator_message
    if power is PowerState.PRINTING:
        return "Printing"
    if power is PowerState.SLEEPING:
        return "Energy saver"
    if ready_message:
        return ready_message
    warnings = [a for a in alerts if a.severity is Severity.WARNING]
    if warnings:
        return clean(f"Ready; {warnings[0].description}")
    return READY_TEXT
