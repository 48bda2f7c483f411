"""The agent's import time and idle RSS, beside a bare ``import aiohttp, cryptography``.

Each figure is the median of several fresh interpreters, the baseline measured in the
same run, alternating with the agent runs so machine noise hits both alike.
Goal (issue 4): the agent adds at most 5 MiB and 50 ms over the baseline.

The agent run imports ``device_direct.agent``, builds an ``Agent`` for a small static
``DeviceModel`` (the agent's own cost, not an emulator's), starts it on the system clock
and lets it park until its next daily sync; then reads VmRSS. With ``--registered`` the
agent has a stored identity (key, certificate, device id), as a device has on every boot
after its first.

Bytecode: a device image ships compiled modules, so by default every interpreter (the
baseline's too) reads and writes its ``.pyc`` files in a private cache directory
(``PYTHONPYCACHEPREFIX``), filled by one warm-up run of each. ``--source`` keeps the
caller's environment instead: with ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__``
in the tree, every agent module is compiled from source at each start, while the
baseline's site-packages are compiled already, so the figure then includes compiling.

Firmware (issue 16): ``--firmware-mib N`` (default 256; 0 skips it) also runs one whole
signed A/B update of an N MiB image in a fresh agent process, against a reference
server in a process of its own: check, download over mutual TLS, verify, write to the
inactive bank (a device model that reads the image file in chunks, as a flash writer
does), trial boot, health check, commit. The baseline is the same process's RSS when
idle just before the update (registered, connected once); the figure is its peak RSS
during the update (``VmHWM``, reset at the start) less that. Goal: under 32 MiB for a
256 MiB image.

Usage: ``python bench/agent_footprint.py [--registered] [--source] [--runs N]
[--firmware-mib N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = 9

BASELINE = r"""
import time, asyncio
t0, c0 = time.perf_counter(), time.process_time()
import aiohttp, cryptography
t1, c1 = time.perf_counter(), time.process_time()
async def idle():
    await asyncio.sleep(0.2)
asyncio.run(idle())
rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
print((t1 - t0) * 1000, rss, (c1 - c0) * 1000)
"""

AGENT = r"""
import time, asyncio, sys
t0, c0 = time.perf_counter(), time.process_time()
import aiohttp, cryptography
import device_direct.agent
t1, c1 = time.perf_counter(), time.process_time()
from datetime import UTC, datetime
from pathlib import Path
from device_direct.agent import Agent
from device_direct.clock import SystemClock
from device_direct.config import load_config
from device_direct.model import (Counters, DeviceSnapshot, FirmwareBank, FirmwareState,
    Identity, NetworkInfo, PowerState)

class StaticModel:
    power = PowerState.READY
    def identity(self): return Identity("Acme", "Bench 1", "BENCH001", "B1", {"system": "1.0"})
    def network(self): return NetworkInfo("02:00:00:00:00:01", "10.0.0.2", "255.255.255.0")
    def counters(self): return Counters()
    def alerts(self): return ()
    def firmware(self): return FirmwareState("A", (FirmwareBank("A", "1.0"), FirmwareBank("B", "")))
    def engineering_log(self): return ""
    def snapshot(self):
        return DeviceSnapshot(datetime.now(UTC), self.power, self.identity(), self.network(),
            (), (), (), self.counters(), (), (), (), self.firmware())

cfg = Path(sys.argv[1])
agent = Agent(load_config(cfg), StaticModel(), clock=SystemClock())
async def idle():
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.2)   # parked until the next daily sync
    task.cancel()
asyncio.run(idle())
rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
print((t1 - t0) * 1000, rss, (c1 - c0) * 1000)
"""


ROOT = Path(__file__).resolve().parent.parent

# Stores an identity the way a registration does, with a throw-away CA (bench set-up:
# runs once, outside the measured interpreters).
REGISTER = r"""
import sys
from datetime import UTC, datetime, timedelta
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from device_direct.identity import IdentityStore

store = IdentityStore(sys.argv[1])
csr = x509.load_pem_x509_csr(store.create_csr("BENCH001").encode())
ca_key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
now = datetime.now(UTC)
def cert(subject, key, ca):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(name)
            .public_key(key).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
def pem(c):
    return c.public_bytes(Encoding.PEM).decode()
store.store_registration("bench-1", pem(cert(csr.subject, csr.public_key(), False)),
                         pem(cert(name, ca_key.public_key(), True)))
"""


FIRMWARE = r"""
import asyncio, gc, hashlib, sys, time
from datetime import UTC, datetime
from pathlib import Path
from device_direct.agent import Agent
from device_direct.clock import SystemClock
from device_direct.config import load_config
from device_direct.model import (Counters, DeviceSnapshot, FirmwareBank, FirmwareState,
    Identity, NetworkInfo, PowerState)

