"""Payload XML and zip: schema validity, determinism, privacy filter, read-back errors."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from payload_samples import (
    ALERT_EMAIL,
    HOSTNAME,
    IP_ADDRESSES,
    JOB_EMAIL,
    JOB_NAME,
    PERSONAL,
    PROPERTY_EMAIL,
    T0,
    USER,
    make_snapshot,
)

from device_direct.core import payload as payload_module
from device_direct.core.payload import (
    ENTRY_NAME,
    MAX_FAULTS,
    MAX_TEXT,
    MAX_TRANSFERS,
    NAMESPACE,
    PayloadMeta,
    ProxyRoute,
    TransferRecord,
    _own_payload_head_id,
    build_xml,
    format_time,
    new_upload_id,
    pack_zip,
    payload_upload_id,
    read_payload,
    read_payload_head_id,
    read_payload_id,
)
from device_direct.core.privacy import PrivacyPolicy, TextScrubber, looks_like_email
from device_direct.errors import PayloadError
from device_direct.model import Counters, Fault, Property

XSD = Path(__file__).resolve().parents[3] / "fixtures" / "payload.xsd"
SCHEMA = etree.XMLSchema(etree.parse(str(XSD)))
META = PayloadMeta("12345678-1234-4234-8234-123456789abc", 7, T0, "scheduled")
NS = {"p": NAMESPACE}


def assert_valid(xml: bytes) -> etree._Element:
    doc = etree.fromstring(xml)
    if not SCHEMA.validate(doc):
        pytest.fail(f"payload does not validate: {SCHEMA.error_log}")
    return doc


def record(i: int, result: str = "stored") -> TransferRecord:
    return TransferRecord(
        at=T0 + timedelta(minutes=i), result=result, bytes=1000 + i, upload_id=new_upload_id(i)
    )


# -- schema and shape --------------------------------------------------------------------


def test_default_payload_is_valid_and_carries_the_meta() -> None:
    xml = build_xml(make_snapshot(), META, policy=PrivacyPolicy())
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    doc = assert_valid(xml)
    assert doc.get("uploadId") == META.upload_id
    assert doc.get("sequence") == "7"
    assert doc.get("generatedAt") == "2026-03-29T02:00:00Z"
    assert doc.get("trigger") == "scheduled"
    meters = {m.get("name"): int(m.text) for m in doc.iterfind("p:Counters/p:Meter", NS)}
    assert meters["total-impressions"] == 10_000
    assert len(meters) == len(dataclasses.fields(Counters))


def test_everything_consented_with_history_and_proxy_is_valid() -> None:
    policy = PrivacyPolicy(send_job_data=True, send_engineering=True)
    xml = build_xml(
        make_snapshot(),
        META,
        policy=policy,
        transfer_history=[record(1), record(2, "failed"), record(3, "dropped")],
        proxy=ProxyRoute("PROXY proxy.example:3128", "wpad-dns"),
        engineering_log="boot ok\nfuser warm\x00up",
    )
    doc = assert_valid(xml)
    assert len(doc.findall("p:Usage/p:JobLog/p:Job", NS)) == 2
    assert doc.find("p:Engineering", NS).text == "boot ok\nfuser warmup"
    results = [t.get("result") for t in doc.iterfind("p:Status/p:TransferHistory/p:Transfer", NS)]
    assert results == ["stored", "failed", "dropped"]
    assert doc.find("p:Network/p:Proxy", NS).get("source") == "wpad-dns"


def test_limits_keep_newest_40_faults_last_100_transfers_and_cut_text() -> None:
    long = "x" * 1000
    snap = make_snapshot(faults=55)
    snap = dataclasses.replace(
        snap,
        properties=(*snap.properties, Property("long", long)),
        faults=tuple(reversed(snap.faults)),  # the model's order must not matter
    )
    history = [record(i) for i in range(150)]
    doc = assert_valid(build_xml(snap, META, policy=PrivacyPolicy(), transfer_history=history))
    faults = doc.findall("p:Status/p:FaultHistory/p:Fault", NS)
    assert len(faults) == MAX_FAULTS
    times = [f.get("at") for f in faults]
    assert times == sorted(times, reverse=True)
    newest = max(snap.faults, key=lambda f: f.at)
    assert faults[0].get("code") == newest.code
    transfers = doc.findall("p:Status/p:TransferHistory/p:Transfer", NS)
    assert len(transfers) == MAX_TRANSFERS
    assert transfers[-1].get("bytes") == str(1000 + 149)
    prop = doc.find("p:Properties/p:Property[@name='long']", NS)
    assert prop.get("value") == "x" * MAX_TEXT


def test_same_input_gives_same_bytes() -> None:
    a = build_xml(make_snapshot(), META, policy=PrivacyPolicy(), transfer_history=[record(1)])
    b = build_xml(make_snapshot(), META, policy=PrivacyPolicy(), transfer_history=[record(1)])
    assert a == b
    assert pack_zip(a) == pack_zip(b)
    other = dataclasses.replace(META, sequence=8)
    assert build_xml(make_snapshot(), other, policy=PrivacyPolicy()) != a


def test_a_payload_without_personal_data_scrubs_no_text_one_by_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text a payload writes is known to the scrubber before the build, so one
    without personal data in it needs no text-by-text scrub (which sorts the day's
    names and looks for each). The install date once went through it, in every payload."""
    snap = dataclasses.replace(
        make_snapshot(),
        properties=(Property("memory", "4096 MB"), Property("admin-contact", "ext 42")),
        alerts=(dataclasses.replace(make_snapshot().alerts[0], description="Black toner low"),))
    scrubbed: list[str] = []
    real = TextScrubber.scrub

    def spy(self: TextScrubber, text: str) -> str:
        scrubbed.append(text)
        return real(self, text)

    monkeypatch.setattr(TextScrubber, "scrub", spy)
    xml = build_xml(snap, META, policy=PrivacyPolicy(), transfer_history=[record(1)],
                    proxy=ProxyRoute("DIRECT", "off"))
    assert scrubbed == []
    assert b"<InstallDate>2024-05-17</InstallDate>" in xml
    assert_valid(xml)


