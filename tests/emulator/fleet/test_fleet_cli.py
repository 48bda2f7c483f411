"""The fleet command line: help, usage errors, a tiny embedded run, K processes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.fleet import cli as fleet_cli
from emulator.fleet.cli import main
from emulator.fleet.cli_common import WORK_PREFIX
from emulator.fleet.progress import ProgressBar, render
from emulator.fleet.scratch import owned

ROOT = Path(__file__).resolve().parents[3]


def test_help_reads_well() -> None:
    out = subprocess.run([sys.executable, "-m", "emulator.fleet", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for words in ("--devices N", "--days D", "--mix P:W,...", "--shard [i/K]", "--processes K",
                  "--cluster tcp://HOST:PORT", "merge-reports REPORT...", "--metrics-port P",
                  "--server URL", "--registration-key KEY", "--key-file FILE", "--report FILE",
                  "embedded reference server", "Exit codes"):
        assert words in out.stdout, words


@pytest.mark.parametrize(("mix", "words"), [
    ("office-color:lots", "weight of 'office-color' must be a whole number"),
    ("inkjet:3", "unknown profile 'inkjet'"),
    ("office-color", "is not PROFILE:WEIGHT"),
])
def test_bad_mix_is_a_usage_error(mix: str, words: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--devices", "2", "--days", "1", "--mix", mix])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--mix" in err and words in err


def test_server_options_without_server_are_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--devices", "2", "--days", "1", "--registration-key", "k",
                 "--work-dir", str(tmp_path / "w")])
    assert code == 2
    assert "--registration-key only make sense with --server" in capsys.readouterr().err


def test_too_few_keys_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    code = main(["--devices", "3", "--days", "1", "--server", "https://127.0.0.1:9/",
                 "--registration-key", "a", "--registration-key", "b"])
    assert code == 2
    assert "got 2 for a fleet of 3 devices" in capsys.readouterr().err


def test_tiny_embedded_run_prints_the_summary(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    code = main(["--devices", "3", "--days", "2", "--seed", "5", "--report", str(report),
                 "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fleet summary" in out
    assert "uploads stored   6" in out
    assert "device-days/s" in out
    assert "FAIL" not in out
    data = json.loads(report.read_text())
    assert data["ok"] is True
    assert data["totals"]["uploads_stored"] == 6
    assert [d["serial"] for d in data["devices"]] == sorted(d["serial"] for d in data["devices"])


@pytest.mark.parametrize("library", ["system", "bundled"])
def test_the_devices_tls_library_is_chosen_and_named_in_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], library: str) -> None:
    report = tmp_path / "report.json"
    code = main(["--devices", "2", "--days", "2", "--tls-library", library,
                 "--report", str(report), "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert code == 0, out
    tls = json.loads(report.read_text())["fleet"]["tls"]
    assert tls.startswith(f"{library} (OpenSSL ")
    assert f"TLS library      {tls}" in out
    if library == "system":
        assert ssl.OPENSSL_VERSION in tls


def test_used_work_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old").write_text("x")
    assert main(["--devices", "1", "--days", "1", "--work-dir", str(tmp_path)]) == 2
    assert "new or empty directory" in capsys.readouterr().err


def test_a_work_dir_that_cannot_be_made_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "work"
    assert main(["--devices", "1", "--days", "1", "--work-dir", str(bad)]) == 2
    assert f"--work-dir {bad}: cannot use it: Not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(("port", "words"), [
    ("70000", "70000 is not a port number (0-65535; 0: any free port)"),
    ("nine", "'nine' is not a port number"),
])
def test_a_metrics_port_out_of_range_is_a_usage_error(
        port: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--devices", "1", "--days", "1", "--metrics-port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--metrics-port" in err and words in err


def test_an_html_report_that_fails_to_write_loses_neither_summary_nor_json_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fleet_cli, "write_html_report", disk_full)
    report = tmp_path / "report.json"
    code = main(["--devices", "2", "--days", "1", "--report", str(report), "--html-report",
                 str(tmp_path / "page.html"), "--work-dir", str(tmp_path / "work")])
    captured = capsys.readouterr()
    assert code == 3
    assert "fleet summary" in captured.out
    assert json.loads(report.read_text())["ok"] is True
    assert "No space left on device" in captured.err


@pytest.mark.parametrize("option", ["--report", "--html-report"])
def test_an_output_with_no_directory_to_go_in_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    code = main(["--devices", "2", "--days", "1", option,
                 str(tmp_path / "no-such-dir" / "out"), "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{option} " in err and "no directory" in err
    assert not (tmp_path / "work").exists()  # refused before anything ran


def test_merge_reports_refuses_a_report_path_that_is_a_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["merge-reports", str(tmp_path / "a.json"), "--report", str(tmp_path)])
    assert code == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "words"), [
    (["--html-report", "page.html"], "--html-report: a scenario has no HTML page"),
    (["--actions", "get_status:0.5"], "--actions: the scenario file describes the fleet"),
    (["--ca", "ca.pem"], "--ca: the scenario file describes the fleet"),
])
def test_scenario_refuses_the_options_it_would_ignore(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str],
        words: str) -> None:
    code = main(["--scenario", str(ROOT / "fixtures/scenarios/server-outage.toml"),
                 "--work-dir", str(tmp_path / "work"), *option])
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_two_processes_merge_into_one_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "emulator.fleet", "--devices", "4", "--days", "2",
         "--processes", "2", "--report", str(report), "--work-dir", str(tmp_path / "w"),
         "--stats-csv", str(tmp_path / "stats.csv")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(report.read_text())
    assert data["fleet"]["shards"] == ["1/2", "2/2"]
    assert sorted(d["index"] for d in data["devices"]) == [0, 1, 2, 3]
    assert sum(data["server_uploads"].values()) == 8
    assert all(e["ok"] for e in data["expectations"])
    # the shards' live figures reach the parent's --stats-csv, summed
    last = (tmp_path / "stats.csv").read_text().splitlines()[-1].split(",")
    assert last[2:4] == ["8", "8"]  # device_days, device_days_delivered


def test_two_processes_issue_actions_through_the_parents_server(tmp_path: Path) -> None:
    """With --processes the parent owns the embedded server; the shards issue their
    actions through its admin API, and the merged report accounts for every one."""
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "emulator.fleet", "--devices", "4", "--days", "3",
         "--processes", "2", "--actions", "get_status:0.5,send_meters_now:0.5",
         "--report", str(report), "--work-dir", str(tmp_path / "w")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(report.read_text())
    assert data["fleet"]["actions"] == "get_status:0.5,send_meters_now:0.5"
    totals = data["totals"]
    assert totals["actions_issued"] > 0
    assert totals["actions_run"] == totals["actions_issued"]
    assert sum(data["server_uploads"].values()) == totals["payloads_built"] >= 12
    assert "every action issued was run or refused" in out.stdout


def test_progress_bar_only_when_asked() -> None:
    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> int:
            self.text += s
            return len(s)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    quiet, forced = Sink(), Sink()
    ProgressBar(quiet)(1, 2, None)  # type: ignore[arg-type]
    bar = ProgressBar(forced, enabled=True)  # type: ignore[arg-type]
    bar(1, 2, None)
    bar.close()
    assert quiet.text == ""
    assert forced.text == "\r" + render(1, 2, None) + "\n"
    assert render(1, 2, None).startswith("[" + "#" * 15 + "." * 15 + "] 1/2")


async def test_progress_counts_device_days_as_they_are_delivered(tmp_path: Path) -> None:
    """The bar moves with the uploads, not only when whole devices finish at the end."""
    from datetime import datetime

    from device_direct.clock import SystemClock
    from emulator.fleet.runner import run_fleet
    from emulator.fleet.spec import FleetSpec

    class FastWall(SystemClock):
        async def sleep(self, seconds: float) -> None:  # tick every 2 ms, not every 250
            await super().sleep(0.002)

    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int, now: datetime | None) -> None:
        seen.append((done, total))

    spec = FleetSpec(devices=6, days=4, seed=3)
    report = await run_fleet(spec, tmp_path, progress=progress, wall=FastWall())
    assert report.ok
    assert all(total == spec.device_days for _, total in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == spec.device_days
    assert len({d for d in done if 0 < d < spec.device_days}) >= 3


async def test_progress_reads_a_tally_the_agents_keep_not_a_pass_over_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each progress tick used to sum every agent's figure: 50,000 agents a shard four
    times a second. Now reading progress reads no agent; the tally the agents keep is
    never ahead of that sum, behind it only by devices still in their turn, and equal to
    it at the end."""
    from datetime import datetime

    from device_direct.clock import SystemClock
    from emulator.fleet.fleet_agent import FleetAgent
    from emulator.fleet.runner import Fleet, run_fleet
    from emulator.fleet.spec import FleetSpec

    class FastWall(SystemClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(0.002)

    reads = 0
    agent_figure = FleetAgent.days_delivered.fget  # type: ignore[attr-defined]

    def counted(agent: FleetAgent) -> int:
        nonlocal reads
        reads += 1
        return agent_figure(agent)  # type: ignore[no-any-return]

    monkeypatch.setattr(FleetAgent, "days_delivered", property(counted))
    fleets: list[Fleet] = []
    tally_reads: list[int] = []
    fleet_figure = Fleet.days_delivered

    def read_progress(self: Fleet) -> int:
        fleets[:] = [self]
        before = reads
        done = fleet_figure(self)
        tally_reads.append(reads - before)
        return done

    monkeypatch.setattr(Fleet, "days_delivered", read_progress)
    # (the tally, devices in their turn, the sum over the agents) at each tick; checked
    # after the run (an assertion in the ticker's task would end the task, not the test)
    seen: list[tuple[int, int, int]] = []

    def progress(done: int, total: int, now: datetime | None) -> None:
        agents = fleets[0].agents
        seen.append((done, sum(a.in_turn for a in agents),
                     sum(agent_figure(a) for a in agents)))

    spec = FleetSpec(devices=6, days=4, seed=3)
    report = await run_fleet(spec, tmp_path, progress=progress, wall=FastWall())
    assert report.ok and len(seen) > 5
    assert set(tally_reads) == {0}  # no agent read to tell the progress
    # An agent adds its deliveries at the end of its sync (after the action poll and the
    # firmware check): until then a device in its turn may be one day behind, no more.
    behind = [t for t in seen if not t[0] <= t[2] <= t[0] + t[1]]
    assert behind == [], behind
    assert seen[-1] == (spec.device_days, 0, spec.device_days)
    assert any(0 < done < spec.device_days for done, _, _ in seen)


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (function bodies too)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_fleet_cli_uses_scenario_cli_and_not_the_other_way_round() -> None:
    # Issue 17.14: the two imported each other (scenario_cli took the work-dir helper
    # from cli inside a function); the shared piece lives in cli_common now.
    fleet = ROOT / "emulator" / "fleet"
    assert "emulator.fleet.scenario_cli" in _imports(fleet / "cli.py")
    assert "emulator.fleet.cli" not in _imports(fleet / "scenario_cli.py")
    assert "emulator.fleet.cli_common" in _imports(fleet / "scenario_cli.py")
    assert not {"emulator.fleet.cli", "emulator.fleet.scenario_cli"} & _imports(
        fleet / "cli_common.py")


def test_no_two_fleet_modules_import_each_other() -> None:
    # Every import counts (function bodies and TYPE_CHECKING too), as for the server.
    from tests.emulator.test_import_cycles import _cycles, _graph

    paths = sorted((ROOT / "emulator" / "fleet").glob("*.py"))
    assert _cycles(_graph(paths)) == []


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


def _two_shards_at_work(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> list[int]:
    """The two shard processes of ``proc`` (a `--processes 2` run), once they are at work."""
    shards: list[int] = []
    deadline = time.monotonic() + 120
    while len(shards) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        shards = _children(proc.pid)
    assert len(shards) == 2, "the two shard processes did not start"
    time.sleep(1.0)  # the shards are building their devices or uploading by now
    return shards


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_to_the_parent_stops_its_shard_processes(tmp_path: Path) -> None:
    """`kill PID` (a cancelled CI job) must not leave the shards running on their own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.fleet", "--devices", "200", "--days", "30",
         "--processes", "2", "--no-progress", "--work-dir", str(tmp_path / "w")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shards = _two_shards_at_work(proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "stopped by SIGTERM" in err and "Traceback" not in err
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in shards):
            assert time.monotonic() < deadline, "shard processes outlived their parent"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_killed_parent_leaves_no_shard_running(tmp_path: Path) -> None:
    """SIGKILL (a CI runner's hard timeout, the OOM killer) cannot be passed on: the
    shards see that their parent is gone and stop by themselves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.fleet", "--devices", "200", "--days", "30",
         "--processes", "2", "--no-progress", "--work-dir", str(tmp_path / "w")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards: list[int] = []
    try:
        shards = _two_shards_at_work(proc)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while alive := [pid for pid in shards if _running(pid)]:
            assert time.monotonic() < deadline, (
                f"shards outlived their killed parent: {[_describe(pid) for pid in alive]}")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in shards:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_run_killed_outright_has_its_scratch_dir_swept_by_the_next_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run without --work-dir keeps its devices in a scratch directory (on the RAM disk)
    that it removes when it ends; SIGKILL leaves it, and the next run removes it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.fleet", "--devices", "50", "--days", "30",
         "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (left := [path for path, owner in owned(WORK_PREFIX) if owner.pid == proc.pid]):
            assert proc.poll() is None and time.monotonic() < deadline, "no scratch dir"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert all(path.is_dir() for path in left)
    assert main(["--devices", "1", "--days", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert not any(path.exists() for path in left), left


def _describe(pid: int) -> str:
    """What a process is (command line, state, what its stdin is), for a failure."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        stdin = os.readlink(f"/proc/{pid}/fd/0")
    except OSError as exc:
        return f"{pid}: {exc}"
    return f"{pid} state {state} stdin {stdin}: {cmdline[-160:]}"


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an orphan's zombie is init's to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_shard_stops_when_its_parent_is_gone(tmp_path: Path) -> None:
    """What a shard of --processes does when its parent is no longer the process it was
    started by (here: a parent pid that is not this test's): exit 3, saying so."""
    proc = subprocess.run(
        [sys.executable, "-m", "emulator.fleet", "--devices", "200", "--days", "30",
         "--no-progress", "--parent-pid", str(os.getpid() + 1_000_000), "--shard", "1/2",
         "--work-dir", str(tmp_path / "w")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "parent (pid" in proc.stderr and "is gone" in proc.stderr
    assert "Traceback" not in proc.stderr
