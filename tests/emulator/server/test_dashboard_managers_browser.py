"""The dashboard's managers and printers pages in headless Chromium, from the real paths.

A simulated office (emulator/lan: 4 printers, 2 running their Device Direct agent)
uploads to a reference server over loopback TLS; two device managers
(``device_direct.manager.runner.ManagerRunner``) register and upload for the same
subnet: the first learns every printer into its scope, the second is refused for each
(out of scope) and has markup in its host name and location. A printer with an agent
prints and the first manager reads it again (send-meters-now): pages printed between the
two sources' readings, not a disagreement. The printer prints again and its agent
reports at once; then the first manager uploads its cached reading from before that job
as a new one (a stale cache): a later reading lower than the agent's, a real
disagreement (``went-back``, emulator/server/sources.py). Then the server's clock moves
a day on; the first manager polls again, the second is silent. Nothing is written to the
database by hand.

The office and the managers run on one virtual clock (the test holds it still, as
``dd_clock`` does); the server has a clock of its own so that it alone can be moved a
day on (the managers' "last contact" is the server's time).
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from device_direct.manager.config import load_config
from device_direct.manager.runner import ManagerRunner
from device_direct.model import PrintJob
from emulator.clock import VirtualClock
from emulator.lan import EmulatedLan, LanAgentOptions, LanOptions, LanSpec
from emulator.pytest_plugin import DeviceDirectWaiter
from emulator.server.app import ReferenceServer
from emulator.server.sources import Sources
from tests.emulator.web.web_browser import (
    LoopThread,
    click_through,
    screenshot,
    spki_pin,
    start_chromium,
    submit,
    wait_for,
)

HOSTILE_HOST = "<b>rogue</b>-pc"
HOSTILE_LOCATION = "<script>alert('mgr')</script> basement"


@dataclass
class Office:
    server: ReferenceServer
    lan: EmulatedLan
    good: ManagerRunner
    rogue: ManagerRunner
    busy_serial: str
    device_total: int  # the busy printer's total impressions its agent reported last
    manager_total: int  # ... and the good manager's (stale) reading of it
    with_agent: set[str]
    serials: set[str]


@dataclass
class Browser:
    loop: LoopThread
    office: Office
    driver: webdriver.Chrome
    downloads: Path

    def get(self, path: str) -> None:
        self.driver.get(f"https://localhost:{self.office.server.port}{path}")

    def rows(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))


def _config(path: Path, server: ReferenceServer, key: str, data_dir: Path, subnet: str,
            snmp_port: int, hostname: str, location: str) -> Path:
    path.write_text(f"""
[server]
url = "https://127.0.0.1:{server.port}/"
ca_bundle = "{server.ca_cert_path}"
server_name = "localhost"
registration_key = "{key}"

[manager]
data_dir = "{data_dir}"
location = "{location}"
contact_email = "it@example.com"
hostname = "{hostname}"
ip = "127.0.0.1"

