"""The combination model's disagreement rule: time-aligned, pages printed in between allowed."""

from __future__ import annotations

import re
from pathlib import Path

from refserver_helpers import (
    admin,
    make_zip,
    manager_upload,
    manager_zip,
    payload_xml,
    register,
    register_manager,
)

from emulator.server import ReferenceServer
from emulator.server.sources import MAX_PAGES_PER_MINUTE, SLACK_PAGES, conflicts

T = "total-impressions"


def _r(at: str, value: int) -> tuple[str, dict[str, int]]:
    return (f"2026-03-02T{at}:00Z", {T: value})


def test_pages_printed_between_the_readings_are_not_a_disagreement() -> None:
    device = [_r("08:00", 1000), _r("18:00", 1400)]
    # later and higher, between two device readings, or at the same instant and equal
    assert conflicts(device, [_r("09:00", 1030), _r("12:00", 1200), _r("18:00", 1400),
                              _r("20:00", 1450)]) == []
    # the other source's meters (black, colour) are compared only where both have them
    assert conflicts([("2026-03-02T08:00:00Z", {"black-impressions": 5})],
                     [_r("09:00", 1)]) == []


def test_a_counter_that_went_back_is_flagged_against_the_nearest_reading() -> None:
    device = [_r("08:00", 1000), _r("18:00", 1400)]
    got = conflicts(device, [_r("10:00", 990), _r("17:00", 1401), _r("19:00", 1399)])
    assert [(c["manager_value"], c["device_value"], c["device_read_at"][11:16], c["reason"])
            for c in got] == [(990, 1000, "08:00", "went-back"),
                              (1401, 1400, "18:00", "went-back"),
                              (1399, 1400, "18:00", "went-back")]
    # same instant, different values: one of them is wrong
    assert [c["reason"] for c in conflicts([_r("12:00", 500)], [_r("12:00", 501)])] == [
        "went-back"]


def test_more_pages_than_any_printer_prints_in_the_time_between_is_flagged() -> None:
    device = [_r("08:00", 1000)]
    ten_minutes = 10 * MAX_PAGES_PER_MINUTE + SLACK_PAGES
    assert conflicts(device, [_r("08:10", 1000 + ten_minutes)]) == []
    got = conflicts(device, [_r("08:10", 1001 + ten_minutes)])
    assert [(c["reason"], c["meter"]) for c in got] == [("too-fast", T)]
    # and before a device reading: the device cannot have printed that much since
    assert [c["reason"] for c in conflicts([_r("08:10", 5000)], [_r("08:00", 10)])] == [
        "too-fast"]


# -- generatedAt as stored: the times the rule compares and the day it bills by ----------


async def test_generated_at_is_kept_in_utc_and_one_without_a_zone_is_refused(
        server: ReferenceServer, tmp_path: Path) -> None:
    # xs:dateTime allows a time with no zone and one with an offset. Stored as sent, a
    # manager's zoneless reading beside the agent's "Z" ones made every comparison of
    # the two fail (500 on the printer's meters, the disagreements, the dashboard and
    # the export), and an offset put a reading on its local day, not its UTC day.
    device = await register(server, tmp_path / "dev")
    upload_id, xml = payload_xml(serial=device.serial)
    xml = re.sub(rb'generatedAt="[^"]+"', b'generatedAt="2026-01-12T08:00:00Z"', xml)
    assert (await device.upload(make_zip({"device-data.xml": xml}), upload_id))[0] == 201
    manager = await register_manager(server, tmp_path / "mgr")
    for generated_at, expected in (("2026-01-12T09:00:00", 422),
                                   ("2026-01-12T24:00:00Z", 422),
                                   ("2026-01-11T23:30:00-09:00", 201)):
        upload_id, zip_ = manager_zip(device.serial, 184390, generated_at=generated_at)
        status, body = await manager_upload(manager, upload_id, zip_)
        assert status == expected, body
        if status == 422:
            assert "generatedAt" in body["detail"], body
    status, billing = await admin(server, "GET", f"/admin/v1/printers/{device.serial}/meters")
    assert status == 200, billing
    # 23:30 at -09:00 is 08:30 UTC on the 12th: the same day as the agent's reading, after it
    assert [(d["date"], d["source"]) for d in billing["days"]] == [("2026-01-12", "device")]
    assert billing["disagreements"] == []
    status, body = await admin(server, "GET",
                               f"/admin/v1/managers/{manager.device_id}/uploads")
    assert [u["generated_at"] for u in body["uploads"]] == ["2026-01-12T08:30:00Z"]
    assert (await admin(server, "GET", "/admin/v1/disagreements"))[0] == 200
