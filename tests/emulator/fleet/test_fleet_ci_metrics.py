"""CI matrix shards from the environment and merge-reports; live metrics and --stats-csv."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from emulator.fleet.ci_matrix import merge_files, shard_from_env
from emulator.fleet.report import DeviceOutcome, FleetReport
from emulator.fleet.spec import FleetSpecError, Shard

ROOT = Path(__file__).resolve().parents[3]


def _fleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "emulator", "fleet", "--no-progress", *args]


def test_shard_from_the_usual_ci_variables() -> None:
    assert shard_from_env({"JOB_COMPLETION_INDEX": "0"}, 3) == Shard(1, 3)
    assert shard_from_env({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}, None) == Shard(2, 2)
    for env, count, words in (({}, None, "none of JOB_COMPLETION_INDEX"),
                              ({"JOB_COMPLETION_INDEX": "1"}, None, "--shard-count"),
                              ({"JOB_COMPLETION_INDEX": "3"}, 3, "index must be 1..3"),
                              ({"CI_NODE_INDEX": "x", "CI_NODE_TOTAL": "2"}, None,
                               "not whole numbers")):
        with pytest.raises(FleetSpecError, match=words):
            shard_from_env(env, count)


def test_shards_run_as_ci_jobs_merge_into_one_report(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items()
            if k not in ("JOB_COMPLETION_INDEX", "CI_NODE_INDEX", "CI_NODE_TOTAL")}
    jobs = [({"JOB_COMPLETION_INDEX": "0"}, ["--shard-count", "2"], "seed-1-a"),
            ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}, [], "seed-1-b"),
            ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}, ["--seed", "2"], "seed-2-b")]
    procs = [subprocess.Popen(_fleet("--devices", "6", "--days", "2", "--shard", *extra,
                                     "--report", str(tmp_path / f"{name}.json")),
                              cwd=ROOT, env={**base, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for env, extra, name in jobs]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, out + err[-2000:]
    merged = tmp_path / "merged.json"
    out = subprocess.run(_fleet("merge-reports", str(tmp_path / "seed-1-a.json"),
                                str(tmp_path / "seed-1-b.json"), "--report", str(merged)),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "devices          6 of 6 (shards 1/2, 2/2)" in out.stdout
    data = json.loads(merged.read_text())
    assert data["ok"] and [d["index"] for d in data["devices"]] == list(range(6))
    assert sum(data["server_uploads"].values()) == 12
    out = subprocess.run(_fleet("merge-reports", str(tmp_path / "seed-1-a.json"),
                                str(tmp_path / "seed-2-b.json")),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "seed-2-b.json is of another run" in out.stderr and "seed 2 != 1" in out.stderr
    # one shard alone merges, but the whole fleet is not there: exit 1
    out = subprocess.run(_fleet("merge-reports", str(tmp_path / "seed-1-a.json")),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "[FAIL] every device of the fleet ran once" in out.stdout


@pytest.mark.parametrize(("text", "words"), [
    ("[1, 2]", "not a fleet report: expected a JSON object, got list"),
    ("null", "not a fleet report: expected a JSON object, got NoneType"),
    ("{", "not a fleet report: Expecting property name"),
])
def test_merge_reports_refuses_a_file_that_is_not_a_report(tmp_path: Path, text: str,
                                                           words: str) -> None:
    bad = tmp_path / "part.json"
    bad.write_text(text)
    out = subprocess.run(_fleet("merge-reports", str(bad)), cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"merge-reports: {bad}: {words}" in out.stderr


def test_merge_reports_names_both_files_of_a_shard_given_twice(tmp_path: Path) -> None:
    # docs/fleet.md: a shard given twice is refused, naming the file (it named only
    # the shards, "1/2, 2/2, 2/2", leaving the user to find which files they were).
    def part(i: int) -> FleetReport:
        outcome = DeviceOutcome(index=i - 1, serial=f"S{i}", profile="office-mono",
                                time_zone="UTC", device_id=None, payloads_built=1,
                                uploads_stored=1, uploads_duplicate=0, uploads_rejected=0,
                                send_failures=0, registrations=1, bytes_sent=1, actions_run=0,
                                action_polls=1, firmware_checks=0, faults=0, jams=0,
                                queued=0, finished=True)
        return FleetReport(devices=2, days=1, seed=7, mix="office-mono:1",
                           shards=(f"{i}/2",), outcomes=(outcome,), wall_s=1.0)
    paths = [tmp_path / "part-1.json", tmp_path / "part-2.json", tmp_path / "copy.json"]
    for path, i in zip(paths, (1, 2, 2), strict=True):
        path.write_text(json.dumps(part(i).to_json()))
    assert merge_files(paths[:2]).shards == ("1/2", "2/2")
    with pytest.raises(FleetSpecError,
                       match=f"{re.escape(str(paths[2]))} and {re.escape(str(paths[1]))} "
                             "both hold shard 2/2"):
        merge_files(paths)


def test_merge_reports_names_a_run_option_it_would_ignore(tmp_path: Path) -> None:
    out = subprocess.run(_fleet("merge-reports", str(tmp_path / "part.json"), "--devices", "5",
                                "--days", "2"), cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "--days, --devices: merge-reports runs nothing" in out.stderr


def _metrics_url(run: subprocess.Popen[str]) -> str:
    """The endpoint a fleet started with ``--metrics-port 0`` names on stderr
    (``metrics: http://HOST:PORT/metrics``), before the run starts."""
    assert run.stderr is not None
    before: list[str] = []
    while line := run.stderr.readline():  # ends at EOF: the fleet exited first
        if match := re.fullmatch(r"metrics: (http://127\.0\.0\.1:(\d+)/metrics)\n", line):
            assert int(match[2]) > 0, line
            return match[1]
        before.append(line)
    raise AssertionError("no 'metrics: URL' line on stderr:\n" + "".join(before)[-2000:])


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = subprocess.run(_fleet("--devices", "1", "--days", "1", "--metrics-port",
                                    str(port)), cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in out.stderr


def test_metrics_scraped_during_a_run_and_stats_csv(tmp_path: Path) -> None:
    stats = tmp_path / "stats.csv"
    # Port 0: the fleet binds a free port itself and says which, so no other process
    # can take the port between the test choosing it and the fleet binding it.
    run = subprocess.Popen(
        _fleet("--devices", "20", "--days", "6", "--metrics-port", "0",
               "--stats-csv", str(stats), "--actions", "get_status:0.2"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    families: set[str] = set()
    try:
        url = _metrics_url(run)
        deadline = time.monotonic() + 90
        while run.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.05)
                continue
            for family in text_string_to_metric_families(text):
                families.add(family.name)
                for sample in family.samples:
                    key = sample.name + "".join(f",{k}={v}" for k, v in
                                                sorted(sample.labels.items()))
                    seen[key] = sample.value
            if 0 < seen.get("ddfleet_device_days_delivered_total", 0) < 120:
                break  # scraped in the middle of the run
            time.sleep(0.05)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err[-2000:]
    assert 0 < seen.get("ddfleet_device_days_delivered_total", 0) < 120, seen
    assert {"ddfleet_device_days_delivered", "ddfleet_uploads", "ddfleet_retries",
            "ddfleet_request_errors", "ddfleet_actions", "ddfleet_request_seconds",
            "ddfleet_devices", "ddfleet_virtual_time_seconds"} <= families
    assert seen["ddfleet_device_days"] == 120
    assert seen["ddfleet_request_seconds_count"] > 0
    assert seen["ddfleet_uploads_total,outcome=stored"] > 0
    assert seen["ddfleet_virtual_time_seconds"] > 1.7e9
    assert sum(v for k, v in seen.items() if k.startswith("ddfleet_devices,")) == 20
    rows = list(csv.DictReader(stats.open()))
    assert rows and rows[-1]["device_days_delivered"] == "120"
    assert int(rows[-1]["actions_issued"]) == int(rows[-1]["actions_run"]) > 0
    delivered = [int(r["device_days_delivered"]) for r in rows]
    assert delivered == sorted(delivered)


async def test_live_snapshots_of_a_big_shard_keep_to_a_small_share_of_its_time() -> None:
    """A snapshot is a pass over every agent: every 0.5 s while that is cheap, and spaced
    so that the passes take at most 2% of the time once a shard is big enough for one
    pass to cost more than 10 ms (a shard of 50,000 agents: about 0.1 s a pass)."""
    from datetime import UTC, datetime
    from typing import Any

    from emulator.fleet import runner

    class Wall:  # a fake clock: time moves by the ticker's sleeps and the passes' cost
        now = 0.0

        def monotonic(self) -> float:
            return self.now

        async def sleep(self, seconds: float) -> None:
            self.now += seconds
            if self.now > 60:
                raise TimeoutError  # the end of the test's minute

    wall = Wall()

    class BigShard:
        agents: tuple[object, ...] = ()
        spec = type("Spec", (), {"days": 1})()
        clock = type("Clock", (), {"now": staticmethod(lambda: datetime.now(UTC))})()
        cost = 0.0

        def days_delivered(self) -> int:
            return 0

        def snapshot(self) -> dict[str, Any]:
            wall.now += self.cost
            return {}

    at: list[float] = []
    for cost, every in ((0.001, 0.5), (0.1, 5.0)):
        shard, wall.now = BigShard(), 0.0
        shard.cost = cost
        at.clear()
        with pytest.raises(TimeoutError):
            await runner._ticker(shard, None,  # type: ignore[arg-type]
                                 lambda _: at.append(wall.now), wall)  # type: ignore[arg-type]
        gaps = [b - a for a, b in itertools.pairwise(at)]
        assert gaps and all(every - 0.25 <= g <= every + 0.25 + cost for g in gaps), (cost, gaps)
        assert sum(cost for _ in at) / wall.now <= max(runner.STATS_SHARE, cost / every)
