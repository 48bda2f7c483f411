"""The LAN plan: where each kind of host sits, and what is refused."""

from __future__ import annotations

import ipaddress

import pytest

from emulator.lan.plan import HostKind, LanSpec, LanSpecError, plan_lan, split_by_mix


def test_plan_places_every_host_once_in_the_subnet() -> None:
    plan = plan_lan(LanSpec(printers=50, non_printers=5, silent=20, agents=0.2, seed=3))
    addresses = [h.address for h in plan.hosts]
    assert len(addresses) == len(set(addresses)) == 75
    net = ipaddress.IPv4Network("127.0.1.0/24")
    assert all(ipaddress.IPv4Address(a) in net for a in addresses)
    assert len(plan.of(HostKind.PRINTER)) == 50
    assert len(plan.of(HostKind.OTHER)) == 5
    assert len(plan.of(HostKind.SILENT)) == 20
    assert sum(h.agent for h in plan.hosts) == 10
    serials = [h.serial for h in plan.of(HostKind.PRINTER)]
    assert len(set(serials)) == 50
    # printers are not all in one block: at least one non-printer sits between two
    kinds = [h.kind for h in plan.hosts]
    first, last = kinds.index(HostKind.PRINTER), 74 - kinds[::-1].index(HostKind.PRINTER)
    assert any(k is not HostKind.PRINTER for k in kinds[first:last])


def test_same_spec_same_plan_other_seed_other_plan() -> None:
    assert plan_lan(LanSpec(printers=20, seed=1)) == plan_lan(LanSpec(printers=20, seed=1))
    assert plan_lan(LanSpec(printers=20, seed=1)) != plan_lan(LanSpec(printers=20, seed=2))


def test_a_share_of_old_printers_speaks_snmpv1_only() -> None:
    spec = dict(printers=50, non_printers=5, silent=20, agents=0.2, seed=3)
    old = plan_lan(LanSpec(**spec, v1_only=0.1))  # type: ignore[arg-type]
    assert sum(h.v1_only for h in old.hosts) == 5
    assert all(h.kind is HostKind.PRINTER for h in old.hosts if h.v1_only)
    # without v1-only printers the plan is the one it always was (no extra draw)
    new = plan_lan(LanSpec(**spec))  # type: ignore[arg-type]
    assert [(h.address, h.kind, h.serial, h.agent) for h in new.hosts] == [
        (h.address, h.kind, h.serial, h.agent) for h in old.hosts]
    assert not any(h.v1_only for h in new.hosts)


def test_mix_split_is_exact() -> None:
    names = split_by_mix(10, (("a", 70), ("b", 30)))
    assert names.count("a") == 7 and names.count("b") == 3
    assert len(split_by_mix(7, (("a", 1), ("b", 1), ("c", 1)))) == 7


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"printers": 300}, "host addresses"),
    ({"printers": 1, "subnet": "10.0.0.0/24"}, "loopback"),
    ({"printers": 1, "subnet": "127.0.1.0/33"}, "subnet"),
    ({"printers": 1, "agents": 1.5}, "agents"),
    ({"printers": 1, "v1_only": -0.1}, "v1_only"),
    ({"printers": -1}, ">= 0"),
])
def test_bad_specs_say_what_is_wrong(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(LanSpecError, match=words):
        LanSpec(**kwargs)  # type: ignore[arg-type]
