"""Property tests for the server's pure parts: ranges, versions, fault plans, payload checks."""

from __future__ import annotations

import io
import random
import re
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from refserver_helpers import make_zip, payload_xml

from emulator.server.faults import FaultPlan, decide
from emulator.server.firmware import (
    RangeNotSatisfiable,
    newest_offer,
    parse_range,
    parse_version,
)
from emulator.server.payload_check import (
    MAX_COMPRESSION_RATIO,
    MAX_STORED_INT,
    PayloadRejected,
    check_payload,
    read_entry,
)

NOW = datetime(2026, 1, 5, tzinfo=UTC)


@settings(max_examples=300)
@given(size=st.integers(0, 5000), first=st.one_of(st.none(), st.integers(0, 6000)),
       last=st.one_of(st.none(), st.integers(0, 6000)))
def test_parse_range_serves_exactly_the_bytes_asked_or_refuses(
    size: int, first: int | None, last: int | None
) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    body = bytes(i % 251 for i in range(size))
    # The reference: Python slicing semantics of RFC 9110 byte ranges.
    if first is None and last is None:
        expected = None
    elif first is None:
        expected = body[-last:] if last and size else None
    elif first >= size or (last is not None and last < first):
        expected = None
    else:
        expected = body[first: (last + 1 if last is not None else size)]
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable:
        assert expected is None
        return
    assert rng is not None and expected is not None
    assert body[rng.first: rng.last + 1] == expected
    assert rng.content_range == f"bytes {rng.first}-{rng.last}/{size}"


@pytest.mark.parametrize("header", ["bytes=1-2,4-5", "items=0-1", "bytes=a-b", "bytes=",
                                    "bytes=5", "bytes=--1"])
def test_parse_range_refuses_what_it_does_not_serve(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_no_range_means_whole_body() -> None:
    assert parse_range(None, 10) is None


versions = st.lists(st.integers(0, 999), min_size=1, max_size=5)


@given(versions, versions)
def test_version_order_is_numeric_per_part(a: list[int], b: list[int]) -> None:
    def norm(v: list[int]) -> list[int]:
        v = list(v)
        while len(v) > 1 and v[-1] == 0:
            v.pop()
        return v

    va, vb = parse_version(".".join(map(str, a))), parse_version(".".join(map(str, b)))
    assert (va < vb) == (norm(a) < norm(b))
    assert (va == vb) == (norm(a) == norm(b))


@pytest.mark.parametrize("bad", ["", "1.", ".1", "1..2", "v1", "1.2-beta", "1 .2"])
def test_bad_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="dotted"):
        parse_version(bad)


def test_newest_offer_picks_the_newest_unexpired_newer_version() -> None:
    def entry(version: str, expires: datetime) -> dict[str, object]:
        return {"manifest": {"version": version,
                             "expires_at": expires.isoformat().replace("+00:00", "Z")},
                "signature": version}

    later, earlier = NOW + timedelta(days=1), NOW - timedelta(seconds=1)
    catalog = [entry("1.10", later), entry("1.9", later), entry("2.0", earlier)]
    offer = newest_offer(catalog, version="1.2", now=NOW)
    assert offer is not None and offer["signature"] == "1.10"
    assert newest_offer(catalog, version="1.10.0", now=NOW) is None


plans = st.builds(
    FaultPlan,
    fail_next=st.integers(0, 5),
    fail_fraction=st.sampled_from([0.0, 0.25, 1.0]),
    latency_ms=st.integers(0, 50),
    drop_next=st.integers(0, 5),
)


@given(plans, st.integers(0, 2**32), st.integers(1, 30))
def test_fault_plans_use_up_their_counts_in_order(plan: FaultPlan, seed: int,
                                                  requests: int) -> None:
    rng = random.Random(seed)
    fails = drops = 0
    state = plan
    for i in range(requests):
        decision, state = decide(state, rng)
        assert decision.latency_ms == plan.latency_ms
        assert not (decision.status_503 and decision.drop)
        if i < plan.fail_next:
            assert decision.status_503  # the burst comes first
        fails += decision.status_503
        drops += decision.drop
    assert drops <= plan.drop_next
    if plan.fail_fraction == 0.0:
        assert fails == min(requests, plan.fail_next)
        assert drops == min(max(requests - plan.fail_next, 0), plan.drop_next)
    if plan.fail_fraction == 1.0:
        assert fails == requests and drops == 0


def test_fault_plan_validation() -> None:
    with pytest.raises(ValueError, match="fail_fraction"):
        FaultPlan(fail_fraction=1.5)
    with pytest.raises(ValueError, match="fail_next"):
        FaultPlan(fail_next=-1)


