"""WPAD discovery against a loopback web server and a DNS table the test controls.

The public suffix bound uses the real bundled list (publicsuffixlist): the device in
``corp.example.co.uk`` asks ``wpad.corp.example.co.uk`` and ``wpad.example.co.uk``,
never ``wpad.co.uk``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from proxyfixtures import DnsTable, WpadServer

from device_direct.config import ProxyConfig
from device_direct.core.proxy_rules import ProxyDiscoveryError
from device_direct.errors import ConnectError
from device_direct.model import NetworkInfo
from device_direct.pac import SubprocessPacEvaluator
from device_direct.proxy import ProxyDetector, bundled_public_suffixes, fetch_pac
from emulator.clock import VirtualClock

SERVER = "https://dd.example.com"
AUTO = ProxyConfig(mode="auto")
PAC = 'function FindProxyForURL(url, host) { return "PROXY %s; DIRECT"; }'
LOOP = "function FindProxyForURL(url, host) { while (true) {} }"
BROKEN = 'function FindProxyForURL(url, host) { return "DIRECT" '


def network(domain: str = "", wpad_url: str | None = None) -> NetworkInfo:
    return NetworkInfo(
        mac="00:11:22:33:44:55",
        ipv4="10.1.2.3",
        subnet_mask="255.255.0.0",
        domain=domain,
        wpad_url=wpad_url,
    )


def detector(wpad: WpadServer, dns: DnsTable, **kwargs: object) -> ProxyDetector:
    options: dict[str, object] = {
        "resolver": dns,
        "wpad_port": wpad.port,
        # Generous: a cold interpreter evaluating the PAC took over 5 s once on a machine
        # at load 10; the timeout tests below set their own short ones.
        "fetch_timeout_s": 10.0,
        "evaluator": SubprocessPacEvaluator(timeout_s=30.0),
        **kwargs,
    }
    return ProxyDetector(AUTO, VirtualClock(datetime(2026, 3, 1, tzinfo=UTC)), **options)  # type: ignore[arg-type]


def routes(decision: object) -> list[str]:
    return [c.route for c in decision.choices]  # type: ignore[attr-defined]


async def test_dhcp_option_252_comes_first() -> None:
    async with WpadServer() as wpad:
        wpad.add("/proxy.pac", PAC % "dhcp.corp:3128")
        wpad.add("/wpad.dat", PAC % "dns.corp:3128")
        dns = DnsTable(
            {"pac.corp.example.co.uk": ["127.0.0.1"], "wpad.example.co.uk": ["127.0.0.1"]}
        )
        url = f"http://pac.corp.example.co.uk:{wpad.port}/proxy.pac\x00\n "
        decision = await detector(wpad, dns).decide(SERVER, network("corp.example.co.uk", url))
    assert routes(decision) == ["PROXY dhcp.corp:3128", "DIRECT"]
    assert decision.source == "wpad-dhcp"
    assert decision.pac_url == url.rstrip("\x00\n ")
    assert not any(name.startswith("wpad.") for name in dns.asked)
    # FindProxyForURL saw only scheme and host (the PAC is run with the server host).
    assert wpad.requests == [(f"pac.corp.example.co.uk:{wpad.port}", "/proxy.pac")]


async def test_dns_walk_goes_up_but_never_to_the_public_suffix() -> None:
    async with WpadServer() as wpad:
        wpad.add("/wpad.dat", PAC % "dns.corp:3128")
        # Only the attacker-controllable name answers; the device must not ask it.
        dns = DnsTable({"wpad.co.uk": ["127.0.0.1"], "wpad.uk": ["127.0.0.1"]})
        decision = await detector(wpad, dns).decide(SERVER, network("lab.corp.example.co.uk"))
        assert routes(decision) == ["DIRECT"] and decision.source == "wpad-dns"
        walked = [n for n in dns.asked if n.startswith("wpad.")]
        assert walked == [
            "wpad.lab.corp.example.co.uk",
            "wpad.corp.example.co.uk",
            "wpad.example.co.uk",
        ]
        assert wpad.requests == []

        dns.names["wpad.corp.example.co.uk"] = ["127.0.0.1"]
        found = await detector(wpad, dns).decide(SERVER, network("lab.corp.example.co.uk"))
    assert routes(found) == ["PROXY dns.corp:3128", "DIRECT"] and found.source == "wpad-dns"
    assert wpad.requests == [(f"wpad.corp.example.co.uk:{wpad.port}", "/wpad.dat")]


def test_bundled_public_suffix_list() -> None:
    is_public = bundled_public_suffixes()
    assert is_public("co.uk") and is_public("com") and is_public("github.io")
    assert not is_public("example.co.uk") and not is_public("corp.example.com")


async def test_bad_pac_files_are_skipped_with_the_reason_kept() -> None:
    async with WpadServer() as wpad:
        wpad.add("/html.pac", "<html>captive portal</html>", content_type="text/html")
        wpad.add("/wpad.dat", BROKEN)
        dns = DnsTable(
            {
                "pac.corp": ["127.0.0.1"],
                "wpad.a.example.com": ["127.0.0.1"],
                "wpad.example.com": ["127.0.0.1"],
            }
        )
        # wpad.a.example.com serves the broken one; its parent is asked next, same file.
        decision = await detector(wpad, dns).decide(
            SERVER, network("a.example.com", f"http://pac.corp:{wpad.port}/html.pac")
        )
    assert routes(decision) == ["DIRECT"]
    problems = "\n".join(decision.problems)
    assert "content-type" in problems and "'text/html'" in problems
    assert "syntax" in problems and "not valid JavaScript" in problems


async def test_fetch_limits() -> None:
    dns = DnsTable({"wpad.corp": ["127.0.0.1"]})
    async with WpadServer() as wpad:
        big = "// padding\n" * 200 + PAC % "p:1"
        wpad.add("/big.pac", big)
        wpad.add("/big-chunked.pac", big, chunked=True)
        wpad.add(
            "/js.pac", PAC % "p:1", content_type="application/x-javascript-config; charset=utf-8"
        )
        wpad.add("/hang.pac", PAC % "p:1", hang=True)
        base = f"http://wpad.corp:{wpad.port}"
        for path in ("/big.pac", "/big-chunked.pac"):
            with pytest.raises(ProxyDiscoveryError, match="1024-byte limit") as info:
                await fetch_pac(base + path, resolver=dns, max_bytes=1024)
            assert info.value.reason == "too-large" and info.value.url == base + path
        assert "FindProxyForURL" in await fetch_pac(base + "/js.pac", resolver=dns)
        with pytest.raises(ProxyDiscoveryError) as info:
            await fetch_pac(base + "/hang.pac", resolver=dns, timeout_s=0.3)
        assert info.value.reason == "timeout"
        with pytest.raises(ProxyDiscoveryError) as info:
            await fetch_pac(base + "/missing.pac", resolver=dns)
        assert info.value.reason == "not-found"
        with pytest.raises(ProxyDiscoveryError) as info:
            await fetch_pac("http://unknown.corp/wpad.dat", resolver=dns)
        assert info.value.reason == "not-found"


async def test_a_pac_that_never_answers_is_stopped() -> None:
    async with WpadServer() as wpad:
        wpad.add("/loop.pac", LOOP)
        wpad.add("/hang.pac", PAC % "p:1", hang=True)
        dns = DnsTable({"pac.corp": ["127.0.0.1"]})
        for path, timeouts in (
            ("/loop.pac", {"evaluator": SubprocessPacEvaluator(timeout_s=1.0)}),
            ("/hang.pac", {"fetch_timeout_s": 0.3}),
        ):
            d = detector(wpad, dns, **timeouts)
            decision = await d.decide(SERVER, network("", f"http://pac.corp:{wpad.port}{path}"))
            assert routes(decision) == ["DIRECT"]
            assert any("proxy discovery timeout" in p for p in decision.problems), decision.problems


async def test_answer_is_cached_until_the_network_changes_or_every_route_fails() -> None:
    async with WpadServer() as wpad:
        wpad.add("/wpad.dat", 'function FindProxyForURL(url, host) { return "DIRECT"; }')
        dns = DnsTable(
            {"wpad.corp.example.com": ["127.0.0.1"], "wpad.other.example.com": ["127.0.0.1"]}
        )
        d = detector(wpad, dns)
        net = network("corp.example.com")
        await d.decide(SERVER, net)
        await d.decide(SERVER, net)
        assert len(wpad.requests) == 1  # cached
        await d.decide(SERVER, network("other.example.com"))
        assert len(wpad.requests) == 2  # new network, new detection

        class Transport:
            def set_proxy(self, url: str | None, credentials: object = None) -> None:
                self.url = url

        async def unreachable() -> None:
            raise ConnectError("cannot connect")

        with pytest.raises(ConnectError):
            await d.call(Transport(), SERVER, network("other.example.com"), unreachable)
        await d.decide(SERVER, network("other.example.com"))
        assert len(wpad.requests) == 3  # every route failed: detected again
        assert d.describe()["cache"] == "fresh"


async def test_ttl_expiry_detects_again() -> None:
    async with WpadServer() as wpad:
        wpad.add("/wpad.dat", PAC % "p.corp:1")
        dns = DnsTable({"wpad.corp.example.com": ["127.0.0.1"]})
        clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
        d = ProxyDetector(AUTO, clock, resolver=dns, wpad_port=wpad.port, ttl=timedelta(hours=1))
        net = network("corp.example.com")
        await d.decide(SERVER, net)
        clock.advance_to(clock.now() + timedelta(minutes=59))
        await d.decide(SERVER, net)
        assert len(wpad.requests) == 1
        clock.advance_to(clock.now() + timedelta(minutes=2))
        await d.decide(SERVER, net)
        assert len(wpad.requests) == 2
