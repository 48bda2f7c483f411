"""The reference server's dashboard in headless Chromium, after a real fleet run.

A small fleet runs on its embedded server (virtual clock); the server is then started
again on the same state directory on the system clock, with one live emulated device
added, and the browser reads the dashboard over TLS (it trusts the server's certificate
by its public-key pin, nothing wider).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from emulator.device_runner import AgentOptions, DeviceOptions, DeviceRunner
from emulator.fleet.runner import run_fleet
from emulator.fleet.spec import FleetSpec
from emulator.server.app import ReferenceServer
from tests.emulator.web.web_browser import (
    LoopThread,
    element_text,
    screenshot,
    spki_pin,
    start_chromium,
    submit,
    wait_for,
)

DAYS = 4


@dataclass
class Dash:
    loop: LoopThread
    server: ReferenceServer
    runner: DeviceRunner
    driver: webdriver.Chrome
    downloads: Path

    def get(self, path: str) -> None:
        self.driver.get(f"https://localhost:{self.server.port}{path}")

    def text(self, css: str) -> str:
        return element_text(self.driver, css)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dashboard")
    loop = LoopThread()
    report = loop.run(run_fleet(FleetSpec(devices=3, days=DAYS, seed=5), tmp / "fleet"),
                      timeout=120)
    assert report.ok, report
    server = ReferenceServer(tmp / "fleet" / "server")
    loop.run(server.start())
    key = loop.call(server.create_registration_key)
    runner = DeviceRunner(DeviceOptions(serial="LIVE000001", state_dir=tmp / "device",
                                        web_port=None,
                                        agent=AgentOptions(server.base_url,
                                                           server.ca_cert_path, key)))
    loop.run(runner.start())
    assert runner.agent is not None
    agent = runner.agent
    loop.call(agent.send_now)
    wait_for(lambda: agent.stats.uploads_stored >= 1, "the live device's first upload")
    downloads = tmp / "downloads"
    downloads.mkdir()
    pin = spki_pin(server.pki.server_cert_path.read_bytes())
    driver = start_chromium(tmp / "chromium", downloads,
                            extra=(f"--ignore-certificate-errors-spki-list={pin}",))
    try:
        d = Dash(loop, server, runner, driver, downloads)
        d.get("/dashboard/")
        d.driver.find_element(By.ID, "token").send_keys("not the token")
        submit(d.driver, "login-submit")
        assert "Wrong admin token" in d.text("#login-error")
        screenshot(driver, "dashboard-login-refused")
        d.driver.find_element(By.ID, "token").send_keys(server.admin_token)
        submit(d.driver, "login-submit")
        wait_for(lambda: d.driver.find_elements(By.ID, "devices"), "the devices table")
        yield d
    finally:
        driver.quit()
        loop.run(runner.stop())
        loop.run(server.stop())
        loop.close()


def _fleet_device(d: Dash) -> dict[str, object]:
    devices = d.loop.call(d.server.storage.devices)
    return next(x for x in devices if x["serial"] != "LIVE000001")


def test_devices_list_and_meter_chart_after_a_fleet_run(dash: Dash) -> None:
    rows = dash.driver.find_elements(By.CSS_SELECTOR, "tr.device")
    assert len(rows) == 4
    screenshot(dash.driver, "dashboard-devices")
    device = _fleet_device(dash)
    dash.get(f"/dashboard/devices/{device['device_id']}")
    points = wait_for(lambda: dash.driver.execute_script(
        "var c = window.Chart && Chart.getChart('meter-chart');"
        "return c ? c.data.datasets[0].data.length : 0;"), "the meter chart")
    uploads = dash.loop.call(lambda: dash.server.storage.uploads_count(str(device["device_id"])))
    assert points == uploads == DAYS
    names = dash.driver.execute_script(
        "return Chart.getChart('meter-chart').data.datasets.map(d => d.label);")
    assert "total-impressions" in names
    supplies = dash.driver.execute_script(
        "return Chart.getChart('supply-chart').data.datasets.length;")
    assert supplies > 0
    screenshot(dash.driver, "dashboard-device")


def test_an_upload_downloads_as_the_stored_zip(dash: Dash) -> None:
    device = _fleet_device(dash)
    dash.get(f"/dashboard/devices/{device['device_id']}")
    link = dash.driver.find_element(By.CSS_SELECTOR, "a.zip")
    upload_id = str(link.get_attribute("href")).rsplit("/", 1)[-1].removesuffix(".zip")
    link.click()
    path = dash.downloads / f"{upload_id}.zip"
    wait_for(lambda: path.exists() and path.stat().st_size > 0, "the downloaded zip")
    stored = dash.loop.call(lambda: dash.server.storage.upload_zip(upload_id))
    assert path.read_bytes() == stored


def test_an_action_queued_from_the_form_is_answered(dash: Dash) -> None:
    agent = dash.runner.agent
    assert agent is not None
    device_id = str(agent.identity.device_id)
    dash.get(f"/dashboard/devices/{device_id}")
    params = dash.driver.find_element(By.ID, "action-params")
    params.clear()
    params.send_keys("{not json")
    submit(dash.driver, "queue-action")
    assert "not JSON" in dash.text("#queue-error")
    params = dash.driver.find_element(By.ID, "action-params")
    params.clear()
    params.send_keys("{}")
    Select(dash.driver.find_element(By.ID, "action-type")).select_by_value("get_status")
    submit(dash.driver, "queue-action")
    assert "queued" in dash.text("#queued")
    pending = dash.driver.find_elements(By.CSS_SELECTOR, "tr.pending-action")
    assert len(pending) == 1
    action_id = str(pending[0].get_attribute("data-action-id"))
    dash.loop.call(agent.send_now)  # the device polls with its next sync

    def answered() -> str | None:
        dash.get(f"/dashboard/devices/{device_id}")
        rows = dash.driver.find_elements(
            By.CSS_SELECTOR, f'tr.answered-action[data-action-id="{action_id}"] td.result')
        return rows[0].text if rows else None

    assert wait_for(answered, "the action's answer on the device page") == "succeeded"
    screenshot(dash.driver, "dashboard-action-answered")
