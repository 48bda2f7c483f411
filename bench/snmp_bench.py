"""Walk time of our SNMP agent against snmpsim serving a recording of it.

Both agents run on 127.0.0.1 in the same run: our agent in this process (answering
from its snapshot of the model, rebuilt when the model changes, with clocks and
counters read live), snmpsim's command responder in a child process serving a
recording of our agent (``snmpsim-record-commands``, or a ``snmpwalk -ObentU`` dump
where that recorder fails). Each agent is walked several times over the Printer-MIB
subtree with net-snmp's ``snmpwalk`` (GETNEXT) and ``snmpbulkwalk`` (GETBULK), the two
agents taking turns walk by walk so that the machine's drift hits both; the median
wall time per walk is reported with the ratio ours / snmpsim (goal: <= 1.0 for both),
and the last line is one JSON object.

Run: ``.venv/bin/python bench/snmp_bench.py [--walks 7]``. Needs net-snmp's tools
(Debian package ``snmp``) and ``snmpsim`` + ``pysmi`` in the venv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.clock import VirtualClock
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.snmp import SnmpAgent, SnmpAgentConfig

SUBTREE = "1.3.6.1.2.1.43"
BIN = Path(sys.executable).parent


def _need(path: str | None, what: str) -> str:
    if path is None:
        sys.exit(f"snmp_bench: {what} not found")
    return path


async def _run(*cmd: str, timeout_s: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "", f"{cmd[0]} timed out after {timeout_s}s"
    return proc.returncode or 0, out.decode(), err.decode()


# snmpsim refuses to run as root and drops to nobody; the interpreter may live where
# nobody cannot read (e.g. /root/.pyenv), so modules snmpsim imports lazily after the
# drop (dbm backends, codecs) are imported before it.
_RESPONDER = ("import sys, dbm, dbm.dumb, encodings.latin_1, encodings.ascii, "
              "encodings.utf_8, encodings.hex_codec\n"
              "from snmpsim.commands.responder import main\n"
              "sys.argv[0] = 'snmpsim-command-responder'\n"
              "sys.exit(main())")


async def _walk(tool: str, port: int) -> tuple[float, int]:
    start = time.perf_counter()
    code, out, err = await _run(tool, "-v2c", "-c", "public", "-On", "-m", "", "-t", "5",
                                "-r", "0", f"127.0.0.1:{port}", SUBTREE)
    elapsed = (time.perf_counter() - start) * 1000
    if code != 0:
        raise RuntimeError(f"{tool} against port {port} failed: {err.strip()}")
    return elapsed, sum(1 for line in out.splitlines() if line.startswith("."))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_answering(port: int) -> None:
    for _ in range(100):
        code, _, _ = await _run("snmpget", "-v2c", "-c", "public", "-t", "0.2", "-r", "0",
                                f"127.0.0.1:{port}", "1.3.6.1.2.1.1.1.0")
        if code == 0:
            return
    raise RuntimeError(f"snmpsim did not answer on udp/127.0.0.1:{port}")


async def _check_alive(sim: asyncio.subprocess.Process) -> None:
    if sim.returncode is not None:
        assert sim.stderr is not None
        err = (await sim.stderr.read()).decode().strip().splitlines()
        raise RuntimeError(f"snmpsim-command-responder exited: {err[-1] if err else '?'}")


async def _record(recorder: str, port: int, data: Path) -> str:
    """Record our agent for snmpsim; returns the data file name (its suffix is the format).

    snmpsim's own recorder is tried first. snmpsim 1.2.2 with pysnmp 7.1.30 breaks in
    its response callback (it unpacks each var-bind as a row: "too many values to
    unpack"), so the fallback is the other recording snmpsim documents: a net-snmp
    ``snmpwalk -ObentU`` dump, which snmpsim serves as a ``.snmpwalk`` data file.
    """
    target = data / "public.snmprec"
    code, _, err = await _run(
        recorder, "--agent-udpv4-endpoint", f"127.0.0.1:{port}", "--protocol-version",
        "2c", "--community", "public", "--use-getbulk", "--timeout", "2", "--retries",
        "0", "--output-file", str(target), timeout_s=20)
    if code == 0 and target.exists() and target.stat().st_size > 0:
        return target.name
    reason = (err.strip().splitlines() or ["no output"])[-1]
    print(f"snmpsim-record-commands failed ({reason}); recording with snmpwalk -ObentU")
    target.unlink(missing_ok=True)
    code, out, err = await _run("snmpwalk", "-v2c", "-c", "public", "-ObentU", "-m", "",
                                f"127.0.0.1:{port}", "1.3.6")
    if code != 0:
        raise RuntimeError(f"snmpwalk recording failed: {err.strip()}")
    (data / "public.snmpwalk").write_text(out)
    return "public.snmpwalk"


async def main(walks: int) -> dict[str, float | int | str]:
    for tool in ("snmpwalk", "snmpbulkwalk", "snmpget"):
        _need(shutil.which(tool), f"{tool} (Debian package 'snmp')")
    recorder = _need(shutil.which("snmpsim-record-commands", path=str(BIN)),
                     "snmpsim-record-commands (pip install snmpsim pysmi)")
    _need(shutil.which("snmpsim-command-responder", path=str(BIN)),
          "snmpsim-command-responder (pip install snmpsim pysmi)")
    clock = VirtualClock()
    device = EmulatedDevice(load_profile("office-color"), serial="BENCH0001", clock=clock,
                            rng_seed=1, state_dir=None)
    device.run_day(clock.now().date())  # a day of use: alerts, worn supplies
    agent = SnmpAgent(device, clock=clock, config=SnmpAgentConfig(port=0))
    await agent.start()
    with tempfile.TemporaryDirectory(prefix="snmp-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        recording = await _record(recorder, agent.port, data)
        recorded = sum(1 for _ in (data / recording).open())
        sim_port = _free_udp_port()
        cache = Path(tmp) / "cache"
        cache.mkdir()
        privileges: list[str] = []
        if os.geteuid() == 0:
            privileges = ["--process-user", "nobody", "--process-group", "nogroup"]
            for path in (Path(tmp), data, *data.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
            cache.chmod(0o777)
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RESPONDER, "--data-dir", str(data),
            "--agent-udpv4-endpoint", f"127.0.0.1:{sim_port}", "--cache-dir", str(cache),
            "--logging-method", "null", *privileges,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            try:
                await _wait_answering(sim_port)
            except RuntimeError:
                await _check_alive(sim)
                raise
            results: dict[str, float | int | str] = {"recorded_oids": recorded,
                                                     "recording": recording}
            built = agent.snapshots_built
            for tool, key in (("snmpwalk", "walk"), ("snmpbulkwalk", "bulkwalk")):
                agents = (("ours", agent.port), ("snmpsim", sim_port))
                times: dict[str, list[float]] = {name: [] for name, _ in agents}
                counts: dict[str, int] = {}
                for round_no in range(walks):  # taking turns, first one then the other
                    for name, port in agents[::1 if round_no % 2 == 0 else -1]:
                        ms, counts[name] = await _walk(tool, port)
                        times[name].append(ms)
                for name, _ in agents:
                    median = statistics.median(times[name])
                    results[f"{key}_ms_{name}"] = round(median, 1)
                    results[f"{key}_oids_{name}"] = counts[name]
                    print(f"{tool:13s} {name:8s} {counts[name]:4d} OIDs  median "
                          f"{median:8.1f} ms  (min {min(times[name]):.1f}, "
                          f"max {max(times[name]):.1f}, {walks} walks)")
            results["snapshots_built_during_walks"] = agent.snapshots_built - built
            results["ratio_vs_snmpsim"] = round(
                float(results["walk_ms_ours"]) / float(results["walk_ms_snmpsim"]), 2)
            results["bulk_ratio_vs_snmpsim"] = round(
                float(results["bulkwalk_ms_ours"]) / float(results["bulkwalk_ms_snmpsim"]), 2)
            print(f"ours / snmpsim: GETNEXT walk {results['ratio_vs_snmpsim']}, GETBULK walk "
                  f"{results['bulk_ratio_vs_snmpsim']} (goal <= 1.0 for both); snapshots "
                  f"rebuilt during the walks: {results['snapshots_built_during_walks']}")
            return results
        finally:
            if sim.returncode is None:
                sim.terminate()
            await sim.wait()
            await agent.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=7, help="walks per agent and tool")
    figures = asyncio.run(main(parser.parse_args().walks))
    print(json.dumps(figures, sort_keys=True))
