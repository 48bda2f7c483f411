"""The printer's web pages in headless Chromium, against a real device, server and proxy.

One browser session and one device for the module; the tests run in file order, each
leaving the device as the next expects. Real peers: the reference server over TLS,
net-snmp's snmpget/snmpset against the device's SNMP agent, tinyproxy, port 9100.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from emulator.device_runner import AgentOptions, DeviceOptions, DeviceRunner
from emulator.server.app import ReferenceServer
from tests.emulator.web.web_browser import (
    LoopThread,
    element_text,
    screenshot,
    start_chromium,
    submit,
    wait_for,
)

PASSWORD = "s3cret-admin"
HOSTILE = '<script>alert("x")</script>'
HOSTILE_CONTACT = "<i>admin</i> & <u>helpdesk</u>"
HOSTILE_JOB = "<img src=x onerror=alert(1)>"


@dataclass
class Rig:
    loop: LoopThread
    server: ReferenceServer
    runner: DeviceRunner
    driver: webdriver.Chrome
    base: str
    tmp: Path

    def device_id(self) -> str:
        assert self.runner.agent is not None
        return str(self.runner.agent.identity.device_id)

    def uploads(self) -> list[dict[str, Any]]:
        return self.loop.call(lambda: self.server.storage.uploads(self.device_id()))

    def get(self, path: str) -> None:
        self.driver.get(self.base + path)

    def text(self, css: str, timeout: float = 10.0) -> str:
        """The text of the first element matching ``css`` (waiting for the page)."""
        return element_text(self.driver, css, timeout)

    def submit(self, button_id: str, done: str | None = None) -> None:
        """Submit a form and wait for the page it answers with (never the page before,
        which may say the same ``done`` words: two saves in a row)."""
        submit(self.driver, button_id)
        if done is not None:
            wait_for(lambda: done in self.text("#done"), f"{done!r} on the page")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("printer-web")
    loop = LoopThread()
    server = ReferenceServer(tmp / "server")
    loop.run(server.start())
    key = loop.call(server.create_registration_key)
    runner = DeviceRunner(DeviceOptions(
        serial="WEB0000001", state_dir=tmp / "device", admin_password=PASSWORD,
        agent=AgentOptions(server.base_url, server.ca_cert_path, key)))
    loop.run(runner.start())
    driver = start_chromium(tmp / "chromium")
    assert runner.web is not None and runner.agent is not None
    rig = Rig(loop, server, runner, driver, runner.web.base_url, tmp)
    try:
        agent = runner.agent
        loop.call(lambda: agent.send_now())
        wait_for(lambda: agent.identity.is_registered and rig.uploads(), "first upload")
        yield rig
    finally:
        driver.quit()
        loop.run(runner.stop())
        loop.run(server.stop())
        loop.close()


def _snmp(tool: str, port: int, *args: str) -> str:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: apt-get install snmp")
    community = "private" if tool == "snmpset" else "public"
    out = subprocess.run([tool, "-v2c", "-c", community, "-On", "-Oqv", "-t", "3",
                          f"127.0.0.1:{port}", *args], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.strip()


def _snmp_port(rig: Rig) -> int:
    assert rig.runner.snmp is not None
    return rig.runner.snmp.port


def _login(rig: Rig) -> None:
    rig.get("/remote")
    if "/login" in rig.driver.current_url:
        rig.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        rig.submit("login-submit")
    wait_for(lambda: rig.driver.current_url.endswith("/remote"), "the remote-services page")


def test_log_in_to_the_device(rig: Rig) -> None:
    rig.get("/qa")  # an admin page sends the browser to the login
    assert "/login" in rig.driver.current_url
    rig.driver.find_element(By.ID, "password").send_keys("wrong password")
    rig.submit("login-submit")
    assert rig.text("#login-error") == "Wrong password."
    screenshot(rig.driver, "printer-login-refused")
    rig.driver.find_element(By.ID, "password").send_keys(PASSWORD)
    rig.submit("login-submit")
    wait_for(lambda: rig.driver.current_url.endswith("/qa"), "the QA page after login")
    screenshot(rig.driver, "printer-qa")


def test_supply_level_matches_snmp(rig: Rig) -> None:
    rig.get("/qa")
    Select(rig.driver.find_element(By.ID, "supply-index")).select_by_value("1")
    rig.driver.find_element(By.ID, "supply-level").send_keys("1060")
    rig.submit("set-level", done="Supply level set")
    rig.get("/supplies")
    row = rig.driver.find_element(By.CSS_SELECTOR, 'tr.supply[data-index="1"]')
    page_level = int(row.get_attribute("data-level") or "-9")
    assert page_level == 1060 and "1060 / 5300" in row.text
    snmp_level = int(_snmp("snmpget", _snmp_port(rig), "1.3.6.1.2.1.43.11.1.1.9.1.1"))
    assert snmp_level == page_level
    screenshot(rig.driver, "printer-supplies")


def test_trays_match_prt_input_table(rig: Rig) -> None:
    rig.get("/supplies")
    rows = rig.driver.find_elements(By.CSS_SELECTOR, "#trays tr.tray")
    page = [(r.get_attribute("data-name"), r.get_attribute("data-media"),
             int(r.get_attribute("data-capacity") or "-9"),
             int(r.get_attribute("data-level") or "-9")) for r in rows]

    def column(col: int) -> list[str]:  # prtInputTable column, in index order
        out = _snmp("snmpwalk", _snmp_port(rig), f"1.3.6.1.2.1.43.8.2.1.{col}")
        return [v.strip('"') for v in out.splitlines()]

    snmp = list(zip(column(13), column(12), map(int, column(9)), map(int, column(10)),
                    strict=True))
    assert page == snmp and len(page) == 5  # office-color: 4 drawers and the bypass
    assert "sheets" in rows[0].text and "paper loaded" in rows[0].text
    screenshot(rig.driver, "printer-supplies-trays")


def test_markup_in_device_strings_is_shown_as_text(rig: Rig) -> None:
    _snmp("snmpset", _snmp_port(rig), "1.3.6.1.2.1.1.6.0", "s", HOSTILE,
          "1.3.6.1.2.1.1.4.0", "s", HOSTILE_CONTACT)
    assert rig.runner.jetdirect is not None
    port = rig.runner.jetdirect.port
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(b'\x1b%-12345X@PJL JOB NAME="' + HOSTILE_JOB.encode() + b'"\r\n'
                  b"@PJL ENTER LANGUAGE=TEXT\r\nquarterly report\r\n\x1b%-12345X")

    def job_names() -> list[str] | None:  # the job is recorded when its connection ends
        rig.get("/counters")
        names = [e.text for e in rig.driver.find_elements(By.CSS_SELECTOR, "td.job-name")]
        return names if HOSTILE_JOB in names else None

    wait_for(job_names, "the job name on the counters page", timeout=20)
    assert not rig.driver.find_elements(By.CSS_SELECTOR, "#jobs img")
    with pytest.raises(NoAlertPresentException):
        _ = rig.driver.switch_to.alert.text

    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(b'\x1b%-12345X@PJL RDYMSG DISPLAY="<b>HI</b>"\r\n\x1b%-12345X')

    def display() -> bool:  # the job prints for a second or so: "Printing" until then
        rig.get("/status")
        return rig.text("#display") in ("<B>HI</B>", "<b>HI</b>")

    wait_for(display, "the PJL ready message on the status page", timeout=20)
    assert rig.text("#sys-location") == HOSTILE
    assert rig.text("#sys-contact") == HOSTILE_CONTACT
    assert "&lt;script&gt;" in rig.driver.page_source
    with pytest.raises(NoAlertPresentException):
        _ = rig.driver.switch_to.alert.text
    screenshot(rig.driver, "printer-status-hostile-strings")


def test_test_connection_against_a_live_server(rig: Rig) -> None:
    _login(rig)
    rig.submit("test-connection")
    assert wait_for(lambda: rig.text("#check-result"), "the connection test") == "passed"
    steps = {e.get_attribute("data-step"): e.get_attribute("data-ok")
             for e in rig.driver.find_elements(By.CSS_SELECTOR, "tr.step")}
    assert steps["dns"] == steps["tcp"] == steps["tls"] == steps["mtls_call"] == "true"
    assert steps["registration"] == "true"
    screenshot(rig.driver, "printer-remote-test-connection")


def test_jam_on_qa_page_shows_on_status_snmp_and_next_payload(rig: Rig) -> None:
    rig.get("/qa")
    Select(rig.driver.find_element(By.ID, "fault-code")).select_by_value("075-135")
    rig.submit("raise-fault", done="Fault raised")
    screenshot(rig.driver, "printer-qa-fault")
    rig.get("/status")
    codes = [e.text for e in rig.driver.find_elements(By.CSS_SELECTOR, "#alerts td.code")]
    assert "075-135" in codes and rig.text("#device-status") == "down"
    assert "jammed" in rig.text("#conditions")
    screenshot(rig.driver, "printer-status-jam")
    # hrPrinterDetectedErrorState: bit 5 (jammed) is 0x04 in the first octet
    raw = _snmp("snmpget", _snmp_port(rig), "1.3.6.1.2.1.25.3.5.1.2.1")
    first_octet = int(raw.strip('"').split()[0], 16)
    assert first_octet & 0x04
    before = len(rig.uploads())
    _login(rig)
    rig.submit("send-now", done="Send now requested")
    ups = wait_for(lambda: (u := rig.uploads()) and len(u) > before and u, "the next upload")
    assert "075-135" in [f["code"] for f in ups[-1]["faults"]]
    rig.get("/counters")  # the fault history, newest first, with its impression count
    assert rig.text("#faults td.code") == "075-135"
    screenshot(rig.driver, "printer-counters")
    rig.get("/qa")
    rig.submit("clear-fault", done="Active fault cleared")


def _tinyproxy(tmp: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    if not Path(binary).exists():
        pytest.fail("tinyproxy is not installed: apt-get install tinyproxy")
    conf, log = tmp / "tinyproxy.conf", tmp / "tinyproxy.log"
    for _ in range(3):  # tinyproxy cannot bind port 0: the port chosen may be taken meanwhile
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        log.unlink(missing_ok=True)
        conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
                        f'LogLevel Info\nLogFile "{log}"\nPidFile "{tmp / "tinyproxy.pid"}"\n')
        proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

        def started(proc: subprocess.Popen[bytes] = proc) -> str | None:
            if log.exists() and "Accepting connections" in log.read_text():
                return "ready"
            return "exited" if proc.poll() is not None else None

        if wait_for(started, "tinyproxy to start", timeout=30) == "ready":
            return proc, port, log
    pytest.fail("tinyproxy did not start:\n" + (log.read_text() if log.exists() else ""))


def _save_settings(rig: Rig) -> None:
    rig.submit("save", done="Settings saved")


def test_proxy_set_on_the_page_carries_the_next_upload(rig: Rig) -> None:
    proc, port, log = _tinyproxy(rig.tmp)
    try:
        _login(rig)
        # a bad port first: that field's error, and nothing changes
        Select(rig.driver.find_element(By.ID, "proxy-mode")).select_by_value("manual")
        rig.driver.find_element(By.ID, "proxy-host").send_keys("127.0.0.1")
        rig.driver.find_element(By.ID, "proxy-port").send_keys("99999")
        rig.submit("save")
        assert "1-65535" in rig.text("#error-proxy-port")
        screenshot(rig.driver, "printer-remote-bad-port")
        assert rig.runner.agent is not None and rig.runner.agent.config.proxy.mode == "off"
        port_field = rig.driver.find_element(By.ID, "proxy-port")
        port_field.clear()
        port_field.send_keys(str(port))
        _save_settings(rig)
        assert rig.runner.agent.config.proxy.port == port
        assert "port = " in (rig.runner.state_dir / "web-settings.toml").read_text()
        before = len(rig.uploads())
        rig.submit("send-now", done="Send now requested")
        wait_for(lambda: len(rig.uploads()) > before, "an upload through the proxy")
        host = urlsplit(rig.server.base_url).hostname
        assert f"CONNECT {host}:{rig.server.port}" in log.read_text()
        screenshot(rig.driver, "printer-remote-proxy")
        Select(rig.driver.find_element(By.ID, "proxy-mode")).select_by_value("off")
        rig.driver.find_element(By.ID, "proxy-host").clear()
        rig.driver.find_element(By.ID, "proxy-port").clear()
        _save_settings(rig)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_disabled_action_is_rejected(rig: Rig) -> None:
    _login(rig)
    box = rig.driver.find_element(By.ID, "allow-get_status")
    assert box.is_selected()
    box.click()
    _save_settings(rig)
    assert "get_status" in rig.runner.agent.config.services.disabled_actions  # type: ignore[union-attr]
    action_id = rig.loop.call(lambda: rig.server.enqueue_action(rig.device_id(), "get_status"))
    rig.submit("send-now", done="Send now requested")
    action = wait_for(lambda: (a := rig.loop.call(lambda: rig.server.storage.action(action_id)))
                      and a.get("result_status") and a, "the action's result")
    assert action["result_status"] == "rejected"
    assert "disabled" in str(action["result_detail"])
    rig.driver.find_element(By.ID, "allow-get_status").click()
    _save_settings(rig)


def test_audit_page_and_its_exports(rig: Rig) -> None:
    rig.get("/audit")
    exchanges = [e.text for e in rig.driver.find_elements(By.CSS_SELECTOR, "td.exchange")]
    assert "upload" in exchanges and "register" in exchanges
    screenshot(rig.driver, "printer-audit")
    cookies = {c["name"]: c["value"] for c in rig.driver.get_cookies()}
    import urllib.request

    def fetch(path: str) -> str:  # the exports are attachments: fetched with the session
        request = urllib.request.Request(rig.base + path, headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        with urllib.request.urlopen(request, timeout=10) as r:
            return str(r.read().decode())

    csv_text = fetch("/audit/export.csv")
    assert csv_text.startswith("time,exchange,result,bytes,detail")
    assert csv_text.count(",upload,stored,") == len(rig.uploads())
    page = fetch("/audit/export.html")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    report = rig.tmp / "audit-export.html"
    report.write_text(page)
    rig.get("/")  # and the exported page opens in the browser
    rig.driver.get(report.as_uri())
    assert "exchanges" in rig.text("body")
    screenshot(rig.driver, "printer-audit-export")


def test_test_connection_with_the_server_stopped_names_the_step(rig: Rig) -> None:
    rig.loop.run(rig.server.stop())
    _login(rig)
    rig.submit("test-connection")
    assert wait_for(lambda: rig.text("#check-result"), "the connection test") == "failed"
    failed = rig.text("#failed-step")
    assert "TCP connection" in failed and "refused" in failed.lower()
    screenshot(rig.driver, "printer-remote-server-down")
