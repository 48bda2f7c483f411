"""One warning line per burst of bad input, naming the peer and the cause.

A scanner that sprays garbage at UDP 161 or TCP 9100 must not flood the log, and must
never produce a traceback: every bad datagram or stream is reported here instead.
The first report in a quiet period is logged at once as a WARNING naming the peer and
the cause; further reports within ``interval_s`` are only counted, and the next line
after the interval says how many were held back (and from how many peers).

Time comes from the injected ``now`` (seconds, monotonic). It guards a log against a
real flood, so the shells pass the event loop's real clock, not a device's virtual one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable


def peer_text(peer: object) -> str:
    """``("10.0.0.9", 5353)`` -> ``"10.0.0.9:5353"``; anything else as text."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class BadInputLog:
    """Rate-limited warnings about bad input (see module doc)."""

    __slots__ = ("_held", "_held_peers", "_interval", "_last", "_log", "_now", "_what",
                 "total")

    def __init__(self, log: logging.Logger, what: str, now: Callable[[], float], *,
                 interval_s: float = 60.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._log = log
        self._what = what
        self._now = now
        self._interval = interval_s
        self._last: float | None = None
        self._held = 0
        self._held_peers: set[str] = set()
        self.total = 0  # every report, logged or held back

    def report(self, peer: object, cause: str) -> bool:
        """Note one piece of bad input; True when a line was logged for it."""
        self.total += 1
        who = peer_text(peer)
        t = self._now()
        if self._last is not None and t - self._last < self._interval:
            self._held += 1
            if len(self._held_peers) < 64:
                self._held_peers.add(who)
            return False
        more = ""
        if self._held:
            more = (f" ({self._held} more in the last {t - self._last:.0f} s from "
                    f"{len(self._held_peers)} peer(s) not logged)" if self._last is not None
                    else "")
        self._log.warning("%s: ignored bad input from %s: %s%s", self._what, who,
                          cause[:200], more)
        self._last = t
        self._held = 0
        self._held_peers.clear()
        return True
