"""The printer web server without a browser: login throttling, sessions, CSRF, settings
validation and persistence, and applying settings to a running agent."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from device_direct.agent import Agent
from device_direct.clock import SystemClock
from device_direct.config import AgentConfig, DeviceConfig, ServerConfig
from device_direct.errors import ConfigError
from device_direct.live import apply_settings
from emulator.device_runner import AgentOptions, DeviceOptions, DeviceRunner
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.web.auth import LoginThrottle, Sessions
from emulator.web.remote_settings import (
    SETTINGS_FILE,
    apply_changes,
    parse_form,
    save_settings,
    with_saved_settings,
)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(server=ServerConfig(url="https://dd.example.com"),
                       device=DeviceConfig(data_dir=tmp_path / "dd"))


def test_sessions_expire_when_idle_and_at_the_hard_limit() -> None:
    sessions = Sessions(idle=timedelta(minutes=10), limit=timedelta(minutes=25))
    s = sessions.create(T0)
    assert sessions.get(s.sid, T0 + timedelta(minutes=9)) is s
    assert sessions.get(s.sid, T0 + timedelta(minutes=18)) is s  # idle time restarted
    assert sessions.get(s.sid, T0 + timedelta(minutes=24)) is s
    assert sessions.get(s.sid, T0 + timedelta(minutes=25)) is None  # hard limit
    assert sessions.get("forged", T0) is None


def test_wrong_passwords_wait_longer_and_longer() -> None:
    throttle = LoginThrottle(free_attempts=2, base_delay=timedelta(seconds=2))
    for _ in range(2):
        assert throttle.wait("a", T0) == timedelta(0)
        throttle.failed("a", T0)
    assert throttle.wait("a", T0) == timedelta(seconds=2)
    assert throttle.wait("b", T0) == timedelta(0)  # per client
    throttle.failed("a", T0 + timedelta(seconds=2))
    assert throttle.wait("a", T0 + timedelta(seconds=2)) == timedelta(seconds=4)
    throttle.succeeded("a")
    assert throttle.wait("a", T0) == timedelta(0)


def test_a_bad_form_value_names_its_key_and_changes_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    form = {"services.enabled": "on", "proxy.mode": "manual", "proxy.host": "proxy.lan",
            "proxy.port": "70000"}
    with pytest.raises(ConfigError) as err:
        apply_changes(cfg, parse_form(form, []))
    assert err.value.key == "proxy.port"
    with pytest.raises(ConfigError) as err:
        apply_changes(cfg, parse_form({**form, "proxy.port": "", "proxy.host": ""}, []))
    assert err.value.key == "proxy.host"
    with pytest.raises(ConfigError) as err:
        apply_changes(cfg, parse_form({**form, "proxy.host": "bad host!"}, []))
    assert err.value.key == "proxy.host"
    assert cfg.proxy.mode == "off"


async def test_a_bad_bypass_entry_is_shown_on_the_form_and_not_saved(tmp_path: Path) -> None:
    # It was saved, then putting it in force (the proxy's bypass rules) failed: a 500
    # with a traceback, and the running agent left with half the new settings.
    runner = DeviceRunner(DeviceOptions(
        serial="BYPASS01", state_dir=tmp_path / "d", admin_password="right-one",
        agent=AgentOptions(server_url="https://127.0.0.1:1/", ca_bundle=tmp_path / "ca.pem")))
    await runner.start()
    try:
        assert runner.web is not None and runner.agent is not None
        base = runner.web.base_url
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/login") as page:
                found = re.search(r'name="login_token" value="([^"]+)"', await page.text())
                assert found is not None
            async with http.post(base + "/login", data={
                    "password": "right-one", "login_token": found.group(1)}) as r:
                assert r.status == 200
            async with http.get(base + "/remote") as page:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
                assert csrf is not None
            form = {"csrf": csrf.group(1), "services.enabled": "on", "proxy.mode": "manual",
                    "proxy.host": "proxy.lan", "proxy.port": "3128",
                    "proxy.bypass": "*.lan, 10.0.0.0/33"}
            async with http.post(base + "/remote", data=form, allow_redirects=False) as r:
                assert r.status == 400
                assert "proxy.bypass" in await r.text()
        assert runner.agent.config.proxy.mode == "off"
        assert not (runner.state_dir / SETTINGS_FILE).exists()
    finally:
        await runner.stop()


def test_settings_are_persisted_and_laid_over_the_command_line(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    cfg = _config(tmp_path)
    form = {"services.enabled": "on", "locked_down": "on", "proxy.mode": "manual",
            "proxy.host": "proxy.lan", "proxy.port": "3128", "proxy.bypass": "*.lan, 10.0.0.0/8",
            "proxy.username": "dd", "proxy.password": 'p"w\\'}
    new = apply_changes(cfg, parse_form(form, ["get_status", "reboot"]))
    assert new.services.locked_down and "troubleshoot" in new.services.disabled_actions
    assert "reboot" not in new.services.disabled_actions
    path = save_settings(tmp_path, new)
    assert path.stat().st_mode & 0o077 == 0  # it may hold the proxy password
    loaded = with_saved_settings(cfg, tmp_path)
    assert loaded.proxy == new.proxy and loaded.services == new.services
    (tmp_path / SETTINGS_FILE).write_text("[proxy]\nmode = 'sideways'\n")
    with caplog.at_level(logging.ERROR):
        assert with_saved_settings(cfg, tmp_path) == cfg
    assert "proxy.mode" in caplog.text and SETTINGS_FILE in caplog.text


def test_apply_settings_on_a_live_agent(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    device = EmulatedDevice(load_profile("office-color"), serial="LIVE1", clock=SystemClock(),
                            rng_seed=1, state_dir=None)
    agent = Agent(cfg, device, clock=SystemClock())
    new = apply_changes(cfg, parse_form({"services.enabled": "on", "proxy.mode": "manual",
                                         "proxy.host": "127.0.0.1", "proxy.port": "3128"},
                                        ["get_status"]))
    assert apply_settings(agent, new) is False
    assert agent.proxy is not None and "reboot" in agent.actions.policy.disabled
    off = apply_changes(new, parse_form({}, []))
    assert apply_settings(agent, off) is True  # switching services off needs a task restart
    with pytest.raises(ConfigError) as err:
        apply_settings(agent, AgentConfig(server=ServerConfig(url="https://other.example"),
                                          device=cfg.device))
    assert err.value.key == "server"


async def test_throttled_logins_and_csrf_over_http(tmp_path: Path) -> None:
    runner = DeviceRunner(DeviceOptions(serial="THROTTLE01", state_dir=tmp_path / "d",
                                        admin_password="right-one"))
    await runner.start()
    try:
        assert runner.web is not None
        base = runner.web.base_url
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async def login(password: str, **extra: str) -> aiohttp.ClientResponse:
                async with http.get(base + "/login") as page:
                    found = re.search(r'name="login_token" value="([^"]+)"', await page.text())
                    assert found is not None
                return await http.post(base + "/login", data={
                    "password": password, "login_token": found.group(1), **extra})

            async with http.post(base + "/login", data={"password": "right-one"}) as r:
                assert r.status == 403  # no login token: a cross-site form
            for _ in range(3):
                async with await login("wrong") as r:
                    assert r.status == 401
            async with await login("right-one") as r:
                assert r.status == 429 and "Too many wrong passwords" in await r.text()
            runner.web.throttle.succeeded("127.0.0.1")  # the wait is over
            async with await login("right-one", next="/qa") as r:
                assert r.status == 200 and r.url.path == "/qa"
                csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            assert csrf is not None
            async with http.post(base + "/qa/jam", data={}) as r:
                assert r.status == 403
            assert runner.device is not None and not runner.device.alerts()
            async with http.post(base + "/qa/jam", data={"csrf": csrf.group(1)}) as r:
                assert r.status == 200 and r.url.query.get("done") == "jam"
            assert runner.device.alerts()
            async with http.post(base + "/qa/supply", data={"csrf": csrf.group(1),
                                                            "index": "1", "level": "-5"}) as r:
                assert r.status == 400 and "must be 0..5300" in await r.text()
            async with http.post(base + "/qa/door", data={"csrf": csrf.group(1),
                                                          "state": "open"}) as r:
                assert r.url.query.get("done") == "door-open"
            async with http.get(base + "/status") as r:
                assert "door open" in await r.text()
            async with http.post(base + "/qa/network", data={"csrf": csrf.group(1),
                                                             "minutes": "0"}) as r:
                assert r.status == 400 and "minutes must be 1..1440" in await r.text()
            async with http.post(base + "/qa/network", data={"csrf": csrf.group(1),
                                                             "minutes": "5"}) as r:
                assert r.url.query.get("done") == "network"
            assert len(runner.web.background) == 1  # the network comes back in 5 minutes
            assert not runner.network.up  # SNMP and port 9100 are cut too
            async with http.get(base + "/login?next=//evil.example/") as r:
                assert 'value="/remote"' in await r.text()  # no open redirect
            async with http.get(base + "/status") as r:
                assert "script-src" not in r.headers["Content-Security-Policy"]
                assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    finally:
        await runner.stop()


async def test_the_pytest_plugins_device_serves_its_pages(dd_device: Any) -> None:
    base = await dd_device.start_web(admin_password="plugin-pw")
    level = dd_device.model.snapshot().supplies[0].level
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + "/supplies") as r:
            assert r.status == 200
            assert f'data-index="1" data-level="{level}"' in await r.text()
        async with http.get(base + "/login") as r:
            token = re.search(r'name="login_token" value="([^"]+)"', await r.text())
            assert token is not None
        async with http.post(base + "/login", data={"password": "plugin-pw", "next": "/remote",
                                                    "login_token": token.group(1)}) as r:
            assert r.url.path == "/remote" and dd_device.serial in await r.text()


async def test_the_admin_password_may_come_from_the_profile(tmp_path: Path) -> None:
    from emulator.model.profile import PROFILE_DIR

    profile = tmp_path / "office-web.toml"
    profile.write_text((PROFILE_DIR / "office-color.toml").read_text()
                       + '\n[web]\nadmin_password = "from-profile"\n')
    runner = DeviceRunner(DeviceOptions(profile=str(profile), serial="PROFILE01",
                                        state_dir=tmp_path / "d"))
    await runner.start()
    try:
        assert runner.web is not None
        assert runner.web.password.matches("from-profile")
        assert not runner.web.password.matches("PROFILE01")
    finally:
        await runner.stop()
    (tmp_path / "bad.toml").write_text(profile.read_text().replace(
        'admin_password = "from-profile"', 'admin_pasword = "typo"'))
    with pytest.raises(Exception, match="admin_pasword"):
        load_profile(str(tmp_path / "bad.toml"))


async def test_an_unreadable_form_is_refused_with_400_not_a_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner = DeviceRunner(DeviceOptions(serial="BADFORM01", state_dir=tmp_path / "d",
                                        admin_password="right-one"))
    await runner.start()
    try:
        assert runner.web is not None
        base = runner.web.base_url
        bodies = [  # (content type, body): none of them is a form aiohttp can decode
            ("application/x-www-form-urlencoded", b"\xff\xfe=\xff"),
            ("application/x-www-form-urlencoded; charset=bogus", b"password=x"),
            ("multipart/form-data", b"--XX\r\n\r\n"),
            ("multipart/form-data; boundary=XX", b"garbage"),
        ]
        with caplog.at_level(logging.ERROR, logger="aiohttp"):
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                async with http.get(base + "/login") as page:
                    found = re.search(r'name="login_token" value="([^"]+)"', await page.text())
                    assert found is not None
                async with http.post(base + "/login", data={
                        "password": "right-one", "login_token": found.group(1)}) as r:
                    assert r.url.path == "/remote"  # logged in: /qa/jam reads the form
                for content_type, body in bodies:
                    for path in ("/login", "/qa/jam"):
                        async with http.post(base + path, data=body,
                                             headers={"Content-Type": content_type}) as r:
                            assert r.status == 400, (path, content_type, r.status)
                            assert "The form could not be read" in await r.text()
        assert runner.device is not None and not runner.device.alerts()
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    finally:
        await runner.stop()


async def test_the_login_never_redirects_off_the_printer(tmp_path: Path) -> None:
    runner = DeviceRunner(DeviceOptions(serial="NEXT01", state_dir=tmp_path / "d",
                                        admin_password="right-one"))
    await runner.start()
    try:
        assert runner.web is not None
        base = runner.web.base_url
        # A browser drops tabs and line breaks from a Location: "/\t/evil.example" is
        # "//evil.example" to it. A line break or NUL cannot be sent in a header at all.
        for nxt, expected in [("/\t/evil.example/", "/remote"), ("/\n/evil.example", "/remote"),
                              ("/qa\x00", "/remote"), ("/ /evil.example", "/remote"),
                              ("/audit?x=1", "/audit?x=1")]:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(base + "/login") as page:
                    found = re.search(r'name="login_token" value="([^"]+)"', await page.text())
                    assert found is not None
                async with http.post(base + "/login", allow_redirects=False, data={
                        "password": "right-one", "login_token": found.group(1),
                        "next": nxt}) as r:
                    assert r.status == 303, (nxt, r.status)
                    assert r.headers["Location"] == expected, nxt
    finally:
        await runner.stop()