def test_sample_payload_passes_every_check() -> None:
    upload_id, xml = payload_xml(sequence=3)
    facts = check_payload(make_zip({"device-data.xml": xml}), upload_id=upload_id)
    assert facts.sequence == 3 and facts.serial == "EMU8055001"
    assert len(facts.meters) == 14 and len(facts.supplies) == 8 and len(facts.faults) == 4


@pytest.mark.parametrize(("old", "where"), [
    ('sequence="3"', "DeviceData/@sequence"),
    ('<Meter name="black-impressions">121877<', "Meter 'black-impressions'"),
    ('capacity="31000"', "Supply 1 @capacity"),
    ('impressions="184210"', "Fault 071-105 @impressions"),
])
def test_a_number_too_big_to_store_is_refused_naming_it(old: str, where: str) -> None:
    # The schema's integers are unbounded; SQLite's are 64-bit. One past the limit was
    # an OverflowError in the database: a 500 the device retried forever.
    upload_id, xml = payload_xml(sequence=3)
    big = str(MAX_STORED_INT + 1)
    assert old.encode() in xml
    xml = xml.replace(old.encode(), re.sub(r"\d+", big, old).encode(), 1)
    with pytest.raises(PayloadRejected) as info:
        check_payload(make_zip({"device-data.xml": xml}), upload_id=upload_id)
    assert info.value.status == 422 and info.value.error == "schema_invalid"
    assert where in info.value.detail and big in info.value.detail
    at_limit = xml.replace(big.encode(), str(MAX_STORED_INT).encode())
    check_payload(make_zip({"device-data.xml": at_limit}), upload_id=upload_id)


def test_a_payload_with_no_meters_supplies_or_faults_passes_the_number_check() -> None:
    from emulator.server.payload_check import _check_stored_ints

    _check_stored_ints(3, {}, (), ())  # max() of one number (a manager's bare reading)


def test_a_bomb_that_lies_about_its_size_is_stopped_while_inflating() -> None:
    body = bytearray(make_zip({"device-data.xml": b"\0" * (4 << 20)}))
    # Patch the declared sizes in both headers down to look like a small, sane entry.
    with zipfile.ZipFile(io.BytesIO(bytes(body))) as zf:
        info = zf.infolist()[0]
    small = (info.compress_size * 5).to_bytes(4, "little")
    local = body.find(b"PK\x03\x04")
    body[local + 22: local + 26] = small
    central = body.find(b"PK\x01\x02")
    body[central + 24: central + 28] = small
    with pytest.raises(PayloadRejected) as info_exc:
        read_entry(bytes(body))
    assert info_exc.value.error in ("zip_bomb", "bad_zip")
    assert MAX_COMPRESSION_RATIO > 5


@settings(max_examples=150)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_checker(data: bytes) -> None:
    try:
        check_payload(data, upload_id="00000000-0000-4000-8000-000000000000")
    except PayloadRejected as exc:
        assert exc.status in (413, 422) and exc.detail
    else:  # pragma: no cover - random bytes are not a valid payload
        raise AssertionError("random bytes were accepted")


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 4000))
def test_corrupted_valid_zips_are_rejected_cleanly(junk: bytes, offset: int) -> None:
    upload_id, xml = payload_xml()
    body = bytearray(make_zip({"device-data.xml": xml}))
    pos = offset % len(body)
    body[pos: pos + len(junk)] = junk
    try:
        facts = check_payload(bytes(body), upload_id=upload_id)
    except PayloadRejected as exc:
        assert exc.detail
    else:
        assert facts.upload_id == upload_id  # the corruption hit something unused


def _claim_zip_version(body: bytes, version: int) -> bytes:
    """``body`` with its central directory's "version needed to extract" set to ``version``."""
    out = bytearray(body)
    at = out.index(b"PK\x01\x02")
    out[at + 6: at + 8] = version.to_bytes(2, "little")
    return bytes(out)


def test_a_zip_of_a_version_zipfile_cannot_read_is_rejected_cleanly() -> None:
    # Hypothesis once found it: a header claiming zip version 11.6 made zipfile raise
    # NotImplementedError from the constructor, which escaped both readers.
    from device_direct.core.payload import PayloadError, read_payload

    upload_id, xml = payload_xml()
    body = _claim_zip_version(make_zip({"device-data.xml": xml}), 116)
    with pytest.raises(PayloadRejected, match="not a zip"):
        check_payload(body, upload_id=upload_id)
    with pytest.raises(PayloadError, match="zip"):
        read_payload(body)