def test_zip_has_one_entry_fixed_timestamp_and_round_trips() -> None:
    xml = build_xml(make_snapshot(), META, policy=PrivacyPolicy())
    data = pack_zip(xml)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (info,) = zf.infolist()
    assert info.filename == ENTRY_NAME
    assert info.date_time == (1980, 1, 1, 0, 0, 0)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert read_payload(data) == xml
    assert payload_upload_id(xml) == META.upload_id


# -- privacy -------------------------------------------------------------------------------


def test_default_policy_leaks_no_personal_data() -> None:
    snap = make_snapshot()
    xml = build_xml(snap, META, policy=PrivacyPolicy(), engineering_log=f"job of {USER}")
    data = pack_zip(xml)
    text = xml.decode()
    for secret in (*PERSONAL, "job of"):
        assert secret not in text, secret
        assert secret.encode() not in data
        assert secret.encode() not in read_payload(data)
    assert "JobLog" not in text
    assert "Engineering" not in text
    assert not looks_like_email(text)
    assert_valid(xml)


def test_job_consent_sends_the_job_log_but_still_scrubs_free_text() -> None:
    xml = build_xml(make_snapshot(), META, policy=PrivacyPolicy(send_job_data=True)).decode()
    for secret in (USER, JOB_NAME, JOB_EMAIL):
        assert secret in xml  # in JobLog, with consent
    # E-mail addresses in descriptions and property values are never sent.
    assert PROPERTY_EMAIL not in xml
    assert ALERT_EMAIL not in xml


