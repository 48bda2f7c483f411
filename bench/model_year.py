"""Report: 100 emulated devices x 365 days, read back per class as a backend would.

The fleet's identities (seed 3, the default spread of time zones, mix office-color 50,
office-mono 30, production 20) drive the model alone on a virtual clock: each local day
is applied at the end of its office hours and a snapshot (what a payload holds) is
taken the next local morning at 02:00. Per class it prints:

- impressions per working day (weekends and holidays left out): median and spread
  (10th-90th percentile) across devices, next to the class figure the profile states
  (pages per working day less the scanned share: the baseline, from the same files);
- colour share across devices (min, median, max) next to the class figure;
- days from a supply's low (or empty) reading to the snapshot showing it replaced
  (median, max), and device-days spent with a blocking supply empty;
- HFSI replacements, power-on counts (median, max), jams per 10,000 impressions,
  impressions not printed because a blocking supply was empty.

Run time is printed next to the same-run figure of a bare loop of run_day calls (no
snapshots), so the cost of reading back is visible. The last line is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time as _time
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.clock import VirtualClock
from emulator.fleet.identities import fleet_identities
from emulator.fleet.spec import FleetSpec
from emulator.model import EmulatedDevice, load_profile

DEVICES = 100
DAYS = 365
SEED = 3
MIX = (("office-color", 50), ("office-mono", 30), ("production", 20))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] if s else 0.0


def run_device(ident: Any, spec: FleetSpec, *, read_back: bool) -> dict[str, Any]:
    prof = load_profile(ident.profile)
    tz = ZoneInfo(ident.time_zone)
    end_hour = prof.usage.office_end_hour
    first = datetime.combine(spec.start, time(0), tz) + timedelta(hours=end_hour)
    clock = VirtualClock(first.astimezone(UTC) - timedelta(days=1))
    dev = EmulatedDevice(prof, serial=ident.serial, clock=clock, rng_seed=ident.model_seed,
                         state_dir=None, mac=ident.mac, fsync=False,
                         time_zone=ident.time_zone)
    jams = working = empty_days = workday_imps = 0
    low_since: dict[int, int] = {}
    low_to_replaced: list[int] = []
    blocking = [i for i, s in enumerate(prof.supplies) if s.stops_marking]
    prev_serial: list[str] = []
    for k in range(DAYS):
        day = spec.start + timedelta(days=k)
        end = datetime.combine(day, time(0), tz) + timedelta(hours=end_hour)
        clock.advance_to(end.astimezone(UTC))
        result = dev.run_day(day)
        jams += result.jams
        if dev.calendar.is_working_day(day.toordinal()):
            working += 1
            workday_imps += result.impressions
        if not read_back:
            continue
        clock.advance_to(datetime.combine(day + timedelta(days=1), time(2), tz)
                         .astimezone(UTC))
        snap = dev.snapshot()
        serials = [s.serial for s in snap.supplies]
        for i, s in enumerate(snap.supplies):
            if prev_serial and serials[i] != prev_serial[i] and i in low_since:
                low_to_replaced.append(k - low_since.pop(i))
            if s.status != "ok" and i not in low_since:
                low_since[i] = k
        empty_days += any(snap.supplies[i].status in ("empty", "full") for i in blocking)
        prev_serial = serials
    snap = dev.snapshot()
    c = snap.counters
    return {
        "profile": ident.profile, "impressions": c.total_impressions,
        "color": c.color_impressions, "working_days": working, "jams": jams,
        "workday_impressions": workday_imps,
        "hfsi_replacements": sum(h.replacements for h in snap.hfsi),
        "power_on": int(dict((p.name, p.value) for p in snap.properties)["power-on-count"]),
        "low_to_replaced": low_to_replaced, "empty_days": empty_days,
        "unprinted": dev.pages_unprinted,
    }


def main() -> None:
    spec = FleetSpec(devices=DEVICES, days=DAYS, seed=SEED, mix=MIX)
    idents = fleet_identities(spec)
    t0 = _time.perf_counter()
    rows = [run_device(i, spec, read_back=True) for i in idents]
    read_s = _time.perf_counter() - t0
    t0 = _time.perf_counter()
    for i in idents:
        run_device(i, spec, read_back=False)
    bare_s = _time.perf_counter() - t0
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["profile"]].append(r)
    out: dict[str, Any] = {}
    print(f"model year: {DEVICES} devices x {DAYS} days, seed {SEED}, mix "
          f"{', '.join(f'{n}:{w}' for n, w in MIX)}; a snapshot every local morning")
    header = (f"{'class':13} {'n':>3} {'imps/workday p10 med p90':>26} {'class':>6} "
              f"{'colour min med max':>19} {'class':>5} {'low->repl med max':>17} "
              f"{'empty d/dev':>11} {'HFSI repl':>9} {'power-on med max':>16} "
              f"{'jams/10k':>8} {'unprinted %':>11}")
    print(header)
    for name, group in sorted(by.items()):
        prof = load_profile(name)
        ppw = [r["workday_impressions"] / max(1, r["working_days"]) for r in group]
        share = [r["color"] / max(1, r["impressions"]) for r in group]
        lows = [d for r in group for d in r["low_to_replaced"]]
        power = [r["power_on"] for r in group]
        imps = sum(r["impressions"] for r in group)
        jams10k = 10_000 * sum(r["jams"] for r in group) / max(1, imps)
        unprinted = 100 * sum(r["unprinted"] for r in group) / max(1, imps + sum(
            r["unprinted"] for r in group))
        class_imps = prof.usage.pages_per_day * (1 - prof.usage.job_mix[3])
        empty = statistics.mean(r["empty_days"] for r in group)
        hfsi = sum(r["hfsi_replacements"] for r in group)
        print(f"{name:13} {len(group):>3} {pct(ppw, .1):>8,.0f} {statistics.median(ppw):>8,.0f}"
              f" {pct(ppw, .9):>8,.0f} {class_imps:>6,.0f} {min(share):>6.2f}"
              f" {statistics.median(share):>5.2f} {max(share):>5.2f} "
              f"{prof.usage.color_share:>5.2f} {statistics.median(lows) if lows else 0:>8.0f}"
              f" {max(lows) if lows else 0:>8} {empty:>11.1f} {hfsi:>9} "
              f"{statistics.median(power):>8.0f} {max(power):>7} {jams10k:>8.2f}"
              f" {unprinted:>11.2f}")
        key = name.replace("-", "_")
        out.update({
            f"{key}_imps_per_workday_median": round(statistics.median(ppw)),
            f"{key}_imps_per_workday_p10": round(pct(ppw, .1)),
            f"{key}_imps_per_workday_p90": round(pct(ppw, .9)),
            f"{key}_class_imps_per_workday": round(class_imps),
            f"{key}_color_share_min": round(min(share), 3),
            f"{key}_color_share_max": round(max(share), 3),
            f"{key}_days_low_to_replaced_median": statistics.median(lows) if lows else 0,
            f"{key}_days_low_to_replaced_max": max(lows) if lows else 0,
            f"{key}_empty_blocking_days_per_device": round(empty, 1),
            f"{key}_hfsi_replacements": hfsi,
            f"{key}_power_on_count_median": statistics.median(power),
            f"{key}_power_on_count_max": max(power),
            f"{key}_jams_per_10k_impressions": round(jams10k, 2),
            f"{key}_unprinted_pct": round(unprinted, 2),
        })
    device_days = DEVICES * DAYS
    print(f"run time: {read_s:.1f} s with a snapshot a day ({device_days / read_s:,.0f} "
          f"device-days/s); baseline run_day alone {bare_s:.1f} s "
          f"({device_days / bare_s:,.0f} device-days/s); ratio {read_s / bare_s:.2f}")
    out.update({"device_days": device_days, "run_s": round(read_s, 2),
                "baseline_run_day_only_s": round(bare_s, 2)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
