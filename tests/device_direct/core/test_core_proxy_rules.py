"""Proxy rules without I/O: bypass matching, PAC answers, WPAD candidates, the route cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from device_direct.core.proxy_rules import (
    DIRECT,
    TRANSITIONS,
    CacheEvent,
    CacheState,
    Detection,
    ProxyChoice,
    ProxyDiscoveryError,
    RouteCache,
    dhcp_wpad_url,
    pac_target,
    parse_bypass,
    parse_no_proxy,
    parse_pac_answer,
    transition,
    wpad_candidates,
    wpad_dns_names,
)
from device_direct.errors import ConfigError, ProxyError

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
# A stand-in for the public suffix list, enough for these names.
PUBLIC = {"uk", "co.uk", "com", "local", "io", "github.io", "example"}


def is_public(name: str) -> bool:
    return name in PUBLIC or "." not in name


# -- bypass ----------------------------------------------------------------------------------


def test_bypass_names_suffixes_and_networks() -> None:
    bypass = parse_bypass(
        ["printers.corp.example", ".lab.example", "*.test.example", "10.0.0.0/8", "192.168.5.7"]
    )
    assert bypass.matches("PRINTERS.corp.example.")
    assert not bypass.matches("x.printers.corp.example")  # an exact name is that host only
    assert bypass.matches("lab.example") and bypass.matches("a.b.lab.example")
    assert not bypass.matches("notlab.example")
    assert bypass.matches("test.example") and bypass.matches("dd.test.example")
    assert bypass.matches("10.20.30.40") and not bypass.matches("11.0.0.1")
    assert bypass.matches("dd.example.com", ["10.1.1.1"])  # resolved address in a CIDR
    assert bypass.matches("192.168.5.7") and not bypass.matches("192.168.5.8")
    assert bypass.needs_addresses
    assert not parse_bypass(["a.example"]).needs_addresses


def test_bypass_local_all_and_ipv6() -> None:
    assert parse_bypass(["<local>"]).matches("printer")
    assert not parse_bypass(["<local>"]).matches("printer.corp")
    assert parse_bypass(["*"]).matches("anything.example.com")
    assert parse_bypass(["fd00::/8"]).matches("[fd00::1]")
    assert not parse_bypass(["fd00::/8"]).matches("10.0.0.1")


@pytest.mark.parametrize("entry", ["bad host!", "10.0.0.0/99", "", "a..b", "-x.example"])
def test_bad_bypass_entries_are_named(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"proxy\.bypass") as info:
        parse_bypass(["ok.example", entry])
    assert repr(entry) in str(info.value)


def test_no_proxy_follows_curl() -> None:
    bypass = parse_no_proxy("localhost, .corp.example,example.org:443 10.0.0.0/8 ;;;")
    assert bypass.matches("localhost")
    assert bypass.matches("dd.corp.example")
    assert bypass.matches("example.org") and bypass.matches("www.example.org")
    assert bypass.matches("10.9.9.9")
    assert not bypass.matches("dd.example.com")
    assert parse_no_proxy("*").matches("dd.example.com")
    assert not parse_no_proxy("").matches("dd.example.com")


names = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,4}", fullmatch=True)


@settings(max_examples=150)
@given(names, names)
def test_a_suffix_rule_matches_exactly_its_subtree(domain: str, host: str) -> None:
    bypass = parse_bypass([f".{domain}"])
    assert bypass.matches(f"{host}.{domain}")
    assert bypass.matches(domain)
    assert bypass.matches(host) == (host == domain or host.endswith("." + domain))


# -- PAC answers --------------------------------------------------------------------------------


def test_pac_answer_is_the_failover_order() -> None:
    assert parse_pac_answer("PROXY a.corp:3128; PROXY 10.0.0.2:8080; DIRECT") == (
        ProxyChoice("a.corp", 3128),
        ProxyChoice("10.0.0.2", 8080),
        DIRECT,
    )
    assert parse_pac_answer("  proxy A.Corp:3128 ;;  ") == (ProxyChoice("a.corp", 3128),)
    assert parse_pac_answer("HTTP p:1; PROXY p:1") == (ProxyChoice("p", 1),)


@pytest.mark.parametrize("answer", [None, "", "   "])
def test_an_empty_pac_answer_means_direct(answer: str | None) -> None:
    assert parse_pac_answer(answer) == (DIRECT,)


def test_unusable_pac_entries_are_skipped_and_none_left_is_an_error() -> None:
    assert parse_pac_answer("SOCKS5 s:1080; HTTPS h:443; PROXY nohost; DIRECT") == (DIRECT,)
    with pytest.raises(ProxyDiscoveryError, match="SOCKS s:1080") as info:
        parse_pac_answer("SOCKS s:1080; PROXY p:99999")
    assert info.value.reason == "answer"
    assert isinstance(info.value, ProxyError)


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_pac_answer_parser_never_crashes(answer: str) -> None:
    try:
        choices = parse_pac_answer(answer)
    except ProxyDiscoveryError as exc:
        assert exc.reason == "answer"
        return
    assert choices and len(set(choices)) == len(choices)
    for choice in choices:
        assert choice.route == "DIRECT" or choice.route.startswith("PROXY ")


def test_choice_routes_and_urls() -> None:
    assert ProxyChoice("p.corp", 3128).url == "http://p.corp:3128"
    assert ProxyChoice("p.corp", 3128).route == "PROXY p.corp:3128"
    assert ProxyChoice("fd00::1", 8080).url == "http://[fd00::1]:8080"
    assert DIRECT.url is None and DIRECT.route == "DIRECT" and DIRECT.direct
    with pytest.raises(ValueError):
        ProxyChoice("p", None)
    with pytest.raises(ValueError):
        ProxyChoice("bad host", 1)


def test_pac_target_hides_the_path() -> None:
    assert pac_target("https://DD.example.com:8443/dd/v1/devices/42/uploads?x=1") == (
        "https://dd.example.com/",
        "dd.example.com",
    )
    with pytest.raises(ValueError):
        pac_target("/relative")


# -- WPAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("http://wpad.corp/wpad.dat\x00", "http://wpad.corp/wpad.dat"),
        ("http://wpad.corp/p.pac \n\x00\x00", "http://wpad.corp/p.pac"),
        ("\x00", None),
        ("", None),
        (None, None),
        ("file:///etc/passwd", None),
        ("wpad.corp", None),
    ],
)
def test_dhcp_option_252_is_cleaned(raw: str | None, url: str | None) -> None:
    assert dhcp_wpad_url(raw) == url


def test_dns_walk_stops_before_the_public_suffix() -> None:
    assert wpad_dns_names("corp.example.co.uk", is_public) == (
        "wpad.corp.example.co.uk",
        "wpad.example.co.uk",
    )
    assert wpad_dns_names("a.b.example.com.", is_public) == (
        "wpad.a.b.example.com",
        "wpad.b.example.com",
        "wpad.example.com",
    )
    assert wpad_dns_names("co.uk", is_public) == ()
    assert wpad_dns_names("", is_public) == ()
    assert wpad_dns_names("bad_domain!", is_public) == ()


def test_candidates_put_dhcp_first() -> None:
    found = wpad_candidates("http://pac.corp:8080/x.pac\x00", "lab.corp.example.co.uk", is_public)
    assert [c.source for c in found] == ["wpad-dhcp", "wpad-dns", "wpad-dns", "wpad-dns"]
    assert found[0].url == "http://pac.corp:8080/x.pac"
    assert found[1].url == "http://wpad.lab.corp.example.co.uk/wpad.dat"
    assert wpad_candidates(None, "example.com", is_public, port=8081)[0].url == (
        "http://wpad.example.com:8081/wpad.dat"
    )


labels = st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=14)


@settings(max_examples=200)
@given(labels, st.sampled_from(sorted(PUBLIC)))
def test_no_candidate_is_ever_under_a_public_suffix(parts: list[str], suffix: str) -> None:
    domain = ".".join([*parts, suffix])
    for name in wpad_dns_names(domain, is_public):
        below = name.removeprefix("wpad.")
        assert not is_public(below)
        assert domain.endswith(below)


# -- route cache ---------------------------------------------------------------------------------

P1 = ProxyChoice("p1.corp", 3128)
P2 = ProxyChoice("p2.corp", 3128)
FOUND = Detection((P1, P2, DIRECT), "wpad-dns", "http://wpad.corp/wpad.dat")


def test_cache_serves_until_network_change_or_ttl() -> None:
    cache = RouteCache(ttl=timedelta(hours=1)).refresh(T0, ("net-a",))
    assert cache.needs_detection
    cache = cache.detected(T0, FOUND)
    assert not cache.refresh(T0 + timedelta(minutes=59), ("net-a",)).needs_detection
    assert cache.refresh(T0 + timedelta(hours=1), ("net-a",)).needs_detection
    assert cache.refresh(T0 + timedelta(minutes=1), ("net-b",)).needs_detection


def test_failed_proxies_go_last_and_all_failing_means_detect_again() -> None:
    cache = RouteCache(penalty=timedelta(minutes=30)).detected(T0, FOUND)
    cache = cache.failed(T0, P1)
    assert cache.order(T0) == (P2, DIRECT, P1)
    assert cache.order(T0 + timedelta(minutes=30)) == (P1, P2, DIRECT)
    assert not cache.needs_detection
    cache = cache.failed(T0, P2).failed(T0, DIRECT)
    assert cache.needs_detection and cache.state is CacheState.STALE
    assert cache.detected(T0, FOUND).order(T0) == (P1, P2, DIRECT)
    assert cache.failed(T0, P1).succeeded(P1).order(T0) == (P1, P2, DIRECT)


def test_missing_transitions_raise() -> None:
    with pytest.raises(ValueError, match="no transition from empty on expired"):
        transition(CacheState.EMPTY, CacheEvent.EXPIRED)


@settings(max_examples=100)
@given(st.sampled_from(CacheState), st.sampled_from(CacheEvent))
def test_every_pair_is_in_the_table_or_refused(state: CacheState, event: CacheEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) in CacheState
    else:
        with pytest.raises(ValueError):
            transition(state, event)


class CacheMachine(RuleBasedStateMachine):
    """Random detections, failures, successes, clock steps and network changes."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = RouteCache(ttl=timedelta(hours=1), penalty=timedelta(minutes=10))
        self.now = T0
        self.net = 0

    @rule(minutes=st.integers(0, 90))
    def tick(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)
        self.cache = self.cache.refresh(self.now, (self.net,))

    @rule()
    def network_changes(self) -> None:
        self.net += 1
        self.cache = self.cache.refresh(self.now, (self.net,))
        assert self.cache.needs_detection

    @rule()
    def detect(self) -> None:
        self.cache = self.cache.refresh(self.now, (self.net,)).detected(self.now, FOUND)
        assert not self.cache.needs_detection

    @precondition(lambda self: self.cache.detection is not None)
    @rule(which=st.sampled_from([P1, P2, DIRECT]))
    def fail(self, which: ProxyChoice) -> None:
        self.cache = self.cache.failed(self.now, which)

    @precondition(lambda self: self.cache.detection is not None)
    @rule(which=st.sampled_from([P1, P2, DIRECT]))
    def succeed(self, which: ProxyChoice) -> None:
        self.cache = self.cache.succeeded(which)
        assert which not in {c for c, _ in self.cache.failed_at}

    @invariant()
    def order_is_a_permutation(self) -> None:
        if self.cache.detection is not None:
            assert sorted(map(repr, self.cache.order(self.now))) == sorted(
                map(repr, self.cache.detection.choices)
            )
        else:
            assert self.cache.order(self.now) == ()


CacheMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30)
TestCacheMachine = CacheMachine.TestCase
