"""The chaos scenario: 200 devices x 14 days, 1,000+ mixed faults, 0 lost, 0 twice.

Run through the command line a user would type, so the printed counts are checked too.
About 45 s on two cores (the outbox fsyncs: on a RAM disk when there is one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_chaos_fleet_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    out = subprocess.run(
        [sys.executable, "-m", "emulator", "fleet", "--scenario",
         str(ROOT / "fixtures" / "scenarios" / "chaos-fleet.toml"), "--no-progress",
         "--report", str(report)],  # work dir: the CLI's own (a RAM disk when there is one)
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "payloads lost    0" in out.stdout
    assert "stored twice     0" in out.stdout
    data = json.loads(report.read_text())
    assert data["ok"] and data["fleet"]["devices"] == 200 and data["fleet"]["days"] == 14
    totals = data["totals"]
    assert totals["faults_injected"] >= 1000
    kinds = data["scenario"]["injected"]
    for kind in ("kill", "power_loss", "net", "server_5xx"):
        assert kinds.get(kind, 0) >= 40, kinds
    assert totals["payloads_lost"] == 0 and totals["stored_twice"] == 0
    assert totals["uploads_stored"] == totals["payloads_queued"] >= 2000
    assert totals["uploads_duplicate"] > 0  # power cut after the answer: re-sent
    assert totals["reboots"] >= 500
