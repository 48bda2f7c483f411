"""snmpsim serving the vendor recordings in snmprec/, for the manager's tests (conftest.py).

snmpsim is a real SNMP agent (in the test extra). Each ``snmprec/<vendor>.snmprec`` is
served under the community ``<vendor>``. snmpsim refuses to run as root and drops to
nobody, so the data is copied to a directory nobody can read, and the modules it
imports lazily after the drop are imported before it (as bench/snmp_bench.py does).

The port: snmpsim binds the address it is given and, when the port is taken, keeps
running without answering (pysnmp opens the socket in a task whose error nobody reads),
so a port chosen and released first could be lost to another process unseen. Instead
:func:`running_snmpsim` binds a UDP socket to port 0 itself and hands it to snmpsim (``pass_fds``):
the small start-up script below makes snmpsim's endpoint serve on that socket
(``open_server_mode(sock=...)``, which pysnmp has for this) instead of binding one. The
port is held from the first moment, so no other process can take it. It then
waits until an SNMP GET (net-snmp ``snmpget``) of a community and value made up for
this run is answered: an answer from this snmpsim and no other agent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SNMPREC = Path(__file__).with_name("snmprec")
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
# argv[1]: the descriptor of the bound UDP socket snmpsim is to serve on.
_RESPONDER = ("import sys, socket, dbm, dbm.dumb, encodings.latin_1, encodings.ascii, "
              "encodings.utf_8, encodings.hex_codec\n"
              "from pysnmp.carrier.asyncio.dgram import udp\n"
              "from snmpsim import endpoints\n"
              "from snmpsim.commands.responder import main\n"
              "held = socket.socket(fileno=int(sys.argv.pop(1)))\n"
              "if not hasattr(endpoints.IPv4TransportEndpoints, '_addEndpoint'):\n"
              "    sys.exit('this snmpsim has no IPv4TransportEndpoints._addEndpoint to serve '\n"
              "             'on a given socket (tests/device_direct/manager/snmpsim_peer.py)')\n"
              "def serve_on_held(self, addr):\n"
              "    return udp.UdpTransport().open_server_mode(sock=held), addr\n"
              "endpoints.IPv4TransportEndpoints._addEndpoint = serve_on_held\n"
              "sys.argv[0] = 'snmpsim-command-responder'\n"
              "sys.exit(main())")


@dataclass(frozen=True, slots=True)
class Snmpsim:
    """A running snmpsim: its port on 127.0.0.1, and a community whose sysDescr is a
    value only this run's agent serves."""

    port: int
    probe_community: str
    probe_value: str


def sys_descr(port: int, community: str) -> str | None:
    """sysDescr.0 read by net-snmp's ``snmpget`` (0.3 s, no retry); None without answer."""
    out = subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "0.3", "-r", "0",
                          "-Oqv", f"127.0.0.1:{port}", SYS_DESCR], capture_output=True,
                         text=True, timeout=10)
    return out.stdout.strip().strip('"') if out.returncode == 0 else None


@contextmanager
def running_snmpsim() -> Iterator[Snmpsim]:
    """snmpsim serving every vendor recording on a UDP port of 127.0.0.1 it never loses,
    until the block ends. A missing ``snmpget`` or an agent that does not start fails the
    test with the reason."""
    if shutil.which("snmpget") is None:
        pytest.fail("snmpget (Debian package 'snmp') is needed: run `make debs`")
    community, value = f"dd-probe-{secrets.token_hex(6)}", secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="dd-snmpsim-") as tmp:
        data, cache = Path(tmp) / "data", Path(tmp) / "cache"
        data.mkdir()
        cache.mkdir()
        for f in SNMPREC.glob("*.snmprec"):
            shutil.copy(f, data / f.name)
        (data / f"{community}.snmprec").write_text(f"{SYS_DESCR}|4|{value}\n",
                                                     encoding="ascii")
        privileges: list[str] = []
        if os.geteuid() == 0:
            privileges = ["--process-user", "nobody", "--process-group", "nogroup"]
            for path in (Path(tmp), data, *data.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
            cache.chmod(0o777)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
            held.bind(("127.0.0.1", 0))
            port = int(held.getsockname()[1])
            proc = subprocess.Popen(
                [sys.executable, "-c", _RESPONDER, str(held.fileno()), "--data-dir",
                 str(data), "--agent-udpv4-endpoint", f"127.0.0.1:{port}", "--cache-dir",
                 str(cache), "--logging-method", "null", *privileges],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(held.fileno(),))
        # snmpsim has its own copy of the socket now: the port is held while it runs.
        try:
            deadline = time.monotonic() + 60
            while sys_descr(port, community) != value:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"snmpsim-command-responder exited: {err[-500:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"snmpsim did not answer on 127.0.0.1:{port} within 60 s")
            yield Snmpsim(port, community, value)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

