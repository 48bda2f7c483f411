"""The LAN's agent share: those printers also upload by themselves (the combination model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.clock import VirtualClock
from emulator.lan import EmulatedLan, LanAgentOptions, LanOptions, LanSpec
from emulator.lan.network import LanStartError
from emulator.pytest_plugin import DeviceDirectWaiter
from emulator.server.app import ReferenceServer


async def test_printers_with_agents_register_and_upload(
        tmp_path: Path, dd_server: ReferenceServer, dd_clock: VirtualClock,
        dd_wait: DeviceDirectWaiter) -> None:
    keys = tuple(dd_server.create_registration_key(ttl_s=86400 * 30) for _ in range(2))
    agents = LanAgentOptions(server_url=f"https://127.0.0.1:{dd_server.port}/",
                             ca_bundle=dd_server.ca_cert_path, server_name="localhost",
                             registration_keys=keys, state_dir=tmp_path / "agents")
    spec = LanSpec(printers=4, non_printers=1, silent=1, agents=0.5, seed=5,
                   subnet="127.0.4.0/28")
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, days_of_use=2,
                                      agents=agents), clock=dd_clock) as lan:
        with_agent = {p.plan.serial for p in lan.printers if p.plan.agent}
        assert len(with_agent) == 2
        assert sum(h["agent"] for h in lan.describe()["hosts"] if h["kind"] == "printer") == 2

        def uploaded() -> bool:
            devices = {d["serial"]: d for d in dd_server.storage.devices()}
            return set(devices) == with_agent and all(
                dd_server.storage.uploads_count(devices[s]["device_id"]) >= 1
                for s in with_agent)

        await dd_wait.until(uploaded, what="both agents to register and upload")


async def test_too_few_registration_keys_is_a_clear_error(tmp_path: Path) -> None:
    agents = LanAgentOptions(server_url="https://127.0.0.1:1/", ca_bundle=tmp_path / "ca.pem",
                             registration_keys=("only-one",), state_dir=tmp_path)
    spec = LanSpec(printers=4, non_printers=0, silent=0, agents=1.0, subnet="127.0.4.16/28")
    lan = EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, days_of_use=0,
                                 agents=agents))
    with pytest.raises(LanStartError, match="4 printers run an agent but only 1"):
        await lan.start()
    await lan.stop()
