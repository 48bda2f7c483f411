"""The agent's import time and idle RSS, beside a bare ``import aiohttp, cryptography``.

Each figure is the median of several fresh interpreters, the baseline measured in the
same run, alternating with the agent runs so machine noise hits both alike.
Goal (issue 4): the agent adds at most 5 MiB and 50 ms over the baseline.

The agent run imports ``device_direct.agent``, builds an ``Agent`` for a small static
``DeviceModel`` (the agent's own cost, not an emulator's), starts it on the system clock
and lets it park until its next daily sync; then reads VmRSS.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = 9

BASELINE = r"""
import time, asyncio
t0 = time.perf_counter()
import aiohttp, cryptography
t1 = time.perf_counter()
async def idle():
    await asyncio.sleep(0.2)
asyncio.run(idle())
rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
print((t1 - t0) * 1000, rss)
"""

AGENT = r"""
import time, asyncio, sys
t0 = time.perf_counter()
import aiohttp, cryptography
import device_direct.agent
t1 = time.perf_counter()
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
print((t1 - t0) * 1000, rss)
"""


def _run(code: str, *args: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "agent.toml"
        cfg.write_text(
            '[server]\nurl = "https://dd.example.com"\n'
            f'[device]\ndata_dir = "{tmp}/data"\ntime_zone = "Europe/Berlin"\n'
        )
        base_ms, base_kib, agent_ms, agent_kib = [], [], [], []
        _run(BASELINE)  # warm the OS file cache once for both
        _run(AGENT, str(cfg))
        for _ in range(RUNS):
            ms, kib = _run(BASELINE)
            base_ms.append(ms)
            base_kib.append(kib)
            ms, kib = _run(AGENT, str(cfg))
            agent_ms.append(ms)
            agent_kib.append(kib)
    b_ms, a_ms = statistics.median(base_ms), statistics.median(agent_ms)
    b_kib, a_kib = statistics.median(base_kib), statistics.median(agent_kib)
    add_ms, add_mib = a_ms - b_ms, (a_kib - b_kib) / 1024
    print(f"{'':28}{'baseline':>12}{'agent':>12}{'added':>12}{'goal':>10}")
    print(f"{'import time (ms, median)':28}{b_ms:12.1f}{a_ms:12.1f}{add_ms:12.1f}{'<= 50':>10}")
    print(f"{'idle RSS (MiB, median)':28}{b_kib/1024:12.1f}{a_kib/1024:12.1f}{add_mib:12.2f}"
          f"{'<= 5':>10}")
    print(f"runs: {RUNS} each, interleaved; baseline = import aiohttp, cryptography + idle loop")
    print(json.dumps({
        "baseline_import_ms": round(b_ms, 1), "agent_import_ms": round(a_ms, 1),
        "added_import_ms": round(add_ms, 1), "baseline_rss_mib": round(b_kib / 1024, 2),
        "agent_rss_mib": round(a_kib / 1024, 2), "added_rss_mib": round(add_mib, 2),
        "goal_added_ms": 50, "goal_added_mib": 5,
    }))


if __name__ == "__main__":
    main()
