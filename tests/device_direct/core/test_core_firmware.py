"""Firmware checks and the update state machine (sans-I/O)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from device_direct.core.firmware import (
    UPDATE_TRANSITIONS,
    DlmHeader,
    Manifest,
    UpdateEvent,
    UpdateRecord,
    UpdateState,
    canonical_json,
    compare_versions,
    dlm_signed_bytes,
    install_time,
    parse_dlm,
    resume_event,
    update_transition,
    verify_image,
    verify_manifest,
)
from device_direct.errors import FirmwareError, LocalProtocolError
from device_direct.model import FirmwareBank, FirmwareState

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
PEM = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
IMAGE = b"firmware image bytes" * 100
MODEL = "ColorMFP 7845"


def offer(**changes: Any) -> dict[str, Any]:
    key = changes.pop("key", KEY)
    tamper = changes.pop("tamper", {})
    manifest = {"model": MODEL, "version": "2.0", "size": len(IMAGE),
                "sha256": hashlib.sha256(IMAGE).hexdigest(), "url": "/img",
                "expires_at": (NOW + timedelta(days=1)).isoformat(), **changes}
    sig = base64.b64encode(key.sign(canonical_json(manifest))).decode()
    return {"manifest": {**manifest, **tamper}, "signature": sig}


def check(o: dict[str, Any], image: bytes = IMAGE, running: str = "1.5") -> str | None:
    try:
        verify_image(o, image, public_key=PEM, model=MODEL, running_version=running, now=NOW)
    except FirmwareError as exc:
        return exc.check
    return None


@pytest.mark.parametrize("o, image, expected", [
    (offer(), IMAGE, None),
    (offer(tamper={"url": "/other"}), IMAGE, "signature"),
    (offer(key=Ed25519PrivateKey.generate()), IMAGE, "signature"),
    (offer(model="Other"), IMAGE, "model"),
    (offer(expires_at=NOW.isoformat()), IMAGE, "expired"),
    (offer(version="1.5.0"), IMAGE, "version"),
    (offer(version="1.4.99"), IMAGE, "version"),
    (offer(), IMAGE + b"x", "size"),
    (offer(), IMAGE[:-1] + b"X", "sha256"),
    ({"manifest": {"model": MODEL}, "signature": "!!"}, IMAGE, "format"),
    ({"signature": "AA=="}, IMAGE, "format"),
])
def test_each_check_is_named(o: dict[str, Any], image: bytes, expected: str | None) -> None:
    assert check(o, image) == expected


def test_manifest_round_trips_through_its_offer() -> None:
    m = verify_manifest(offer(), public_key=PEM, model=MODEL, running_version="1", now=NOW)
    again = Manifest.from_offer(m.to_offer())
    assert (again.version, again.size, again.signature) == ("2.0", len(IMAGE), m.signature)


versions = st.lists(st.integers(0, 999), min_size=1, max_size=5).map(
    lambda parts: ".".join(str(p) for p in parts))


@given(versions, versions, versions)
def test_version_order_is_total_and_numeric(a: str, b: str, c: str) -> None:
    assert compare_versions(a, a) == 0
    assert compare_versions(a, b) == -compare_versions(b, a)
    if compare_versions(a, b) <= 0 and compare_versions(b, c) <= 0:
        assert compare_versions(a, c) <= 0
    assert compare_versions(a + ".0", a) == 0
    assert compare_versions(a + ".1", a) == 1


def test_numeric_not_lexical() -> None:
    assert compare_versions("100.2.10", "100.2.9") == 1
    assert compare_versions("100.002.057", "100.2.57") == 0


def dlm(payload: bytes, *, name: str = MODEL, version: str = "2.0",
        key: Ed25519PrivateKey = KEY) -> bytes:
    header = DlmHeader(name, version, b"")
    sig = key.sign(dlm_signed_bytes(header, payload)).hex()
    return (b"%%XRXbegin\n%%OID_ATT_JOB_TYPE OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE\n"
            + f'%%OID_ATT_DLM_NAME "{name}"\n%%OID_ATT_DLM_VERSION "{version}"\n'.encode()
            + f'%%OID_ATT_DLM_SIGNATURE "{sig}"\n%%XRXend\n'.encode() + payload)


def test_dlm_files_verify_with_the_same_key() -> None:
    header, payload = parse_dlm(dlm(IMAGE))
    assert (header.name, header.version, payload) == (MODEL, "2.0", IMAGE)
    verify_image(header, payload, public_key=PEM, model=MODEL, running_version="1", now=NOW)
    for data, expected in [
        (dlm(IMAGE)[:-1] + b"!", "signature"),
        (dlm(IMAGE, key=Ed25519PrivateKey.generate()), "signature"),
        (dlm(IMAGE, version="0.9"), "version"),
        (dlm(IMAGE, name="Other"), "model"),
        (b"%!PS-Adobe\n", "format"),
        (b"%%XRXbegin\n%%OID_ATT_DLM_NAME \"x\"\n%%XRXend\n", "format"),
    ]:
        with pytest.raises(FirmwareError) as info:
            h, p = parse_dlm(data)
            verify_image(h, p, public_key=PEM, model=MODEL, running_version="1", now=NOW)
        assert info.value.check == expected


BERLIN = ZoneInfo("Europe/Berlin")


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                    timezones=st.just(UTC)),
       st.times(), st.times())
@settings(max_examples=200)
def test_install_time_is_now_or_the_next_window_start(now: datetime, a: time, b: time) -> None:
    start, end = a.replace(microsecond=0, second=0), b.replace(microsecond=0, second=0)
    if start == end:
        return
    when = install_time(now, (start, end), BERLIN)
    assert when >= now
    assert when - now <= timedelta(hours=26)
    if when > now:
        assert when.astimezone(BERLIN).time().replace(tzinfo=None) in (
            start, (datetime.combine(now.date(), start) + timedelta(hours=1)).time())


def test_no_window_means_now() -> None:
    assert install_time(NOW, None, BERLIN) == NOW


# -- the update state machine ------------------------------------------------------------------


@given(st.sampled_from(list(UpdateState)), st.sampled_from(list(UpdateEvent)))
def test_every_update_pair_has_a_transition_or_raises(state: UpdateState,
                                                      event: UpdateEvent) -> None:
    if (state, event) in UPDATE_TRANSITIONS:
        assert update_transition(state, event) is UPDATE_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(LocalProtocolError):
            update_transition(state, event)


def fw(running: str, other: str, trial: bool) -> FirmwareState:
    return FirmwareState("B", (FirmwareBank("A", other), FirmwareBank("B", running)), trial)


@pytest.mark.parametrize("state, firmware, expected", [
    (UpdateState.TRIAL_BOOT, fw("2.0", "1.5", True), UpdateEvent.BOOTED_TRIAL),
    (UpdateState.TRIAL_BOOT, fw("1.5", "2.0", False), UpdateEvent.FELL_BACK),
    (UpdateState.CHECKING, fw("2.0", "1.5", True), None),
    (UpdateState.CHECKING, fw("1.5", "2.0", False), UpdateEvent.FELL_BACK),
    (UpdateState.COMMITTING, fw("2.0", "1.5", False), UpdateEvent.COMMITTED),
    (UpdateState.COMMITTING, fw("2.0", "1.5", True), None),
    (UpdateState.COMMITTING, fw("1.5", "2.0", False), UpdateEvent.FELL_BACK),
    (UpdateState.ROLLING_BACK, fw("2.0", "1.5", True), None),
    (UpdateState.ROLLING_BACK, fw("1.5", "2.0", False), UpdateEvent.ROLLED_BACK),
    (UpdateState.DOWNLOADING, fw("1.5", "", False), None),
])
def test_resume_event_reads_the_banks(state: UpdateState, firmware: FirmwareState,
                                      expected: UpdateEvent | None) -> None:
    record = UpdateRecord(state=state, offer=offer(), version="2.0", old_version="1.5")
    assert resume_event(record, firmware) is expected


class UpdateMachine(RuleBasedStateMachine):
    """Random events against the table; the record survives its JSON form every step;
    a settled update (IDLE) has cleared everything."""

    @initialize()
    def setup(self) -> None:
        self.record = UpdateRecord()

    @rule(event=st.sampled_from(list(UpdateEvent)))
    def apply(self, event: UpdateEvent) -> None:
        allowed = (self.record.state, event) in UPDATE_TRANSITIONS
        changes: dict[str, Any] = {}
        if event is UpdateEvent.START:
            changes = {"offer": offer(), "version": "2.0", "old_version": "1.5"}
        if allowed:
            self.record = self.record.step(event, **changes)
        else:
            with pytest.raises(LocalProtocolError):
                self.record.step(event, **changes)

    @rule()
    def power_cycle(self) -> None:
        self.record = UpdateRecord.from_json(self.record.to_json())

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "record"):
            return
        if self.record.state is UpdateState.IDLE:
            assert self.record == UpdateRecord()
        else:
            assert self.record.manifest.version == self.record.version


TestUpdateMachine = UpdateMachine.TestCase
TestUpdateMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_install_states_are_reachable_only_through_a_written_image() -> None:
    into_trial = [s for (s, _), after in UPDATE_TRANSITIONS.items()
                  if after is UpdateState.TRIAL_BOOT]
    assert into_trial == [UpdateState.READY]
    into_ready = [s for (s, _), after in UPDATE_TRANSITIONS.items()
                  if after is UpdateState.READY]
    assert into_ready == [UpdateState.WRITING]
