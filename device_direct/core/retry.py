"""Retry policy: exponential backoff with full jitter, and which outcomes are retried.

:class:`Backoff` is an immutable value in the manner of urllib3's ``Retry``:
``increment()`` returns the next one, ``reset()`` the first. Attempt ``n`` waits a
uniformly random time in ``[floor_s, band(n)]`` with ``band(n) = min(cap_s, base_s * 2**n)``
("full jitter": a fleet that failed together does not retry together). The floor keeps a
jitter draw of 0 from turning a broken server into a tight loop.

:func:`classify_status` and :func:`classify_error` sort outcomes: 2xx is done; network
errors, timeouts, 5xx, 408 and 429 are retried; other 4xx are final when they are the
communication server's own JSON error (the transport raises :class:`ServerRejected`
for those only: the server looked at the data and refused it, sending the same bytes
again cannot help, the rejection is reported in the transfer history instead). A 4xx
in any other form came from something in between (a proxy's, load balancer's or
captive portal's page) and is a :class:`~device_direct.errors.ForeignAnswer`, a network
error: retried.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, replace

from device_direct.errors import (
    AuthError,
    DeviceDirectError,
    NetworkError,
    RemoteProtocolError,
    ServerRejected,
)

DEFAULT_BASE_S = 5.0
DEFAULT_CAP_S = 3600.0
DEFAULT_FLOOR_S = 1.0
# 4xx answers that say "not now" rather than "not this": retried like a 5xx.
RETRYABLE_4XX = frozenset({408, 425, 429})


class Disposition(enum.Enum):
    """What to do with a request after an outcome."""

    DONE = "done"  # the server took it (201 stored, 200 duplicate)
    RETRY = "retry"  # transient: try the same request again after a backoff delay
    FINAL = "final"  # refused: do not send it again as it is; report it


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter; immutable, ``increment()`` returns a new one."""

    base_s: float = DEFAULT_BASE_S
    cap_s: float = DEFAULT_CAP_S
    attempt: int = 0
    floor_s: float = DEFAULT_FLOOR_S

    def __post_init__(self) -> None:
        base = _finite(self.base_s, "base_s")
        cap = _finite(self.cap_s, "cap_s")
        floor = _finite(self.floor_s, "floor_s")
        if base <= 0:
            raise ValueError(f"base_s must be > 0, got {base}")
        if cap < base:
            raise ValueError(f"cap_s ({cap}) must be >= base_s ({base})")
        if not 0 <= floor <= base:
            raise ValueError(f"floor_s must be between 0 and base_s ({base}), got {floor}")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError(f"attempt must be an integer >= 0, got {self.attempt!r}")

    @property
    def band(self) -> float:
        """The upper end of this attempt's delay: ``min(cap, base * 2**attempt)``."""
        # Past ~1100 doublings a float overflows; long before that the cap has won.
        if self.attempt >= 64:
            return self.cap_s
        return min(self.cap_s, self.base_s * 2.0**self.attempt)

    def next_delay(self, rng: random.Random) -> float:
        """A delay in ``[floor_s, band]`` drawn from ``rng`` (full jitter)."""
        return max(self.floor_s, rng.uniform(0.0, self.band))

    def increment(self) -> Backoff:
        """The backoff for the next attempt."""
        return replace(self, attempt=self.attempt + 1)

    def reset(self) -> Backoff:
        """Back to the first attempt (after a success): this one when it is the first
        (daily, after each upload: no new one to make and check)."""
        return self if self.attempt == 0 else replace(self, attempt=0)


def classify_status(status: int) -> Disposition:
    """Sort an HTTP status of an upload or result post."""
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"not an HTTP status code: {status!r}")
    if 200 <= status < 300:
        return Disposition.DONE
    if status >= 500 or status in RETRYABLE_4XX:
        return Disposition.RETRY
    # 1xx/3xx are not answers the contract allows (redirects are not followed): treat
    # them like a refusal rather than loop on them.
    return Disposition.FINAL


def classify_error(exc: BaseException) -> Disposition:
    """Sort an exception raised while sending.

    Network trouble (connect, timeout, TLS, proxy, 5xx) and garbled answers are retried.
    A 4xx rejection (the server's JSON error) is final unless its status says "later".
    An :class:`AuthError` is retried too: the identity is wrong, not the payload, so the
    payload waits while the agent renews or registers again. Local bugs and anything
    unknown are final, so a programming error cannot keep a payload spinning.
    """
    if isinstance(exc, ServerRejected):
        return classify_status(exc.status) if 400 <= exc.status <= 599 else Disposition.FINAL
    if isinstance(exc, NetworkError | RemoteProtocolError | AuthError):
        return Disposition.RETRY
    if isinstance(exc, DeviceDirectError):
        return Disposition.FINAL
    # Untranslated socket-level errors that escaped the transport's edge.
    if isinstance(exc, OSError | TimeoutError):
        return Disposition.RETRY
    return Disposition.FINAL
