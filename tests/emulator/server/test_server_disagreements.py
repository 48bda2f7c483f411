"""The combination model's disagreement rule: time-aligned, pages printed in between allowed."""

from __future__ import annotations

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
