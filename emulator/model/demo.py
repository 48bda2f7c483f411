"""A text demo of the model: one device per shipped profile, a few days of use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from emulator.clock import DEFAULT_EPOCH, VirtualClock
from emulator.model.device import EmulatedDevice
from emulator.model.profile import available_profiles, load_profile


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows)
               for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(row, widths, numeric, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), rule, *(fmt(r) for r in cells[1:])])


def model_demo(days: int = 7, seed: int = 1) -> str:
    """Run ``days`` days on one device per profile; return text tables per device."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    clock = VirtualClock(DEFAULT_EPOCH)
    first = DEFAULT_EPOCH.date()
    out: list[str] = []
    for n, name in enumerate(available_profiles()):
        profile = load_profile(name)
        dev = EmulatedDevice(profile, serial=f"DEMO{n + 1:04d}", clock=clock,
                             rng_seed=seed, state_dir=None)
        rows = []
        for k in range(days):
            day: date = first + timedelta(days=k)
            res = dev.run_day(day)
            c = dev.counters()
            rows.append([day.isoformat(), day.strftime("%a"), res.pages, res.impressions,
                         res.sheets, c.black_impressions, c.color_impressions,
                         c.total_impressions, c.total_large_impressions, res.jams,
                         res.faults])
        snap = dev.snapshot()
        ident = snap.identity
        out.append(f"== {ident.manufacturer} {ident.model} (profile {name}, serial "
                   f"{ident.serial}, power {snap.power.value})")
        out.append(table(["day", "", "pages", "imps", "sheets", "black", "color", "total",
                          "large", "jams", "faults"], rows))
        out.append("")
        out.append(table(
            ["#", "supply", "type", "level", "capacity", "unit", "status"],
            [[s.index, s.name, s.type, s.level, s.capacity, s.unit, s.status]
             for s in snap.supplies]))
        out.append("")
        out.append(table(["hfsi", "name", "count", "life", "rule"],
                         [[h.id, h.name, h.count, h.life, h.rule] for h in snap.hfsi]))
        if snap.faults:
            out.append("")
            out.append(table(["fault", "at (UTC)", "impressions", "description"],
                             [[f.code, f"{f.at:%Y-%m-%d %H:%M}", f.impressions, f.description]
                              for f in snap.faults[:10]]))
        out.append("")
    return "\n".join(out)
