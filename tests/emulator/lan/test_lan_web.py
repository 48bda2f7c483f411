"""Each LAN printer serves its own web pages on its own address, one port for all."""

from __future__ import annotations

import re

import aiohttp

from emulator.lan import EmulatedLan, LanOptions, LanSpec


async def _get(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url, allow_redirects=False) as response:
        assert response.status == 200, (url, response.status)
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        return await response.text()


async def test_each_printer_serves_its_pages_on_its_address() -> None:
    spec = LanSpec(printers=3, non_printers=1, silent=1, seed=21, subnet="127.0.21.0/28")
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, web_port=0,
                                      days_of_use=3)) as lan:
        addresses = [p.address for p in lan.printers]
        info = lan.describe()
        port = info["web_port"]
        assert isinstance(port, int) and port > 0
        printers = [h for h in info["hosts"] if h["kind"] == "printer"]
        assert [h["web_port"] for h in printers] == [port] * 3
        assert all("web_port" not in h for h in info["hosts"] if h["kind"] != "printer")
        async with aiohttp.ClientSession() as session:
            for printer in lan.printers:
                base = f"http://{printer.address}:{port}"
                status = await _get(session, f"{base}/status")
                assert printer.plan.serial in status
                for other in lan.printers:
                    if other is not printer:
                        assert other.plan.serial not in status
                supplies = await _get(session, f"{base}/supplies")
                shown = {int(i): int(level) for i, level in re.findall(
                    r'class="supply" data-index="(\d+)" data-level="(-?\d+)"', supplies)}
                model = {s.index: s.level for s in printer.device.snapshot().supplies}
                assert shown == model and shown
            # A change in the model is on the page at once (the same source, no cache).
            first = lan.printers[0]
            supply = first.device.snapshot().supplies[0]
            first.device.set_supply_level(supply.index, 7)
            supplies = await _get(session, f"http://{first.address}:{port}/supplies")
            assert f'data-index="{supply.index}" data-level="7"' in supplies
    # Stopped: the port is closed on every address.
    async with aiohttp.ClientSession() as session:
        for address in addresses:
            try:
                async with session.get(f"http://{address}:{port}/status") as r:
                    raise AssertionError(f"still answering: {r.status}")
            except aiohttp.ClientConnectionError:
                pass


async def test_no_web_pages_with_minus_one() -> None:
    spec = LanSpec(printers=1, non_printers=0, silent=0, seed=21, subnet="127.0.21.16/28")
    async with EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0,
                                      web_port=-1, days_of_use=0)) as lan:
        assert lan.describe()["web_port"] is None
        assert lan.printers[0].web is None
