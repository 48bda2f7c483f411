"""Start time and memory of a 50-printer simulated LAN with and without the web pages.

Each variant runs in a fresh process (``--one``), three times, alternating; prints the
medians, the ratio to the baseline (no web pages) and, last, one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _one(web_port: int, printers: int) -> dict[str, float]:
    from emulator.lan import EmulatedLan, LanOptions, LanSpec

    spec = LanSpec(printers=printers, non_printers=0, silent=0, seed=1,
                   subnet="127.0.121.0/24")
    before = _rss_kib()
    t0 = time.perf_counter()
    lan = EmulatedLan(LanOptions(spec, snmp_port=0, jetdirect_port=0, web_port=web_port,
                                 days_of_use=0))
    await lan.start()
    elapsed = time.perf_counter() - t0
    rss = _rss_kib() - before
    await lan.stop()
    return {"start_s": elapsed, "rss_mib": rss / 1024}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(asyncio.run(_one(int(sys.argv[2]), int(sys.argv[3])))))
        return
    printers = 50
    runs: dict[str, list[dict[str, float]]] = {"no_web": [], "web": []}
    for _ in range(3):
        for name, port in (("no_web", -1), ("web", 0)):
            out = subprocess.run([sys.executable, __file__, "--one", str(port), str(printers)],
                                 check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.splitlines()[-1]))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("start_s", "rss_mib")}
           for name, rs in runs.items()}
    for name in ("no_web", "web"):
        print(f"{name:7s} {printers} printers: start {med[name]['start_s']:.2f} s, "
              f"memory +{med[name]['rss_mib']:.1f} MiB (median of 3)")
    ratio = med["web"]["start_s"] / med["no_web"]["start_s"]
    print(f"web/no_web start ratio {ratio:.2f}; web pages cost "
          f"{(med['web']['rss_mib'] - med['no_web']['rss_mib']) * 1024 / printers:.0f} KiB "
          "per printer")
    print(json.dumps({"printers": printers,
                      "start_no_web_s": round(med["no_web"]["start_s"], 3),
                      "start_web_s": round(med["web"]["start_s"], 3),
                      "rss_no_web_mib": round(med["no_web"]["rss_mib"], 1),
                      "rss_web_mib": round(med["web"]["rss_mib"], 1),
                      "start_ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
