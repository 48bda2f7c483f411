"""Uploads through real proxies on loopback: tinyproxy (BasicAuth), a dead proxy, a MITM.

Every test talks to the real reference server over mutual TLS; the proxy in between is
Debian's tinyproxy or a small man-in-the-middle written here.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from proxyfixtures import DnsTable, WpadServer, mitm_proxy, refusing_socket, tinyproxy

from device_direct.clock import SystemClock
from device_direct.config import ProxyConfig
from device_direct.core.payload import PayloadMeta, ProxyRoute, build_xml, pack_zip
from device_direct.core.privacy import PrivacyPolicy
from device_direct.errors import ProxyError, TLSError
from device_direct.identity import IdentityStore
from device_direct.model import DeviceSnapshot, NetworkInfo
from device_direct.proxy import ProxyDetector, env_proxy
from device_direct.transport import Timeouts, Transport, UploadResult
from emulator.server import ReferenceServer

FAST = Timeouts(connect=5, request=10, upload=10, read=10)
USER, PASSWORD = "alice", "s3cret"


def _payload_samples() -> ModuleType:
    path = Path(__file__).parent / "core" / "payload_samples.py"
    spec = importlib.util.spec_from_file_location("dd_payload_samples_proxy", path)
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SNAPSHOT: DeviceSnapshot = _payload_samples().make_snapshot()


def network(**changes: object) -> NetworkInfo:
    base = {"mac": "00:11:22:33:44:55", "ipv4": "10.1.2.3", "subnet_mask": "255.255.0.0"}
    return NetworkInfo(**{**base, **changes})  # type: ignore[arg-type]


def payload(route: ProxyRoute | None = None) -> tuple[bytes, str]:
    upload_id = str(uuid.uuid4())
    meta = PayloadMeta(upload_id, 1, datetime.now(UTC))
    return pack_zip(build_xml(SNAPSHOT, meta, policy=PrivacyPolicy(), proxy=route)), upload_id


@asynccontextmanager
async def device(srv: ReferenceServer, directory: Path) -> AsyncIterator[tuple[Transport, str]]:
    # Connect by address, verify by name: the proxy is asked for 127.0.0.1.
    url = f"https://127.0.0.1:{srv.port}"
    store = IdentityStore(directory)
    async with Transport(
        url, srv.ca_cert_path, "localhost", store, SystemClock(), timeouts=FAST
    ) as t:
        yield t, url


async def register(
    detector: ProxyDetector,
    t: Transport,
    url: str,
    srv: ReferenceServer,
    net: NetworkInfo | None = None,
) -> str:
    ident = SNAPSHOT.identity
    key = srv.create_registration_key()
    firmware = dict(ident.firmware)
    return await detector.call(
        t,
        url,
        net or network(),
        lambda: t.register(ident.serial, ident.model, SNAPSHOT.network.mac, firmware, key),
    )


def manual(port: int, user: str | None = None, password: str | None = None) -> ProxyConfig:
    return ProxyConfig(mode="manual", host="127.0.0.1", port=port, username=user, password=password)


async def test_upload_through_tinyproxy_with_basic_auth(tmp_path: Path) -> None:
    async with (
        ReferenceServer(tmp_path / "server") as srv,
        tinyproxy(tmp_path / "tp", user=USER, password=PASSWORD) as tp,
        device(srv, tmp_path / "id") as (t, url),
    ):
        detector = ProxyDetector(
            manual(tp.port, USER, PASSWORD), SystemClock(), resolver=DnsTable()
        )
        await register(detector, t, url, srv)
        route = detector.last_route
        assert route == ProxyRoute(f"PROXY 127.0.0.1:{tp.port}", "manual")
        data, upload_id = payload(route)
        result = await detector.call(t, url, network(), lambda: t.upload(data, upload_id))
        assert result == UploadResult("stored", 201)
        assert b'route="PROXY 127.0.0.1:' in build_xml(
            SNAPSHOT,
            PayloadMeta(upload_id, 1, datetime.now(UTC)),
            policy=PrivacyPolicy(),
            proxy=route,
        )
    assert any(f"CONNECT 127.0.0.1:{srv.port}" in line for line in tp.log), tp.log[-20:]


async def test_missing_or_wrong_proxy_credentials_are_a_clear_407(tmp_path: Path) -> None:
    async with (
        ReferenceServer(tmp_path / "server") as srv,
        tinyproxy(tmp_path / "tp", user=USER, password=PASSWORD) as tp,
    ):
        cases = [
            (manual(tp.port), "no credentials are configured"),
            (manual(tp.port, USER, "wrong"), "refused the credentials of user 'alice'"),
        ]
        for n, (cfg, hint) in enumerate(cases):
            detector = ProxyDetector(cfg, SystemClock(), resolver=DnsTable())
            async with device(srv, tmp_path / f"id{n}") as (t, url):
                with pytest.raises(ProxyError, match="requires authentication") as info:
                    await register(detector, t, url, srv)
            assert hint in str(info.value)
            # tinyproxy says 401 to a CONNECT without valid credentials; others say 407.
            assert "(401)" in str(info.value) or "(407)" in str(info.value)
            # Not failed over to DIRECT behind the customer's back: 407 is a config error.
            assert detector.last_route == ProxyRoute(f"PROXY 127.0.0.1:{tp.port}", "manual")


async def _wpad_detector(
    wpad: WpadServer, answer: str, cfg: ProxyConfig
) -> tuple[ProxyDetector, NetworkInfo]:
    wpad.add("/proxy.pac", f'function FindProxyForURL(url, host) {{ return "{answer}"; }}')
    dns = DnsTable({"pac.corp.example": ["127.0.0.1"]})
    net = network(wpad_url=f"http://pac.corp.example:{wpad.port}/proxy.pac\x00")
    return ProxyDetector(
        cfg, SystemClock(), resolver=dns, is_public_suffix=lambda n: "." not in n
    ), net


async def test_a_dead_proxy_hands_over_to_the_next_pac_entry_then_direct(tmp_path: Path) -> None:
    # Held while the test runs: a port chosen and closed could be taken by the next
    # bind to port 0 (tinyproxy's, the servers'), and the dead proxy would answer.
    with refusing_socket() as held:
        dead = int(held.getsockname()[1])
        auto = ProxyConfig(mode="auto")
        async with (
            ReferenceServer(tmp_path / "server") as srv,
            tinyproxy(tmp_path / "tp") as tp,
            WpadServer() as wpad,
            device(srv, tmp_path / "id") as (t, url),
        ):
            detector, net = await _wpad_detector(
                wpad, f"PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{tp.port}; DIRECT", auto
            )
            await register(detector, t, url, srv, net)
            assert detector.last_route == ProxyRoute(f"PROXY 127.0.0.1:{tp.port}", "wpad-dhcp")
            # The dead proxy is now tried last.
            decision = await detector.decide(url, net)
            assert [c.port for c in decision.choices] == [tp.port, None, dead]

            wpad2 = WpadServer()
            async with wpad2:
                direct_detector, net2 = await _wpad_detector(
                    wpad2, f"PROXY 127.0.0.1:{dead}; DIRECT", auto
                )
                data, upload_id = payload()
                result = await direct_detector.call(t, url, net2, lambda: t.upload(data, upload_id))
            assert result == UploadResult("stored", 201)
            assert direct_detector.last_route == ProxyRoute("DIRECT", "wpad-dhcp")
        assert any("CONNECT" in line for line in tp.log)


async def test_a_proxy_that_never_answers_hands_over_to_the_next_pac_entry(
    tmp_path: Path,
) -> None:
    # It takes the connection (the kernel does, to its backlog) and never answers the
    # CONNECT: a proxy whose upstream hangs, or a black hole. Not a wait for ever on it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        hung = int(silent.getsockname()[1])
        async with (
            ReferenceServer(tmp_path / "server") as srv,
            tinyproxy(tmp_path / "tp") as tp,
            WpadServer() as wpad,
            Transport(f"https://127.0.0.1:{srv.port}", srv.ca_cert_path, "localhost",
                      IdentityStore(tmp_path / "id"), SystemClock(),
                      timeouts=Timeouts(connect=1, request=10, upload=10, read=10)) as t,
        ):
            detector, net = await _wpad_detector(
                wpad, f"PROXY 127.0.0.1:{hung}; PROXY 127.0.0.1:{tp.port}", ProxyConfig(mode="auto")
            )
            await register(detector, t, f"https://127.0.0.1:{srv.port}", srv, net)
            assert detector.last_route == ProxyRoute(f"PROXY 127.0.0.1:{tp.port}", "wpad-dhcp")
            decision = await detector.decide(f"https://127.0.0.1:{srv.port}", net)
            assert [c.port for c in decision.choices] == [tp.port, hung]


async def test_credentials_go_to_a_discovered_proxy_only_when_allowed(tmp_path: Path) -> None:
    async with (
        ReferenceServer(tmp_path / "server") as srv,
        tinyproxy(tmp_path / "tp", user=USER, password=PASSWORD) as tp,
        WpadServer() as wpad,
    ):
        answer = f"PROXY 127.0.0.1:{tp.port}"
        refused = ProxyConfig(mode="auto", username=USER, password=PASSWORD)
        detector, net = await _wpad_detector(wpad, answer, refused)
        async with device(srv, tmp_path / "id1") as (t, url):
            with pytest.raises(ProxyError, match="allow_credentials_to_auto is false"):
                await register(detector, t, url, srv, net)
        allowed = ProxyConfig(
            mode="auto", username=USER, password=PASSWORD, allow_credentials_to_auto=True
        )
        detector, net = await _wpad_detector(wpad, answer, allowed)
        async with device(srv, tmp_path / "id2") as (t, url):
            assert await register(detector, t, url, srv, net)
        assert detector.last_route == ProxyRoute(f"PROXY 127.0.0.1:{tp.port}", "wpad-dhcp")


async def test_a_proxy_presenting_its_own_certificate_is_refused(tmp_path: Path) -> None:
    async with (
        ReferenceServer(tmp_path / "server") as srv,
        mitm_proxy(tmp_path) as mitm,
        device(srv, tmp_path / "id") as (t, url),
    ):
        detector = ProxyDetector(manual(mitm.port), SystemClock(), resolver=DnsTable())
        with pytest.raises(TLSError) as info:
            await register(detector, t, url, srv)
        assert info.value.reason == "unknown-ca"
    assert mitm.connects == [f"CONNECT 127.0.0.1:{srv.port} HTTP/1.1"]
    # The device hung up during the handshake: no request, no key, no data went out.
    assert mitm.handshakes_completed == 0 and mitm.plaintext == []


# -- choosing without a network -----------------------------------------------------------------


async def test_environment_is_honoured_only_when_configured() -> None:
    env = {"https_proxy": "http://bob:pw@proxy.corp:3128", "NO_PROXY": ".internal"}
    net = network()
    on = ProxyDetector(ProxyConfig(use_env=True), SystemClock(), resolver=DnsTable(), environ=env)
    decision = await on.decide("https://dd.example.com", net)
    assert [c.route for c in decision.choices] == ["PROXY proxy.corp:3128"]
    assert decision.source == "env" and decision.credentials == ("bob", "pw")
    inside = await on.decide("https://dd.internal", net)
    assert [c.route for c in inside.choices] == ["DIRECT"]

    off = ProxyDetector(ProxyConfig(), SystemClock(), resolver=DnsTable(), environ=env)
    assert (await off.decide("https://dd.example.com", net)).source == "off"
    httpoxy = ProxyDetector(
        ProxyConfig(use_env=True),
        SystemClock(),
        resolver=DnsTable(),
        environ={**env, "REQUEST_METHOD": "GET"},
    )
    assert [c.route for c in (await httpoxy.decide("https://dd.example.com", net)).choices] == [
        "DIRECT"
    ]
    man = ProxyDetector(
        ProxyConfig(mode="manual", host="p.corp", port=8080, use_env=True),
        SystemClock(),
        resolver=DnsTable(),
        environ=env,
    )
    assert (await man.decide("https://dd.example.com", net)).choices[0].route == "PROXY p.corp:8080"


def test_env_proxy_parsing() -> None:
    assert env_proxy({}, "h") is None
    assert env_proxy({"HTTPS_PROXY": "p.corp:8080"}, "h") is not None
    assert env_proxy({"HTTPS_PROXY": "socks5://p.corp:1080"}, "h") is None
    found = env_proxy({"HTTPS_PROXY": "http://p.corp"}, "h")
    assert found is not None and found.choice.route == "PROXY p.corp:80"


@pytest.mark.parametrize("value", ["http://[::1", "http://bob:secret@[::1:3128", "http://u@[zz]:1"])
def test_an_unparsable_env_proxy_is_ignored_with_a_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # urlsplit raises on these; the agent's sync must not end on a typo in https_proxy.
    with caplog.at_level(logging.WARNING, logger="device_direct.proxy"):
        assert env_proxy({"https_proxy": value}, "dd.example.com") is None
    assert "ignored" in caplog.text and "secret" not in caplog.text


async def test_bypass_list_goes_direct_and_cidr_uses_the_resolver() -> None:
    cfg = ProxyConfig(mode="manual", host="p.corp", port=3128, bypass=(".lab.corp", "10.0.0.0/8"))
    dns = DnsTable({"dd.example.com": ["10.9.8.7"], "dd.public.example": ["203.0.113.5"]})
    detector = ProxyDetector(cfg, SystemClock(), resolver=dns)
    net = network()
    assert (await detector.decide("https://x.lab.corp", net)).choices[0].direct
    assert (await detector.decide("https://dd.example.com", net)).choices[0].direct
    routed = await detector.decide("https://dd.public.example", net)
    assert routed.choices[0].route == "PROXY p.corp:3128" and routed.source == "manual"
    assert "dd.public.example" in dns.asked
