"""Server-side faults QA can switch on, and the decision for each device request.

Theory of operation
-------------------
:class:`FaultPlan` is an immutable description of what is switched on: fail the next N
device requests with 503, fail a fraction of them, add latency, drop the connection
mid-response for the next N, or serve a bad TLS certificate (expired or for the wrong
host). For each device request :func:`decide` takes the plan and a seeded
``random.Random`` and returns the :class:`FaultDecision` plus the plan that follows
(counts used up). The HTTP shell carries the decision out; the TLS mode is applied by
the shell when the plan is set, since it replaces the listener's certificate.
Only device calls (``/dd/v1``) are affected; the admin API always answers.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace


class TlsFault(enum.Enum):
    NONE = "none"
    EXPIRED = "expired"  # the server certificate's notAfter is in the past
    WRONG_HOST = "wrong-host"  # valid, signed by our CA, but for another host name


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What is switched on. The default plan is no faults."""

    fail_next: int = 0  # answer 503 to this many device requests
    fail_fraction: float = 0.0  # then answer 503 to this fraction of the rest
    latency_ms: int = 0  # added before every device response
    drop_next: int = 0  # cut the connection mid-response this many times
    tls: TlsFault = TlsFault.NONE

    def __post_init__(self) -> None:
        if self.fail_next < 0 or self.drop_next < 0:
            raise ValueError("fail_next and drop_next must be >= 0")
        if not 0.0 <= self.fail_fraction <= 1.0:
            raise ValueError(f"fail_fraction must be within 0..1, got {self.fail_fraction}")
        if not 0 <= self.latency_ms <= 600_000:
            raise ValueError(f"latency_ms must be within 0..600000, got {self.latency_ms}")

    def as_dict(self) -> dict[str, object]:
        return {"fail_next": self.fail_next, "fail_fraction": self.fail_fraction,
                "latency_ms": self.latency_ms, "drop_next": self.drop_next,
                "tls": self.tls.value}


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do with one device request."""

    status_503: bool = False
    drop: bool = False
    latency_ms: int = 0


def decide(plan: FaultPlan, rng: random.Random) -> tuple[FaultDecision, FaultPlan]:
    """The fault for the next device request, and the plan after it."""
    if plan.fail_next > 0:
        return (FaultDecision(status_503=True, latency_ms=plan.latency_ms),
                replace(plan, fail_next=plan.fail_next - 1))
    # Draw only when a fraction is set, so an idle plan never consumes randomness.
    if plan.fail_fraction > 0.0 and rng.random() < plan.fail_fraction:
        return FaultDecision(status_503=True, latency_ms=plan.latency_ms), plan
    if plan.drop_next > 0:
        return (FaultDecision(drop=True, latency_ms=plan.latency_ms),
                replace(plan, drop_next=plan.drop_next - 1))
    return FaultDecision(latency_ms=plan.latency_ms), plan