[scan]
targets = ["{subnet}"]
snmp_port = {snmp_port}
timeout = 2.0
retries = 1
""")
    return path


async def _admin(server: ReferenceServer, method: str, path: str, **kw: Any) -> Any:
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    async with aiohttp.ClientSession() as s, s.request(
            method, server.base_url + path, ssl=ctx,
            headers={"Authorization": f"Bearer {server.admin_token}"}, **kw) as r:
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


async def _build(tmp: Path, office_clock: VirtualClock) -> Office:
    server_clock = VirtualClock(office_clock.now())
    server = ReferenceServer(tmp / "server", clock=server_clock, rng=random.Random(0))
    await server.start()
    keys = tuple(server.create_registration_key(ttl_s=86400 * 30) for _ in range(2))
    agents = LanAgentOptions(server_url=f"https://127.0.0.1:{server.port}/",
                             ca_bundle=server.ca_cert_path, server_name="localhost",
                             registration_keys=keys, state_dir=tmp / "agents")
    spec = LanSpec(printers=4, non_printers=1, silent=0, agents=0.5, seed=21,
                   subnet="127.0.21.0/29")
    lan = EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, days_of_use=2,
                                 agents=agents), clock=office_clock)
    await lan.__aenter__()
    with_agent = {p.plan.serial for p in lan.printers if p.plan.agent}

    def uploaded() -> bool:
        devices = {d["serial"]: d for d in server.storage.devices()}
        return set(devices) == with_agent and all(
            server.storage.uploads_count(devices[s]["device_id"]) >= 1 for s in with_agent)

    await DeviceDirectWaiter(office_clock, server).until(
        uploaded, what="the agents to register and upload")

    runners = []
    for seed, (name, host, location) in enumerate((
            ("good", "mgr-pc", "Floor 2, copy room"), ("rogue", HOSTILE_HOST, HOSTILE_LOCATION))):
        config = _config(tmp / f"{name}.toml", server, server.create_registration_key(),
                         tmp / name, spec.subnet, lan.snmp_port, host, location)
        runner = ManagerRunner(load_config(config), office_clock, random.Random(seed))
        await runner.run(once=True)  # register, scan, upload (the rogue: refused)
        runners.append(runner)
    good, rogue = runners
    assert good.status.last_error is None, good.status.last_error

    # A printer with an agent prints; the good manager reads it again the same day.
    busy = next(p for p in lan.printers if p.plan.agent)
    before = busy.device.snapshot().counters.total_impressions
    await busy.device.print_job(PrintJob(pages=3, copies=1, duplex=False, color=False))
    after = busy.device.snapshot().counters.total_impressions
    managers = (await _admin(server, "GET", "/admin/v1/managers"))["managers"]
    good_id = next(m["manager_id"] for m in managers if m["hostname"] == "mgr-pc")
    await _admin(server, "POST", f"/admin/v1/managers/{good_id}/actions",
                 json={"serial": busy.plan.serial, "type": "send-meters-now"})
    async with good.transport() as transport:
        assert await good.handle_actions(transport) == 1
    assert before < after

    # The printer prints again and its agent reports at once; the good manager then
    # uploads its cached reading (from before that job) as a new one.
    await busy.device.print_job(PrintJob(pages=2, copies=1, duplex=False, color=False))
    latest = busy.device.snapshot().counters.total_impressions
    device_id = next(d["device_id"] for d in server.storage.devices()
                     if d["serial"] == busy.plan.serial)
    count = server.storage.uploads_count(device_id)
    assert busy.agent is not None
    busy.agent.send_now()
    await DeviceDirectWaiter(office_clock, server).until(
        lambda: server.storage.uploads_count(device_id) > count,
        what="the agent's upload after the second job")
    good.enqueue([good.readings[busy.plan.serial]], trigger="action")
    async with good.transport() as transport:
        assert await good.flush(transport) == 0
        # A day later (server time) the good manager polls again; the rogue is silent.
        server_clock.advance_to(server_clock.now() + timedelta(hours=25))
        assert await good.handle_actions(transport) == 0
    return Office(server, lan, good, rogue, busy.plan.serial, latest, after, with_agent,
                  {p.plan.serial for p in lan.printers})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    tmp = tmp_path_factory.mktemp("dashboard-managers")
    loop = LoopThread()
    office_clock = VirtualClock()
    office_clock.register()  # the test: time stands still unless a waiter lets it run
    office = loop.run(_build(tmp, office_clock), timeout=180)
    pin = spki_pin(office.server.pki.server_cert_path.read_bytes())
    downloads = tmp / "downloads"
    downloads.mkdir()
    driver = start_chromium(tmp / "chromium", downloads,
                            extra=(f"--ignore-certificate-errors-spki-list={pin}",))
    try:
        b = Browser(loop, office, driver, downloads)
        b.get("/dashboard/managers")
        driver.find_element(By.ID, "token").send_keys(office.server.admin_token)
        submit(driver, "login-submit")
        wait_for(lambda: driver.find_elements(By.ID, "managers"), "the managers table")
        yield b
    finally:
        driver.quit()
        loop.run(office.lan.__aexit__(None, None, None), timeout=60)
        loop.run(office.server.stop())
        loop.close()


def _manager_row(b: Browser, hostname: str) -> Any:
    rows = [r for r in b.rows("tr.manager")
            if r.find_element(By.CSS_SELECTOR, "a.manager-link").text == hostname]
    assert len(rows) == 1, [r.text for r in b.rows("tr.manager")]
    return rows[0]


def test_managers_listed_with_printers_and_problems(browser: Browser) -> None:
    b, office = browser, browser.office
    b.get("/dashboard/managers")
    assert len(b.rows("tr.manager")) == 2
    good = _manager_row(b, "mgr-pc")
    assert good.find_element(By.CSS_SELECTOR, "td.printers-reported").text == str(
        len(office.serials))
    problems = good.find_element(By.CSS_SELECTOR, "td.problems").text
    assert "disagree with the printer's own agent (1 printer(s))" in problems
    assert "rejected" not in problems and "over a day" not in problems

    rogue = _manager_row(b, HOSTILE_HOST)  # the markup is text: the link's text is it
    assert rogue.find_element(By.CSS_SELECTOR, "td.printers-reported").text == "0"
    problems = rogue.find_element(By.CSS_SELECTOR, "td.problems").text
    assert f"{len(office.serials)} upload(s) rejected (last: out_of_scope" in problems
    assert "not heard from in over a day" in problems
    assert HOSTILE_LOCATION in rogue.text
    assert not b.driver.find_elements(By.CSS_SELECTOR, "table#managers b, main script")
    screenshot(b.driver, "dashboard-managers")


def test_a_managers_page_shows_its_refusals_and_printers(browser: Browser) -> None:
    b, office = browser, browser.office
    b.get("/dashboard/managers")
    click_through(b.driver, _manager_row(b, HOSTILE_HOST).find_element(
        By.CSS_SELECTOR, "a.manager-link"))
    wait_for(lambda: b.driver.find_elements(By.ID, "rejections"), "the refusals table")
    assert b.driver.find_element(By.ID, "manager-location").text == HOSTILE_LOCATION
    codes = [r.find_element(By.CSS_SELECTOR, "td.error-code").text
             for r in b.rows("tr.rejection")]
    assert codes == ["out_of_scope"] * len(office.serials)
    assert all("in the scope of manager" in r.text for r in b.rows("tr.rejection"))
    screenshot(b.driver, "dashboard-manager-rejected")

    b.get("/dashboard/managers")
    click_through(b.driver, _manager_row(b, "mgr-pc").find_element(
        By.CSS_SELECTOR, "a.manager-link"))
    wait_for(lambda: b.driver.find_elements(By.ID, "printers"), "the printers it reports")
    rows = {r.get_attribute("data-serial"): r for r in b.rows("tr.printer")}
    assert set(rows) == office.serials
    assert "learn" in b.driver.find_element(By.ID, "scope").text
    assert b.driver.find_elements(By.ID, "no-rejections")
    results = [r.find_element(By.CSS_SELECTOR, "td.result").text
               for r in b.rows("tr.manager-action")]
    assert results == ["succeeded"]

    # an upload of the manager, downloaded by the browser, is the zip the server stored
    link = b.driver.find_element(By.CSS_SELECTOR, "a.zip")
    mid, upload_id = str(link.get_attribute("href")).removesuffix(".zip").split("/")[-3::2]
    link.click()
    path = b.downloads / f"{upload_id}.zip"
    wait_for(lambda: path.exists() and path.stat().st_size > 0, "the downloaded zip")

    def stored() -> bytes | None:
        sources = Sources(office.server.storage.path)
        try:
            return sources.upload_zip(mid, upload_id)
        finally:
            sources.close()

    assert path.read_bytes() == b.loop.call(stored)


def test_a_printers_two_sources_side_by_side(browser: Browser) -> None:
    b, office = browser, browser.office
    b.get("/dashboard/")
    problems = {r.find_element(By.CSS_SELECTOR, "a.device-link").text: r.text
                for r in b.rows("tr.device")}
    assert set(problems) == office.with_agent
    assert "disagree with a device manager" in problems[office.busy_serial]
    assert sum("disagree" in t for t in problems.values()) == 1
    b.get("/dashboard/printers")
    rows = {r.get_attribute("data-serial"): r for r in b.rows("tr.printer")}
    assert set(rows) == office.serials  # one row per printer, whichever path reported it
    screenshot(b.driver, "dashboard-printers")
    click_through(b.driver, rows[office.busy_serial].find_element(
        By.CSS_SELECTOR, "a.printer-link"))
    wait_for(lambda: b.driver.find_elements(By.ID, "readings"), "the readings table")
    kinds = sorted(str(r.get_attribute("data-kind")) for r in b.rows("tr.source"))
    assert kinds == ["device", "manager"]
    total = b.driver.find_element(By.CSS_SELECTOR, 'tr.meter[data-meter="total-impressions"]')
    assert total.find_element(By.CSS_SELECTOR, "td.device-value").text == str(office.device_total)
    assert total.find_element(By.CSS_SELECTOR, "td.manager-value").text == str(office.manager_total)
    assert "disagreed on" in total.find_element(By.CSS_SELECTOR, "td.flag").text
    flagged = [r.get_attribute("data-meter") for r in b.rows("tr.disagreement")]
    assert "total-impressions" in flagged
    assert "mgr-pc" in b.driver.find_element(By.ID, "printer-scope").text
    assert "learn" in b.driver.find_element(By.ID, "printer-scope").text
    sources = [r.get_attribute("data-source") for r in b.rows("tr.billing-day")]
    assert sources and sources[0] == "device"  # the agent's reading bills the day
    screenshot(b.driver, "dashboard-printer-sources")

    # a printer without an agent: one source, its manager bills it
    lone = sorted(office.serials - office.with_agent)[0]
    b.get(f"/dashboard/printers/{lone}")
    wait_for(lambda: b.driver.find_elements(By.ID, "readings"), "the lone printer's page")
    assert [r.get_attribute("data-kind") for r in b.rows("tr.source")] == ["manager"]
    assert b.driver.find_elements(By.ID, "no-disagreements")
    assert {r.get_attribute("data-source") for r in b.rows("tr.billing-day")} == {"manager"}