def test_engineering_log_only_with_consent_and_scrubbed() -> None:
    log = f"heater trace; contact {ALERT_EMAIL}"
    without = build_xml(make_snapshot(), META, policy=PrivacyPolicy(), engineering_log=log)
    assert b"heater trace" not in without
    policy = PrivacyPolicy(send_engineering=True)
    with_consent = build_xml(make_snapshot(), META, policy=policy, engineering_log=log)
    assert b"heater trace" in with_consent
    assert ALERT_EMAIL.encode() not in with_consent
    assert_valid(with_consent)


def test_locked_down_reports_no_addresses() -> None:
    snap = make_snapshot()
    snap = dataclasses.replace(
        snap, properties=(*snap.properties, Property("dns", f"{IP_ADDRESSES[2]} primary"))
    )
    xml = build_xml(snap, META, policy=PrivacyPolicy(locked_down=True))
    doc = assert_valid(xml)
    for secret in (*IP_ADDRESSES, HOSTNAME):
        assert secret.encode() not in xml
    assert doc.find("p:Network/p:MAC", NS) is not None
    assert doc.find("p:Network/p:IPv4", NS) is None
    normal = build_xml(snap, META, policy=PrivacyPolicy())
    assert IP_ADDRESSES[0].encode() in normal  # the test would pass vacuously otherwise


_emails = st.builds(
    lambda user, host: f"{user}@{host}.example",
    st.from_regex(r"[a-z][a-z0-9._+-]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise=st.text(max_size=400), email=_emails, position=st.integers(0, 400))
def test_any_free_text_validates_and_never_carries_an_email(
    noise: str, email: str, position: int
) -> None:
    text = noise[:position] + " " + email + " " + noise[position:]
    snap = make_snapshot()
    snap = dataclasses.replace(
        snap,
        properties=(Property(noise[:300] or "n", text),),
        faults=(Fault("010-397", noise, text, T0, 1),),
    )
    xml = build_xml(snap, META, policy=PrivacyPolicy(), engineering_log=text)
    assert_valid(xml)
    assert email.encode() not in xml


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: dataclasses.replace(s, counters=Counters(black_impressions=-1)),
            "counters.black_impressions",
        ),
        (
            lambda s: dataclasses.replace(s, faults=(Fault("10-1", "x", "y", T0, 1),)),
            "fault.code",
        ),
        (
            lambda s: dataclasses.replace(
                s, faults=(Fault("010-001", "x", "y", T0.replace(tzinfo=None), 1),)
            ),
            "fault.at",
        ),
    ],
)
def test_values_the_schema_cannot_express_are_refused_by_name(change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PayloadError, match=message):
        build_xml(change(make_snapshot()), META, policy=PrivacyPolicy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upload_id": "12345678-1234-4234-8234-123456789ABC"}, "upload_id"),
        ({"sequence": -1}, "sequence"),
        ({"generated_at": datetime(2026, 1, 1)}, "generated_at"),
        ({"trigger": "hourly"}, "trigger"),
    ],
)
def test_meta_is_validated(kwargs: dict[str, object], message: str) -> None:
    base = {"upload_id": META.upload_id, "sequence": 1, "generated_at": T0, "trigger": "action"}
    base.update(kwargs)
    with pytest.raises(PayloadError, match=message):
        PayloadMeta(**base)  # type: ignore[arg-type]


def test_transfer_record_is_validated() -> None:
    with pytest.raises(PayloadError, match="result"):
        TransferRecord(at=T0, result="lost", bytes=1)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="bytes"):
        TransferRecord(at=T0, result="stored", bytes=-5)
    with pytest.raises(PayloadError, match="aware"):
        TransferRecord(at=datetime(2026, 1, 1), result="stored", bytes=5)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK not really", "not a zip"),
        (b"", "not a zip"),
        (_zip({}), "exactly"),
        (_zip({"other.xml": b"<a/>"}), "exactly"),
        (_zip({ENTRY_NAME: b"<a/>", "extra": b""}), "exactly"),
        (_zip({ENTRY_NAME: b"<DeviceData"}), "well-formed"),
        (_zip({ENTRY_NAME: b"<DeviceData/>"}), "root"),
    ],
)
def test_read_payload_names_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        read_payload(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK not really", "not a zip"),
        (_zip({ENTRY_NAME: b"<a/>", "extra": b""}), "exactly"),
        (_zip({ENTRY_NAME: b"<Device<Data"}), "well-formed"),
        (_zip({ENTRY_NAME: b"<DeviceData/>"}), "DeviceData"),
        (_zip({ENTRY_NAME: b""}), "DeviceData"),
    ],
)
def test_head_check_names_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        read_payload_head_id(data)


