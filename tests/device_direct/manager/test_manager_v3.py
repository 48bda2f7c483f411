"""SNMPv3 (USM, SHA + AES): the manager reads an emulated printer that has a v3 user."""

from __future__ import annotations

from device_direct.clock import SystemClock
from device_direct.manager.scan import Scanner, ScanOptions
from device_direct.manager.snmp import Credential
from device_direct.manager.targets import Target
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.snmp import Community, SnmpAgent, SnmpAgentConfig, UsmUser


async def test_v3_user_reads_the_printer_and_a_wrong_key_does_not() -> None:
    clock = SystemClock()
    device = EmulatedDevice(load_profile("office-mono"), serial="V3TEST0001", clock=clock,
                            rng_seed=3, state_dir=None)
    agent = SnmpAgent(device, clock=clock, config=SnmpAgentConfig(
        host="127.0.0.1", port=0, communities=(Community("not-the-one"),),
        users=(UsmUser("manager", "auth-pass-123", "priv-pass-123"),)))
    await agent.start()
    try:
        good = Credential(user="manager", auth_key="auth-pass-123", priv_key="priv-pass-123")
        scanner = Scanner(ScanOptions(credentials=(Credential(community="public"), good),
                                      timeout=1.0, retries=1))
        try:
            doc = (await scanner.scan([Target("127.0.0.1", agent.port)])).to_json()
        finally:
            scanner.close()
        assert doc["errors"] == [] and len(doc["printers"]) == 1
        p = doc["printers"][0]
        assert p["serial"] == "V3TEST0001"
        assert p["counters"]["total_impressions"] == device.counters().total_impressions
        assert p["properties"]["snmp"] == "v3:manager"  # the label, never the keys
        assert "auth-pass-123" not in str(p) and "priv-pass-123" not in str(p)

        bad = Credential(user="manager", auth_key="wrong-pass-123", priv_key="priv-pass-123")
        scanner = Scanner(ScanOptions(credentials=(bad,), timeout=0.5, retries=0))
        try:
            doc = (await scanner.scan([Target("127.0.0.1", agent.port)])).to_json()
        finally:
            scanner.close()
        assert doc["printers"] == []
        assert doc["no_answer"] + len(doc["errors"]) == 1
    finally:
        await agent.stop()
