"""Collector: snapshot validation and the collect -> payload convenience."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest

from device_direct.collector import build_payload, collect
from device_direct.core.payload import PayloadMeta, read_payload
from device_direct.core.privacy import PrivacyPolicy
from device_direct.errors import ModelError
from device_direct.model import (
    Counters,
    DeviceModel,
    DeviceSnapshot,
    Fault,
    FirmwareBank,
    FirmwareState,
    HfsiItem,
    Identity,
    JobKind,
    JobRecord,
    NetworkInfo,
    PowerState,
    Supply,
)

T0 = datetime(2026, 2, 1, 2, 0, tzinfo=UTC)
META = PayloadMeta("12345678-1234-4234-8234-123456789abc", 0, T0)


def snapshot(**changes: object) -> DeviceSnapshot:
    base = DeviceSnapshot(
        taken_at=T0,
        power=PowerState.READY,
        identity=Identity("Example", "MFP", "SN1", "P1", {"system": "1.0"}),
        network=NetworkInfo("00:00:aa:00:00:01", "10.0.0.5", "255.0.0.0"),
        properties=(),
        alerts=(),
        faults=(),
        counters=Counters(black_impressions=5, color_impressions=2, total_impressions=7),
        supplies=(Supply(1, "Black Toner", "toner", "impressions", 5300, 1060),),
        hfsi=(HfsiItem("950-800", "Transfer roll", 1, 100_000, 999_999, "mm-paper"),),
        nvm=(),
        firmware=FirmwareState("A", (FirmwareBank("A", "1.0"), FirmwareBank("B", ""))),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class FakeModel:
    def __init__(self, snap: DeviceSnapshot) -> None:
        self.snap = snap
        self.log_reads = 0

    def snapshot(self) -> DeviceSnapshot:
        return self.snap

    def engineering_log(self) -> str:
        self.log_reads += 1
        return "fuser trace 42"


def _job(at: object) -> JobRecord:
    return JobRecord(JobKind.PRINT, at, 1, 1)  # type: ignore[arg-type]


def model(snap: DeviceSnapshot) -> DeviceModel:
    return cast(DeviceModel, FakeModel(snap))


def test_collect_returns_a_valid_snapshot_unchanged() -> None:
    snap = snapshot()
    assert collect(model(snap)) == snap
    with_jobs = snapshot(jobs=(_job(T0), _job(T0.astimezone(timezone(timedelta(hours=2))))))
    assert collect(model(with_jobs)) == with_jobs


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"counters": Counters(black_impressions=-1)}, "counters.black_impressions"),
        (
            {"counters": Counters(black_impressions=5, color_impressions=2, total_impressions=8)},
            "total_impressions",
        ),
        ({"counters": Counters(black_large_impressions=1)}, "total_large_impressions"),
        ({"taken_at": datetime(2026, 1, 1)}, "taken_at"),
        ({"faults": (Fault("10-1", "fuser", "x", T0, 1),)}, "fault code"),
        ({"faults": (Fault("010-001", "fuser", "x", T0, -4),)}, "impressions"),
        ({"supplies": (Supply(1, "Toner", "toner", "impressions", 100, -7),)}, "level"),
        ({"supplies": (Supply(1, "Toner", "toner", "impressions", 100, 150),)}, "capacity"),
        ({"hfsi": (HfsiItem("950-800", "roll", 1, 0, 1, "sheets"),)}, "HFSI 950-800"),
        # A job log's times: one naive or not a time at all among good ones.
        ({"jobs": (_job(T0), _job(datetime(2026, 1, 1)), _job(T0))}, "job at"),
        ({"jobs": (_job(T0), _job("2026-01-01T00:00:00Z"))}, "job at"),
    ],
)
def test_nonsense_from_the_model_is_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ModelError, match=field):
        collect(model(snapshot(**changes)))


def test_special_supply_levels_are_fine() -> None:
    supplies = (Supply(1, "Waste", "wasteToner", "percent", -2, -3),)
    collect(model(snapshot(supplies=supplies)))


def test_more_than_40_faults_keeps_the_newest_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    faults = tuple(
        Fault(f"010-{i:03d}", "fuser", "heat", T0 - timedelta(minutes=i), 10) for i in range(55)
    )
    shuffled = faults[30:] + faults[:30]
    with caplog.at_level(logging.WARNING, logger="device_direct.collector"):
        snap = collect(model(snapshot(faults=shuffled)))
    assert [f.code for f in snap.faults] == [f.code for f in faults[:40]]
    assert "55 faults" in caplog.text


def test_build_payload_reads_the_engineering_log_only_with_consent() -> None:
    fake = FakeModel(snapshot())
    plain = read_payload(build_payload(cast(DeviceModel, fake), META, policy=PrivacyPolicy()))
    assert fake.log_reads == 0 and b"fuser trace" not in plain
    consent = PrivacyPolicy(send_engineering=True)
    with_log = read_payload(build_payload(cast(DeviceModel, fake), META, policy=consent))
    assert fake.log_reads == 1 and b"fuser trace 42" in with_log
