"""``fleet --html-report FILE``: one self-contained page, opened in headless Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from selenium.webdriver.common.by import By

from emulator.fleet.html_report import RunRecorder, latency_histogram, render
from emulator.fleet.report import DeviceOutcome, Expectation, FleetReport
from tests.emulator.web.web_browser import screenshot, start_chromium

HOSTILE = "<img src=x onerror=alert(1)>"


def _outcome(serial: str, error: str = "") -> DeviceOutcome:
    return DeviceOutcome(index=0, serial=serial, profile="office-color", time_zone="UTC",
                         device_id=None, payloads_built=1, uploads_stored=1,
                         uploads_duplicate=0, uploads_rejected=0, send_failures=2,
                         registrations=1, bytes_sent=100, actions_run=0, action_polls=1,
                         firmware_checks=1, faults=3, jams=1, queued=0, finished=True,
                         last_error=error)


def test_hostile_strings_are_escaped_and_nothing_is_fetched() -> None:
    report = FleetReport(devices=1, days=1, seed=1, mix=HOSTILE, shards=("1/1",),
                         outcomes=(_outcome(HOSTILE, HOSTILE),), wall_s=1.0,
                         expectations=(Expectation(HOSTILE, False, HOSTILE),))
    page = render(report, RunRecorder(latencies_ms=[0.5, 3.0, 7000.0]))
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "src=\"http" not in page
    assert "https://cdn" not in page


def test_latency_histogram_bands() -> None:
    bands = dict(latency_histogram([0.5, 1.5, 4.0, 4.9, 6000.0]))
    assert bands["<1 ms"] == 1 and bands["1-2 ms"] == 1 and bands["2-5 ms"] == 2
    assert bands[">=5000 ms"] == 1


def test_fleet_cli_writes_a_page_with_its_plots(tmp_path: Path) -> None:
    out = tmp_path / "fleet.html"
    run = subprocess.run([sys.executable, "-m", "emulator", "fleet", "--devices", "3",
                          "--days", "2", "--seed", "3", "--no-progress",
                          "--html-report", str(out)], capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stderr
    driver = start_chromium(tmp_path / "chromium")
    try:
        driver.get(out.as_uri())
        assert driver.find_element(By.ID, "verdict").text == "all expectations held"
        per_day = driver.execute_script(
            "return Chart.getChart('uploads-per-day').data.datasets[0].data;")
        assert sum(per_day) == 6
        latency = driver.execute_script(
            "return Chart.getChart('latency').data.datasets[0].data;")
        assert sum(latency) >= 6 + 3  # every upload and registration was timed
        assert driver.execute_script("return Chart.getChart('retries-faults') != null;")
        screenshot(driver, "fleet-html-report")
    finally:
        driver.quit()