class FlashModel:
    power = PowerState.READY
    def __init__(self):
        self.fw = FirmwareState("A", (FirmwareBank("A", "1.0"), FirmwareBank("B", "")))
    def identity(self): return Identity("Acme", "Bench 1", "BENCH001", "B1", {"system": "1.0"})
    def network(self): return NetworkInfo("02:00:00:00:00:01", "10.0.0.2", "255.255.255.0")
    def counters(self): return Counters()
    def alerts(self): return ()
    def firmware(self): return self.fw
    def engineering_log(self): return ""
    def snapshot(self):
        return DeviceSnapshot(datetime.now(UTC), self.power, self.identity(), self.network(),
            (), (), (), self.counters(), (), (), (), self.firmware())
    async def write_inactive_bank(self, version, image):
        h = hashlib.sha256()
        with open(image, "rb") as fh:          # a flash writer: a block at a time
            while block := fh.read(1 << 20):
                h.update(block)
        banks = tuple(FirmwareBank(b.name, version, h.hexdigest()) if b.name != self.fw.active
                      else b for b in self.fw.banks)
        self.fw = FirmwareState(self.fw.active, banks)
    async def boot_bank(self, bank, *, trial):
        self.fw = FirmwareState(bank, self.fw.banks, trial)
    async def commit_bank(self):
        self.fw = FirmwareState(self.fw.active, self.fw.banks, False)
    async def rollback_bank(self):
        self.fw = FirmwareState(self.fw.inactive.name, self.fw.banks, False)

def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])

async def main():
    agent = Agent(load_config(Path(sys.argv[1])), FlashModel(), clock=SystemClock())
    await agent.register()
    gc.collect()
    idle = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")                          # VmHWM starts again from here
    t0 = time.perf_counter()
    transport = agent._new_transport()
    try:
        result = await agent.firmware.check(transport, install_now=True)
    finally:
        await transport.close()
    seconds = time.perf_counter() - t0
    assert result is not None and result.status == "succeeded", result
    print(idle, status("VmHWM"), seconds)

