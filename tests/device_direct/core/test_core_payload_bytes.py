"""The payload's exact bytes, and the shortcuts that build them.

``build_xml`` formats its repeated elements itself and writes the texts the scrubber
and cleaning leave as they are without calling either; ``pack_zip`` writes the zip with
``zlib`` and ``struct``. None of that may change a byte: the digests below are those of
the payloads the generic writer (``XmlWriter.leaf`` for every element, every text
scrubbed, cleaned and escaped) and ``zipfile`` built for the same inputs, at the commit
before these shortcuts (a627848). A deliberate change of the document updates them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Callable
from datetime import UTC, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from payload_samples import (
    ALERT_EMAIL,
    IP_ADDRESSES,
    JOB_NAME,
    T0,
    USER,
    make_snapshot,
)

from device_direct.core import payload as payload_module
from device_direct.core.payload import (
    PayloadMeta,
    ProxyRoute,
    TransferRecord,
    build_xml,
    new_upload_id,
    pack_zip,
    pack_zip_zipfile,
    read_payload,
)
from device_direct.core.privacy import PrivacyPolicy, TextScrubber
from device_direct.core.xmlwrite import attr_value, plain, text_value
from device_direct.errors import PayloadError
from device_direct.model import (
    Alert,
    DeviceSnapshot,
    Fault,
    HfsiItem,
    Identity,
    JobKind,
    JobRecord,
    NvmSetting,
    Property,
    Severity,
    Supply,
)

META = PayloadMeta("12345678-1234-4234-8234-123456789abc", 7, T0, "scheduled")
# Everything the XML must escape or drop, personal data, an address, a long text.
HOSTILE = ("a<b>&c \"quoted\" 'single'", "tab\there\nnew\rline", "ctrl\x01\x0bchar\ufffe",
           "caf\u00e9 \u2603 \U0001f5a8", f"mail {ALERT_EMAIL} now", f"{USER} printed {JOB_NAME}",
           f"gateway {IP_ADDRESSES[2]}", "y" * 300, "", " ")


def _history() -> list[TransferRecord]:
    return [TransferRecord(T0 + timedelta(minutes=i), result, 900 + i, new_upload_id(i),
                           detail)
            for i, (result, detail) in enumerate([
                ("stored", ""), ("failed", "connect: <refused> & \"reset\""),
                ("dropped", "payload does not fit in the outbox budget"),
                ("rejected", "422 bad\tschema"), ("stored", "")])]


def _hostile() -> DeviceSnapshot:
    snap = make_snapshot(faults=4, jobs=3)
    texts = HOSTILE
    return dataclasses.replace(
        snap,
        identity=dataclasses.replace(
            snap.identity, manufacturer=texts[0], model=texts[3], serial=texts[1],
            firmware={texts[0]: texts[2], "sys": texts[6]}, installed_options=texts),
        properties=tuple(Property(f"p{i}-{t[:20]}", t) for i, t in enumerate(texts)),
        alerts=tuple(Alert(index=i + 1, severity=Severity.CRITICAL, code=1101, group=11,
                           group_index=1, location=0, description=t,
                           raised_at=T0 - timedelta(minutes=i))
                     for i, t in enumerate(texts)),
        faults=tuple(Fault(f"010-{i:03d}", t, texts[-1 - i], T0 - timedelta(hours=i), i,
                           i % 2 == 0) for i, t in enumerate(texts)),
        supplies=tuple(Supply(index=i + 1, name=t, type="toner", unit=texts[i - 1],
                              capacity=100, level=-3 if i % 2 else 50,
                              colorant=texts[-1 - i], status=t, serial=texts[i - 2],
                              part_number=t, lifetime_impressions=i,
                              installed_at=T0 if i % 2 else None)
                       for i, t in enumerate(texts)),
        hfsi=tuple(HfsiItem(f"950-{i:03d}", t, i, 10, 20, texts[i - 3], i,
                            T0 if i % 2 else None) for i, t in enumerate(texts)),
        nvm=tuple(NvmSetting(f"700-{i:03d}", t, i, 0, -5, 50, i % 2 == 0)
                  for i, t in enumerate(texts)),
        jobs=(*snap.jobs, JobRecord(JobKind.COPY, T0, 1, 1, user=texts[0],
                                    job_name=texts[2], email="")),
    )


def _bare() -> DeviceSnapshot:
    snap = make_snapshot(faults=0, jobs=0)
    return dataclasses.replace(
        snap, identity=Identity("m", "n", "s", "p", {}), properties=(), alerts=(), faults=(),
        supplies=(), hfsi=(), nvm=())


CASES: dict[str, Callable[[], bytes]] = {
    "default": lambda: build_xml(make_snapshot(), META, policy=PrivacyPolicy()),
    "consented": lambda: build_xml(
        make_snapshot(), META, policy=PrivacyPolicy(send_job_data=True, send_engineering=True),
        transfer_history=_history(), proxy=ProxyRoute("PROXY proxy.example:3128", "wpad-dns"),
        engineering_log="boot ok\nfuser warm\x00up <&>"),
    "locked-down, limits": lambda: build_xml(
        make_snapshot(faults=55), META, policy=PrivacyPolicy(locked_down=True),
        transfer_history=[*_history(), *_history()] * 12,
        proxy=ProxyRoute("DIRECT", "off")),
    "hostile": lambda: build_xml(_hostile(), META, policy=PrivacyPolicy(),
                                 transfer_history=_history()),
    "hostile, locked-down, job data": lambda: build_xml(
        _hostile(), META, policy=PrivacyPolicy(locked_down=True, send_job_data=True)),
    "bare": lambda: build_xml(_bare(), META, policy=PrivacyPolicy()),
}

# sha256 of (xml, zip) as a627848 built them (before the shortcuts).
EXPECTED: dict[str, tuple[str, str]] = {
    "default": (
        "5fb7fa194ab7d74495941b1a35c5f2b33239f3c4aa2aed1eecf4d8fd2acb767e",
        "01491f3e854611e7bcc642fe8391a72698fb3c8f19756feb1b6eb204541b5bc9"),
    "consented": (
        "68213854328e6f0584dc35c8ebacdec913a04f189fac9c7c2e392c35636c370f",
        "daea87a803d3def44f66087a96e1f934e69d871390fcc99b9221b2e29a359adf"),
    "locked-down, limits": (
        "e813ba649e28b25a018b2ae70736ca8ecc2b670b8bf2c4ef47f3637975a2a559",
        "6421d45f80f7e65734c36c132bf6bd89df1ea737e2a61e84222b8d06cd21e4b9"),
    "hostile": (
        "afe5c53324385259c83fadbeabafcaa9b9211c339d7931b85857a55044d0c339",
        "3699c1d016a0cb3d5971db14fa748a4e77e3aaea8f6e465f8ddd7ae8ca48b107"),
    "hostile, locked-down, job data": (
        "e0090468e18b106057d6f78b8a6dce953604691eb22828639bd6fc1696641e69",
        "9e0d9abc258ad5d4ada20b0e19cf72e65a5a856dc4bc96492dc667bef57b0fdd"),
    "bare": (
        "2852dc73502433b7c99e377c72d32ae5803760d3ac97e6c594bcdd469eccfcd6",
        "790a9cf1350d148ff4b18064715b77f5b72b9112fed8e75f4c9e3714b9a5b2e5"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_payload_bytes_are_those_of_the_generic_writer_and_zipfile(case: str) -> None:
    xml = CASES[case]()
    zipped = pack_zip(xml)
    got = (hashlib.sha256(xml).hexdigest(), hashlib.sha256(zipped).hexdigest())
    assert got == EXPECTED[case], f"{case}: payload bytes changed\n{xml.decode()}"
    assert read_payload(zipped) == xml


def test_bare_sections_are_empty_elements() -> None:
    xml = CASES["bare"]()
    for empty in (b"<Options />", b"<FaultHistory />", b"<TransferHistory />",
                  b"<Properties />", b"<Supplies />", b"<Usage />"):
        assert empty in xml


# -- the plain-text shortcut ---------------------------------------------------------------

_PIECES = st.sampled_from([*"ab.@x1 <&>\"'\t\n\0\x01\u00e9", "192.168.0.1", "bob", "a@b.cd"])


def _texts(pieces: int) -> st.SearchStrategy[str]:
    return st.lists(_PIECES, max_size=pieces).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_texts(30), max_size=12), names=st.lists(_texts(4), max_size=4),
       locked_down=st.booleans(), limit=st.integers(0, 40))
def test_what_the_shortcut_skips_would_not_have_changed(
    texts: list[str], names: list[str], locked_down: bool, limit: int
) -> None:
    jobs = [JobRecord(JobKind.PRINT, T0, 1, 1, user=n) for n in names]
    scrubber = TextScrubber(PrivacyPolicy(locked_down=locked_down), jobs, texts=texts)
    assert scrubber.unchanged <= set(texts)
    for text in scrubber.unchanged:
        assert scrubber.scrub(text) == text
    for text in plain(scrubber.unchanged, limit):
        assert attr_value(text) == text_value(text) == text[:limit] == text
        assert payload_module._clean(text, limit) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_texts(100) | st.just("y" * 300), min_size=1, max_size=8),
       locked_down=st.booleans())
def test_shortcut_and_full_path_write_the_same_document(
    texts: list[str], locked_down: bool
) -> None:
    snap = make_snapshot()
    snap = dataclasses.replace(
        snap,
        properties=tuple(Property(t, texts[i - 1]) for i, t in enumerate(texts)),
        faults=tuple(Fault("010-397", t, texts[-1], T0, 1) for t in texts),
        jobs=(*snap.jobs, *(JobRecord(JobKind.PRINT, T0, 1, 1, user=t) for t in texts)),
    )
    policy = PrivacyPolicy(locked_down=locked_down)
    fast = build_xml(snap, META, policy=policy, transfer_history=_history())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payload_module, "plain", lambda texts, limit: frozenset())
        full = build_xml(snap, META, policy=policy, transfer_history=_history())
    assert fast == full
    etree.fromstring(fast)


# -- the zip ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode))
def test_zip_is_what_zipfile_writes(data: bytes) -> None:
    zipped = pack_zip(data)
    assert zipped == pack_zip_zipfile(data)
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        assert zf.testzip() is None
        (info,) = zf.infolist()
        assert (info.filename, info.date_time, info.compress_type, info.create_system,
                info.external_attr >> 16) == ("device-data.xml", (1980, 1, 1, 0, 0, 0),
                                              zipfile.ZIP_DEFLATED, 3, 0o100644)
        assert zf.read(info) == data


def test_entries_too_big_for_the_direct_zip_take_zipfiles_path(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    xml = CASES["default"]()
    direct = pack_zip(xml)
    monkeypatch.setattr(payload_module, "_ZIP_DIRECT_LIMIT", 100)
    called: list[bytes] = []
    real = payload_module.pack_zip_zipfile
    monkeypatch.setattr(payload_module, "pack_zip_zipfile",
                        lambda data: called.append(data) or real(data))
    assert pack_zip(xml) == direct
    assert called == [xml]


# -- errors still name the value (their names are formatted only for the error) -------------


def _first(items: tuple[object, ...], **change: object) -> tuple[object, ...]:
    return (dataclasses.replace(items[0], **change), *items[1:])  # type: ignore[type-var]


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: dataclasses.replace(s, supplies=_first(s.supplies, capacity=-5)),
     "supply 1 capacity must be >= -3, got -5"),
    (lambda s: dataclasses.replace(s, supplies=_first(s.supplies, level=True)),
     "supply 1 level must be an integer, got True"),
    (lambda s: dataclasses.replace(s, supplies=_first(s.supplies, installed_at=T0.replace(
        tzinfo=None))), "supply 1 installed_at must be an aware datetime"),
    (lambda s: dataclasses.replace(s, hfsi=_first(s.hfsi, life=0)),
     "hfsi 950-800 life must be an integer >= 1, got 0"),
    (lambda s: dataclasses.replace(s, nvm=_first(s.nvm, maximum="9")),
     "nvm 500-001 maximum must be an integer, got '9'"),
    (lambda s: dataclasses.replace(s, alerts=_first(s.alerts, code=0)),
     "alert 2 code must be an integer >= 1, got 0"),
    (lambda s: dataclasses.replace(s, faults=_first(s.faults, impressions=-1)),
     r"fault 070-100 impressions must be an integer >= 0, got -1"),
    (lambda s: dataclasses.replace(s, counters=dataclasses.replace(s.counters, sheets=-2)),
     "counters.sheets must be an integer >= 0, got -2"),
])
def test_values_the_schema_cannot_express_are_named(
    change: Callable[[DeviceSnapshot], DeviceSnapshot], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        build_xml(change(make_snapshot()), META, policy=PrivacyPolicy())


def test_times_in_other_zones_and_subclasses_read_as_before() -> None:
    from datetime import datetime, timezone

    class Stamp(datetime):
        pass

    berlin = timezone(timedelta(hours=1))
    assert payload_module.format_time(T0.astimezone(berlin)) == "2026-03-29T02:00:00Z"
    stamp = Stamp(2026, 3, 29, 2, 0, 0, 5, tzinfo=UTC)
    assert payload_module.format_time(stamp) == "2026-03-29T02:00:00.000005Z"
