"""Peers for the manager's tests: snmpsim serving the vendor recordings in snmprec/.

snmpsim is a real SNMP agent (in the test extra). Each ``snmprec/<vendor>.snmprec`` is
served under the community ``<vendor>``. snmpsim refuses to run as root and drops to
nobody, so the data is copied to a directory nobody can read, and the modules it
imports lazily after the drop are imported before it (as bench/snmp_bench.py does).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SNMPREC = Path(__file__).with_name("snmprec")
VENDORS = tuple(sorted(p.stem for p in SNMPREC.glob("*.snmprec")))
_RESPONDER = ("import sys, dbm, dbm.dumb, encodings.latin_1, encodings.ascii, "
              "encodings.utf_8, encodings.hex_codec\n"
              "from snmpsim.commands.responder import main\n"
              "sys.argv[0] = 'snmpsim-command-responder'\n"
              "sys.exit(main())")


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    out = subprocess.run(["snmpget", "-v2c", "-c", VENDORS[0], "-t", "0.3", "-r", "0",
                          f"127.0.0.1:{port}", "1.3.6.1.2.1.1.1.0"], capture_output=True,
                         timeout=10)
    return out.returncode == 0


@pytest.fixture(scope="module")
def snmpsim_port() -> Iterator[int]:
    """udp port on 127.0.0.1 where snmpsim serves every vendor recording."""
    if shutil.which("snmpget") is None:
        pytest.fail("snmpget (Debian package 'snmp') is needed: run `make debs`")
    with tempfile.TemporaryDirectory(prefix="dd-snmpsim-") as tmp:
        data, cache = Path(tmp) / "data", Path(tmp) / "cache"
        data.mkdir()
        cache.mkdir()
        for f in SNMPREC.glob("*.snmprec"):
            shutil.copy(f, data / f.name)
        privileges: list[str] = []
        if os.geteuid() == 0:
            privileges = ["--process-user", "nobody", "--process-group", "nogroup"]
            for path in (Path(tmp), data, *data.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
            cache.chmod(0o777)
        port = free_udp_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", _RESPONDER, "--data-dir", str(data),
             "--agent-udpv4-endpoint", f"127.0.0.1:{port}", "--cache-dir", str(cache),
             "--logging-method", "null", *privileges],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not _answers(port):
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"snmpsim-command-responder exited: {err[-500:]}")
                if time.monotonic() > deadline:
                    pytest.fail("snmpsim did not answer within 60 s")
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
