"""PAC evaluation in a child process (pypac + dukpy), with injected DNS and time."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from proxyfixtures import DnsTable, WpadServer

from device_direct.config import ProxyConfig
from device_direct.core.proxy_rules import ProxyDiscoveryError
from device_direct.model import NetworkInfo
from device_direct.pac import SubprocessPacEvaluator, pac_support_available
from device_direct.proxy import ProxyDetector
from emulator.clock import VirtualClock

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday
EVAL = SubprocessPacEvaluator(timeout_s=5.0)
CORPORATE = """
function FindProxyForURL(url, host) {
    if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example")) return "DIRECT";
    if (isInNet(dnsResolve(host), "10.0.0.0", "255.0.0.0")) return "DIRECT";
    if (isInNet(myIpAddress(), "192.168.0.0", "255.255.0.0"))
        return "PROXY branch.corp:3128; DIRECT";
    return "PROXY hq1.corp:3128; PROXY hq2.corp:3128";
}
"""


async def run(pac: str, host: str, hosts: dict[str, list[str]], my_ip: str = "10.1.2.3") -> str:
    return await EVAL.find_proxy(pac, f"https://{host}/", host, hosts=hosts, my_ip=my_ip, now=NOW)


def test_pac_support_is_installed_here() -> None:
    assert pac_support_available(), "pip install pypac (brings dukpy) into the venv"


async def test_a_corporate_pac_sees_the_injected_dns_and_device_address() -> None:
    assert await run(CORPORATE, "dd.corp.example", {}) == "DIRECT"
    assert await run(CORPORATE, "dd.example.com", {"dd.example.com": ["10.9.9.9"]}) == "DIRECT"
    assert (
        await run(CORPORATE, "dd.example.com", {"dd.example.com": ["203.0.113.9"]}, "192.168.4.4")
        == "PROXY branch.corp:3128; DIRECT"
    )
    # A name the parent did not resolve does not resolve in the sandbox either.
    assert await run(CORPORATE, "dd.example.com", {}) == "PROXY hq1.corp:3128; PROXY hq2.corp:3128"


async def test_time_functions_use_the_injected_clock() -> None:
    pac = """function FindProxyForURL(url, host) {
        if (weekdayRange("MON", "TUE") && timeRange(9, 10)) return "PROXY day.corp:1";
        return "DIRECT"; }"""
    assert await run(pac, "h.example", {}) == "PROXY day.corp:1"
    other = await EVAL.find_proxy(
        pac, "https://h/", "h", hosts={}, my_ip="", now=datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
    )
    assert other == "DIRECT"


async def test_null_answer_is_empty() -> None:
    assert await run("function FindProxyForURL(u, h) { return null; }", "h", {}) == ""


@pytest.mark.parametrize(
    ("pac", "reason", "words"),
    [
        (
            'function FindProxyForURL(url, host) { return "DIRECT" ',
            "syntax",
            "not valid JavaScript",
        ),
        ("var notAPacFile = 1;", "syntax", "FindProxyForURL"),
        ("function FindProxyForURL(u, h) { return undefinedThing(); }", "syntax", "undefinedThing"),
        ("function FindProxyForURL(u, h) { return 42; }", "answer", "returned int"),
        (
            'function FindProxyForURL(u, h) { return new Array(70000).join("P"); }',
            "answer",
            "more than 64 KiB",
        ),
    ],
)
async def test_broken_pac_files_are_named(pac: str, reason: str, words: str) -> None:
    with pytest.raises(ProxyDiscoveryError) as info:
        await run(pac, "h.example", {})
    assert info.value.reason == reason
    assert words in str(info.value)


async def test_an_endless_pac_is_killed() -> None:
    evaluator = SubprocessPacEvaluator(timeout_s=1.0)
    with pytest.raises(ProxyDiscoveryError, match="did not answer within 1 s") as info:
        await evaluator.find_proxy(
            "function FindProxyForURL(u, h) { for (;;) {} }",
            "https://h/",
            "h",
            hosts={},
            my_ip="",
            now=NOW,
        )
    assert info.value.reason == "timeout"


async def test_missing_pac_library_is_a_clear_error() -> None:
    # -S: no site-packages, so pypac and dukpy cannot be imported in the child.
    evaluator = SubprocessPacEvaluator(command=(sys.executable, "-I", "-S"))
    with pytest.raises(ProxyDiscoveryError, match=r"pip install 'device-direct\[pac\]'") as info:
        await evaluator.find_proxy(CORPORATE, "https://h/", "h", hosts={}, my_ip="", now=NOW)
    assert info.value.reason == "missing-extra"

    # Auto mode says so too, instead of quietly going DIRECT.
    async with WpadServer() as wpad:
        wpad.add("/wpad.dat", CORPORATE)
        detector = ProxyDetector(
            ProxyConfig(mode="auto"),
            VirtualClock(NOW),
            resolver=DnsTable({"wpad.corp.example.com": ["127.0.0.1"]}),
            evaluator=evaluator,
            wpad_port=wpad.port,
        )
        net = NetworkInfo("00:11:22:33:44:55", "10.1.2.3", "255.0.0.0", domain="corp.example.com")
        with pytest.raises(ProxyDiscoveryError) as info:
            await detector.decide("https://dd.example.com", net)
    assert info.value.reason == "missing-extra"


async def test_the_pac_sees_scheme_and_host_only() -> None:
    pac = """function FindProxyForURL(url, host) {
        if (url == "https://dd.example.com/" && host == "dd.example.com") return "PROXY ok.corp:1";
        return "PROXY leaked.corp:1"; }"""
    async with WpadServer() as wpad:
        wpad.add("/wpad.dat", pac)
        detector = ProxyDetector(
            ProxyConfig(mode="auto"),
            VirtualClock(NOW),
            resolver=DnsTable({"wpad.corp.example.com": ["127.0.0.1"]}),
            wpad_port=wpad.port,
        )
        net = NetworkInfo("00:11:22:33:44:55", "10.1.2.3", "255.0.0.0", domain="corp.example.com")
        decision = await detector.decide("https://DD.example.com:443/dd/v1/devices/42/uploads", net)
    assert [c.route for c in decision.choices] == ["PROXY ok.corp:1"]