asyncio.run(main())
"""


def firmware_peak(env: dict[str, str], tmp: Path, mib: int) -> tuple[int, int, float]:
    """(idle KiB, peak KiB, seconds) of one update of a ``mib`` MiB image."""
    state, image = tmp / "server", tmp / "image.bin"
    with image.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    server_cli = [sys.executable, "-m", "emulator", "server", "--state-dir", str(state)]
    subprocess.run([*server_cli, "publish-firmware", "--model", "Bench 1", "--version", "2.0",
                    str(image)], check=True, cwd=ROOT, env=env, capture_output=True)
    image.unlink()
    key = subprocess.run([*server_cli, "make-key"], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout.split()[0]
    pem = subprocess.run([*server_cli, "export-firmware-key"], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen([*server_cli, "run", "--port", "0"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        cfg = tmp / "fw-agent.toml"
        cfg.write_text(
            f'[server]\nurl = "https://127.0.0.1:{info["port"]}/"\n'
            f'ca_bundle = "{info["ca_cert"]}"\nserver_name = "localhost"\n'
            f'registration_key = "{key}"\n'
            f'[device]\ndata_dir = "{tmp}/fw-data"\n'
            f'[services]\nfirmware_public_key = """{pem}\n"""\n')
        out = subprocess.run([sys.executable, "-c", FIRMWARE, str(cfg)], check=True, cwd=ROOT,
                             env=env, capture_output=True, text=True).stdout.split()
    finally:
        server.terminate()
        server.wait(30)
    return int(out[0]), int(out[1]), float(out[2])


def _run(code: str, env: dict[str, str], *args: str) -> tuple[float, int, float]:
    """One fresh interpreter: import wall ms, idle VmRSS KiB, import CPU ms."""
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registered", action="store_true",
                        help="the agent has a stored identity (the usual boot)")
    parser.add_argument("--source", action="store_true",
                        help="keep the environment as it is (no private bytecode cache)")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--compare-with", type=Path, metavar="TREE",
                        help="also time the agent of another checkout (e.g. a git worktree "
                             "of an earlier commit), interleaved with these runs")
    parser.add_argument("--firmware-mib", type=int, default=256,
                        help="image size for the firmware-update peak RSS (0: skip it)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if not opts.source:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        cfg = Path(tmp) / "agent.toml"
        cfg.write_text(
            '[server]\nurl = "https://dd.example.com"\n'
            f'[device]\ndata_dir = "{tmp}/data"\ntime_zone = "Europe/Berlin"\n'
        )
        if opts.registered:
            subprocess.run([sys.executable, "-c", REGISTER, f"{tmp}/data/identity"],
                           check=True, cwd=ROOT, env=env)
        base_ms, base_kib, agent_ms, agent_kib = [], [], [], []
        base_cpu, agent_cpu = [], []
        other_ms: list[float] = []
        other_cpu: list[float] = []
        other_env = dict(env, PYTHONPATH=str(opts.compare_with)) if opts.compare_with else None
        _run(BASELINE, env)  # warm the OS file cache (and the bytecode cache) for both
        _run(AGENT, env, str(cfg))
        if other_env is not None:
            _run(AGENT, other_env, str(cfg))
        for _ in range(opts.runs):
            ms, kib, cpu = _run(BASELINE, env)
            base_ms.append(ms)
            base_kib.append(kib)
            base_cpu.append(cpu)
            ms, kib, cpu = _run(AGENT, env, str(cfg))
            agent_ms.append(ms)
            agent_kib.append(kib)
            agent_cpu.append(cpu)
            if other_env is not None:
                ms, _kib, cpu = _run(AGENT, other_env, str(cfg))
                other_ms.append(ms)
                other_cpu.append(cpu)
    b_ms, a_ms = statistics.median(base_ms), statistics.median(agent_ms)
    b_kib, a_kib = statistics.median(base_kib), statistics.median(agent_kib)
    add_ms, add_mib = a_ms - b_ms, (a_kib - b_kib) / 1024
    b_cpu, a_cpu = statistics.median(base_cpu), statistics.median(agent_cpu)
    add_cpu = a_cpu - b_cpu
    print(f"{'':28}{'baseline':>12}{'agent':>12}{'added':>12}{'goal':>10}")
    print(f"{'import time (ms, median)':28}{b_ms:12.1f}{a_ms:12.1f}{add_ms:12.1f}{'<= 50':>10}")
    print(f"{'import CPU time (ms, median)':28}{b_cpu:12.1f}{a_cpu:12.1f}{add_cpu:12.1f}"
          f"{'<= 50':>10}")
    print(f"{'idle RSS (MiB, median)':28}{b_kib/1024:12.1f}{a_kib/1024:12.1f}{add_mib:12.2f}"
          f"{'<= 5':>10}")
    if other_ms:
        o_ms, o_cpu = statistics.median(other_ms), statistics.median(other_cpu)
        print(f"{'earlier code: import ms':28}{b_ms:12.1f}{o_ms:12.1f}{o_ms - b_ms:12.1f}")
        print(f"{'earlier code: import CPU ms':28}{b_cpu:12.1f}{o_cpu:12.1f}{o_cpu - b_cpu:12.1f}")
        print(f"earlier code: {opts.compare_with}")
    print(f"runs: {opts.runs} each, interleaved; baseline = import aiohttp, cryptography + idle "
          f"loop; agent {'registered' if opts.registered else 'not registered'}; bytecode "
          f"{'as the environment says' if opts.source else 'cached (private prefix)'}")
    figures: dict[str, object] = {}
    if opts.firmware_mib > 0:
        with tempfile.TemporaryDirectory() as fw_tmp:
            idle_kib, peak_kib, seconds = firmware_peak(env, Path(fw_tmp), opts.firmware_mib)
            over = (peak_kib - idle_kib) / 1024
            print(f"{'firmware update RSS (MiB)':28}{idle_kib/1024:12.1f}{peak_kib/1024:12.1f}"
                  f"{over:12.2f}{'< 32':>10}")
            print(f"firmware: one {opts.firmware_mib} MiB signed A/B update in {seconds:.1f} s; "
                  "baseline = the same process idle just before it, figure = peak (VmHWM)")
            figures = {"firmware_image_mib": opts.firmware_mib,
                       "firmware_idle_rss_mib": round(idle_kib / 1024, 2),
                       "firmware_peak_rss_mib": round(peak_kib / 1024, 2),
                       "firmware_added_rss_mib": round(over, 2), "firmware_update_s":
                       round(seconds, 1), "goal_firmware_added_mib": 32}
    print(json.dumps({
        "baseline_import_ms": round(b_ms, 1), "agent_import_ms": round(a_ms, 1),
        "added_import_ms": round(add_ms, 1), "baseline_import_cpu_ms": round(b_cpu, 1),
        "agent_import_cpu_ms": round(a_cpu, 1), "added_import_cpu_ms": round(add_cpu, 1),
        "baseline_rss_mib": round(b_kib / 1024, 2),
        "agent_rss_mib": round(a_kib / 1024, 2), "added_rss_mib": round(add_mib, 2),
        **({"earlier_added_import_ms": round(statistics.median(other_ms) - b_ms, 1),
            "earlier_added_import_cpu_ms": round(statistics.median(other_cpu) - b_cpu, 1)}
           if other_ms else {}),
        "goal_added_ms": 50, "goal_added_mib": 5, "registered": opts.registered,
        "bytecode_cached": not opts.source, **figures,
    }))


if __name__ == "__main__":
    main()
