"""The printer web server's admin login: password check, sessions, CSRF, throttling.

Sans-I/O: every method takes ``now`` (from the device's injected clock) and nothing
here touches a socket. The password is kept only as a salted scrypt hash. A session
is a random id (the cookie) with a CSRF token of its own and an idle expiry: each page
an admin opens pushes the expiry out again, up to a hard limit from the login. Wrong
passwords are throttled per client address: after ``free_attempts`` failures each
further attempt must wait a delay that doubles up to ``max_delay``, and a success
clears the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SESSION_COOKIE = "dd_session"


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


@dataclass(frozen=True, slots=True)
class AdminPassword:
    """The device's admin password, as a salted hash."""

    salt: bytes
    digest: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.salt) < 16 or len(self.digest) != 32:
            raise ValueError("an admin password hash needs a 16+ byte salt and a 32 byte digest")

    @classmethod
    def from_text(cls, password: str) -> AdminPassword:
        if not 4 <= len(password) <= 128 or not password.isprintable():
            raise ValueError("the admin password must be 4-128 printable characters")
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(password, salt))

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(_scrypt(password[:256], self.salt), self.digest)


@dataclass(slots=True)
class Session:
    sid: str
    csrf: str
    created: datetime
    expires: datetime


class Sessions:
    """Admin sessions with an idle expiry and a hard limit."""

    def __init__(self, *, idle: timedelta = timedelta(minutes=15),
                 limit: timedelta = timedelta(hours=8)) -> None:
        if idle <= timedelta(0) or limit < idle:
            raise ValueError("session idle time must be > 0 and <= the hard limit")
        self.idle = idle
        self.limit = limit
        self._sessions: dict[str, Session] = {}

    def create(self, now: datetime) -> Session:
        self._sweep(now)
        s = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), now, now + self.idle)
        self._sessions[s.sid] = s
        return s

    def get(self, sid: str | None, now: datetime) -> Session | None:
        """The live session for cookie ``sid`` (its expiry pushed out), or None."""
        s = self._sessions.get(sid or "")
        if s is None:
            return None
        if now >= s.expires:
            del self._sessions[s.sid]
            return None
        s.expires = min(now + self.idle, s.created + self.limit)
        return s

    def drop(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)

    def _sweep(self, now: datetime) -> None:
        for sid in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[sid]


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


class LoginThrottle:
    """Wrong passwords per client: a few free tries, then a doubling wait."""

    def __init__(self, *, free_attempts: int = 3, base_delay: timedelta = timedelta(seconds=2),
                 max_delay: timedelta = timedelta(minutes=5)) -> None:
        if free_attempts < 1 or base_delay <= timedelta(0) or max_delay < base_delay:
            raise ValueError("bad login throttle settings")
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[str, tuple[int, datetime]] = {}

    def wait(self, client: str, now: datetime) -> timedelta:
        """How long ``client`` must still wait before its next attempt (0: may try)."""
        count, last = self._failures.get(client, (0, now))
        if count < self.free_attempts:
            return timedelta(0)
        delay: timedelta = min(self.base_delay * 2 ** (count - self.free_attempts),
                               self.max_delay)
        return max(timedelta(0), last + delay - now)

    def failed(self, client: str, now: datetime) -> None:
        count, _ = self._failures.get(client, (0, now))
        self._failures[client] = (count + 1, now)
        if len(self._failures) > 10_000:  # bounded: forget the oldest clients
            for key in sorted(self._failures, key=lambda k: self._failures[k][1])[:1000]:
                del self._failures[key]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