def test_head_check_reads_the_upload_id_of_a_built_payload() -> None:
    data = pack_zip(build_xml(make_snapshot(), META, policy=PrivacyPolicy()))
    assert read_payload_head_id(data) == META.upload_id
    other = dataclasses.replace(META, upload_id="12345678-1234-4234-8234-123456789abc")
    data = pack_zip(build_xml(make_snapshot(), other, policy=PrivacyPolicy()))
    assert read_payload_head_id(data) == other.upload_id


def test_head_check_fast_path_takes_only_what_pack_zip_writes() -> None:
    """Our own payloads are read from their bytes; every other layout goes through the
    full zip and XML check, which gives the same answer or names what is wrong."""
    xml = build_xml(make_snapshot(), META, policy=PrivacyPolicy())
    assert _own_payload_head_id(pack_zip(xml)) == META.upload_id
    stored = _zip({ENTRY_NAME: xml})
    deflated_by_zipfile = _zip({ENTRY_NAME: xml}, compression=zipfile.ZIP_DEFLATED)
    commented = pack_zip(xml)[:-2] + b"\x02\x00hi"
    for other in (stored, commented):
        assert _own_payload_head_id(other) is None
        assert read_payload_head_id(other) == META.upload_id
    # zipfile's own deflated layout has the same headers: the fast path may take it.
    assert read_payload_head_id(deflated_by_zipfile) == META.upload_id
    # Another namespace, or an uploadId that is not a lower-case UUID: refused either way.
    foreign = pack_zip(xml.replace(NAMESPACE.encode(), b"urn:other:1"))
    upper = pack_zip(xml.replace(META.upload_id.encode(), META.upload_id.upper().encode()))
    two = _zip({ENTRY_NAME: xml, "extra": b""})
    for bad in (foreign, upper, two):
        assert _own_payload_head_id(bad) is None
        with pytest.raises(PayloadError):
            read_payload_head_id(bad)


@settings(max_examples=60, deadline=None)
@given(sequence=st.integers(0, 10**9), bits=st.integers(0, 2**128 - 1),
       trigger=st.sampled_from(["scheduled", "on-demand", "action"]))
def test_head_check_fast_path_agrees_with_the_full_read(
        sequence: int, bits: int, trigger: str) -> None:
    meta = PayloadMeta(new_upload_id(bits), sequence, T0, trigger)  # type: ignore[arg-type]
    data = pack_zip(build_xml(make_snapshot(), meta, policy=PrivacyPolicy()))
    assert read_payload_head_id(data) == read_payload_id(data)[1] == meta.upload_id


def test_read_payload_refuses_oversized_and_corrupt_entries() -> None:
    xml = build_xml(make_snapshot(), META, policy=PrivacyPolicy())
    data = pack_zip(xml)
    with pytest.raises(PayloadError, match="limit"):
        read_payload(data, max_xml_bytes=len(xml) - 1)
    assert read_payload(data, max_xml_bytes=len(xml)) == xml
    # Flip a byte inside the compressed data: the CRC or inflate must catch it.
    offset = 30 + len(ENTRY_NAME) + 20
    broken = data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]
    with pytest.raises(PayloadError):
        read_payload(broken)


def test_new_upload_id_is_a_v4_uuid() -> None:
    value = new_upload_id(0)
    assert value[14] == "4"
    PayloadMeta(value, 0, T0)


