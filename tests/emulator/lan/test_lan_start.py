"""Starting the LAN fails clearly: the address that is taken, and at once when the
process cannot hold as many sockets as asked."""

from __future__ import annotations

import resource
import socket

import pytest

from emulator.lan import EmulatedLan, LanOptions, LanSpec
from emulator.lan.network import LanStartError, check_open_files, open_files_needed
from emulator.lan.plan import HostKind, plan_lan


async def test_a_taken_snmp_port_names_the_address_that_holds_it() -> None:
    # The first silent address is bound after the printers and the other hosts: the
    # failed start must close their sockets, or the retry (port 9100 was 0) fails on
    # the first printer and names an address nobody else holds.
    spec = LanSpec(printers=3, non_printers=1, silent=2, subnet="127.0.4.32/28")
    taken = plan_lan(spec).of(HostKind.SILENT)[0].address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((taken, 0))
        port = holder.getsockname()[1]
        lan = EmulatedLan(LanOptions(spec, snmp_port=port, jetdirect_port=0, days_of_use=0))
        with pytest.raises(LanStartError, match=f"udp/{taken}:{port}"):
            await lan.start()
        await lan.stop()
    for host in plan_lan(spec).hosts:  # every socket of the failed start is closed
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host.address, port))


def test_more_hosts_than_open_files_is_refused_before_binding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    options = LanOptions(LanSpec(printers=200, subnet="127.0.4.0/24"), web_port=0)
    assert open_files_needed(options) > 600  # a UDP socket, port 9100 and web each
    monkeypatch.setattr(resource, "getrlimit", lambda what: (512, 4096))
    with pytest.raises(LanStartError, match=r"200 printers.* may open 512 \(ulimit -n\)"):
        check_open_files(options)
    check_open_files(LanOptions(LanSpec(printers=100, subnet="127.0.4.0/24")))
