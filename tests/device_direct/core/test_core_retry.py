"""Backoff bands, jitter, bounds, and classification of outcomes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_direct.core.retry import Backoff, Disposition, classify_error, classify_status
from device_direct.errors import (
    AuthError,
    ConnectError,
    LocalProtocolError,
    PayloadError,
    RemoteProtocolError,
    ServerRejected,
    ServerUnavailable,
    TimeoutError_,
    TLSError,
)

backoffs = st.builds(
    Backoff,
    base_s=st.floats(1.0, 60.0),
    cap_s=st.floats(60.0, 7200.0),
    attempt=st.integers(0, 200),
)


@settings(max_examples=200)
@given(backoff=backoffs, seed=st.integers(0, 2**32))
def test_delay_is_within_the_band_and_above_the_floor(backoff: Backoff, seed: int) -> None:
    delay = backoff.next_delay(random.Random(seed))
    assert backoff.floor_s <= delay <= backoff.band <= backoff.cap_s


@settings(max_examples=100)
@given(backoff=backoffs)
def test_bands_double_until_capped(backoff: Backoff) -> None:
    nxt = backoff.increment()
    assert nxt.attempt == backoff.attempt + 1
    assert nxt.band == pytest.approx(min(backoff.cap_s, 2 * backoff.band))
    assert nxt.reset() == Backoff(backoff.base_s, backoff.cap_s)


def test_default_bands() -> None:
    b = Backoff()
    bands = []
    for _ in range(12):
        bands.append(b.band)
        b = b.increment()
    assert bands[:4] == [5.0, 10.0, 20.0, 40.0]
    assert bands[-1] == 3600.0
    assert Backoff(attempt=10_000).band == 3600.0  # no float overflow


class _ZeroRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@settings(max_examples=50)
@given(attempts=st.integers(1, 500))
def test_retries_never_spin_even_when_jitter_draws_zero(attempts: int) -> None:
    """The total time for n retries is at least n * floor: no tight loop."""
    b, total = Backoff(), 0.0
    for _ in range(attempts):
        total += b.next_delay(_ZeroRandom())
        b = b.increment()
    assert total >= attempts * 1.0


def test_same_seed_same_delays() -> None:
    def delays(seed: int) -> list[float]:
        rng, b, out = random.Random(seed), Backoff(), []
        for _ in range(8):
            out.append(b.next_delay(rng))
            b = b.increment()
        return out

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_s": 0}, "base_s"),
        ({"base_s": float("nan")}, "base_s"),
        ({"cap_s": 1.0}, "cap_s"),
        ({"attempt": -1}, "attempt"),
        ({"floor_s": 10.0}, "floor_s"),
    ],
)
def test_bad_backoff_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Disposition.DONE),
        (201, Disposition.DONE),
        (400, Disposition.FINAL),
        (409, Disposition.FINAL),
        (413, Disposition.FINAL),
        (408, Disposition.RETRY),
        (429, Disposition.RETRY),
        (500, Disposition.RETRY),
        (503, Disposition.RETRY),
        (302, Disposition.FINAL),
    ],
)
def test_classify_status(status: int, expected: Disposition) -> None:
    assert classify_status(status) is expected


def test_classify_status_refuses_non_statuses() -> None:
    with pytest.raises(ValueError):
        classify_status(42)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectError("refused"), Disposition.RETRY),
        (TimeoutError_("slow"), Disposition.RETRY),
        (TLSError("bad", reason="expired"), Disposition.RETRY),
        (ServerUnavailable(503), Disposition.RETRY),
        (RemoteProtocolError("garbage"), Disposition.RETRY),
        (AuthError("cert refused"), Disposition.RETRY),
        (ServerRejected(400, "invalid-payload"), Disposition.FINAL),
        (ServerRejected(429, "slow-down"), Disposition.RETRY),
        (LocalProtocolError("bug"), Disposition.FINAL),
        (PayloadError("bad zip"), Disposition.FINAL),
        (ConnectionResetError(), Disposition.RETRY),
        (TimeoutError(), Disposition.RETRY),
        (KeyError("x"), Disposition.FINAL),
    ],
)
def test_classify_error(exc: BaseException, expected: Disposition) -> None:
    assert classify_error(exc) is expected