@given(bits=st.integers(min_value=0, max_value=(1 << 130)))
def test_new_upload_id_is_what_the_uuid_module_makes(bits: int) -> None:
    import uuid

    assert new_upload_id(bits) == str(uuid.UUID(int=bits & ((1 << 128) - 1), version=4))


def test_an_upload_id_is_the_whole_string() -> None:
    from device_direct.core.payload import is_upload_id

    good = "12345678-1234-4234-8234-123456789abc"
    assert is_upload_id(good)
    for bad in (good + "\n", good + "0", " " + good, good.upper(), good[:-1]):
        assert not is_upload_id(bad), bad


def _is_xml_char(code: int) -> bool:
    # The XML 1.0 Char production, written out as the spec has it.
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def test_text_cleaning_keeps_exactly_the_xml_char_production() -> None:
    # Every code point, once: the cleaning pattern is the short complement of the
    # production, so check it is the exact complement.
    every = "".join(map(chr, range(0x110000)))
    kept = "".join(c for c in every if _is_xml_char(ord(c)))
    assert payload_module._clean(every, limit=None) == kept


def _scrub_reference(names: tuple[str, ...], locked_down: bool, text: str) -> str:
    """The scrubber's rule, written the plain way (every name tried in turn)."""
    import device_direct.core.privacy as privacy

    text = privacy._EMAIL.sub(privacy.EMAIL_REPLACEMENT, text)
    for name in names:
        if name in text:
            text = text.replace(name, privacy.PERSONAL_REPLACEMENT)
    if locked_down:
        text = privacy._IPV4.sub(privacy.IP_REPLACEMENT, text)
    return text


_SCRUB_ALPHABET = st.sampled_from(list("ab.@[]ersonal x1\0"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=st.lists(st.tuples(st.text(_SCRUB_ALPHABET, max_size=10),
                              st.text(_SCRUB_ALPHABET, max_size=14)), max_size=6),
    texts=st.lists(st.text(_SCRUB_ALPHABET, max_size=40), max_size=12),
    locked_down=st.booleans(),
)
def test_scrubber_shortcuts_give_the_plain_rules_answer(
    people: list[tuple[str, str]], texts: list[str], locked_down: bool
) -> None:
    # The scrubber skips names longer than the text, remembers answers, and skips the
    # names for texts it was told in advance hold none (half of them here, plus others);
    # none of that may change a single character of what the plain rule gives.
    from device_direct.core.privacy import TextScrubber
    from device_direct.model import JobKind, JobRecord

    jobs = [JobRecord(JobKind.PRINT, T0, 1, 1, user=u, job_name=j) for u, j in people]
    policy = PrivacyPolicy(locked_down=locked_down)
    plain = TextScrubber(policy, jobs)
    told = TextScrubber(policy, jobs, texts=[*texts[::2], "ab\0ba", "x"])
    # The names: every user, job name and address of the log, trimmed, of 3 characters
    # or more.
    assert set(plain._names) == {
        v.strip() for job in jobs for v in (job.user, job.job_name, job.email)
        if len(v.strip()) >= 3}
    for text in [*texts, *texts]:
        expected = _scrub_reference(plain._names, locked_down, text)
        assert plain.scrub(text) == expected
        assert told.scrub(text) == expected


@settings(max_examples=200, deadline=None)
@given(when=st.datetimes(timezones=st.timezones()), offset_min=st.integers(-14 * 60, 14 * 60))
def test_format_time_is_utc_with_z(when: datetime, offset_min: int) -> None:
    """xs:dateTime in UTC: the same instant, a Z, microseconds only when there are some."""
    from datetime import UTC, timezone

    for value in (when, when.astimezone(timezone(timedelta(minutes=offset_min)))):
        utc = value.astimezone(UTC)
        expected = utc.isoformat(
            timespec="microseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")
        assert format_time(value) == expected
        assert datetime.fromisoformat(format_time(value)) == utc


def test_format_time_refuses_naive_times() -> None:
    with pytest.raises(PayloadError, match=r"fault\.at must be an aware datetime"):
        format_time(datetime(2026, 1, 1), "fault.at")
