"""``--processes K``: K local shard processes, one fleet, one merged report.

The parent owns the server side: with no ``--server`` it runs a reference server in
its own event loop (real clock: the shards' virtual clocks are their own), mints one
registration key per device and hands each shard the same key file (device i uses
line i+1, whichever shard runs it). Each shard is ``python -m emulator.fleet --shard
i/K`` writing a JSON report; the parent merges them, reads the server's upload counts
and checks the whole fleet. Keys and tokens go through files, never the command line,
where any local user could read them. When the parent shows live figures
(``--metrics-port``, ``--stats-csv``), each shard also writes its latest snapshot to a
file the parent reads.

A shard stops when its parent is gone, however it went: a shard started with
``--parent-pid PID`` looks twice a second whether its parent is still PID, and stops
when it is not (:func:`stop_with_parent`; an orphan gets a new parent). SIGTERM and
Ctrl-C the parent passes on itself; SIGKILL (a CI runner's hard timeout, the OOM killer)
it cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import emulator
from device_direct.clock import SystemClock
from emulator.fleet.live_stats import merge_snapshots
from emulator.fleet.progress import ProgressBar
from emulator.fleet.report import FleetReport, merge_reports
from emulator.fleet.runner import FleetRunError, ServerTarget, server_upload_counts
from emulator.fleet.spec import FleetSpec, format_actions, format_mix
from emulator.server.app import ReferenceServer

_KEY_TTL_S = 7 * 86400  # real seconds: the parent's server runs on the real clock

T = TypeVar("T")


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _shard_command(spec: FleetSpec, args: argparse.Namespace, server_args: list[str],
                   work_dir: Path, i: int, k: int, live: bool = False) -> list[str]:
    return [
        sys.executable, "-m", "emulator.fleet",
        "--devices", str(spec.devices), "--days", str(spec.days), "--seed", str(spec.seed),
        "--mix", format_mix(spec.mix), "--upload-window", str(spec.upload_window),
        "--zones", ",".join(spec.zones), "--concurrency", str(args.concurrency),
        *(["--actions", format_actions(spec.actions)] if spec.actions else []),
        "--no-progress", "--log-level", args.log_level, "--loop", args.loop,
        "--tls-library", args.tls_library, *server_args,
        "--parent-pid", str(os.getpid()), "--shard", f"{i}/{k}",
        "--work-dir", str(work_dir / f"shard-{i}"),
        "--report", str(work_dir / f"shard-{i}.json"),
        *(["--live-stats-file", str(_stats_file(work_dir, i))] if live else []),
    ]


def _stats_file(work_dir: Path, i: int) -> Path:
    return work_dir / f"shard-{i}.stats.json"


def _read_stats(work_dir: Path, k: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, k + 1):
        try:
            out.append(json.loads(_stats_file(work_dir, i).read_text("utf-8")))
        except (OSError, ValueError):
            continue  # not written yet
    return out


def _server_args(args: argparse.Namespace, target: ServerTarget, work_dir: Path) -> list[str]:
    out = ["--server", target.url]
    if target.ca_bundle is not None:
        out += ["--ca", str(target.ca_bundle)]
    if target.server_name:
        out += ["--server-name", target.server_name]
    if target.keys:
        out += ["--key-file", str(_private(work_dir / "keys.txt", "\n".join(target.keys)))]
    if target.admin_token is not None:
        out += ["--admin-token-file",
                str(_private(work_dir / "admin-token", target.admin_token))]
    if target.firmware_key is not None:
        out += ["--firmware-key", str(_private(work_dir / "firmware-key.pem",
                                                target.firmware_key))]
    return out


class _SigtermCancels:
    """While installed, SIGTERM cancels ``task``; true once it did."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        self._task = task
        self.fired = False
        loop.add_signal_handler(signal.SIGTERM, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self._task.cancel()

    def __bool__(self) -> bool:
        return self.fired

    def restore(self) -> None:
        self._loop.remove_signal_handler(signal.SIGTERM)


def _on_sigterm_cancel(task: asyncio.Task[Any] | None) -> _SigtermCancels | None:
    """SIGTERM cancels ``task`` from now on; None where the loop cannot take signals (not
    the main thread, not Unix)."""
    if task is None:
        return None
    try:
        return _SigtermCancels(asyncio.get_running_loop(), task)
    except (NotImplementedError, RuntimeError, ValueError):
        return None


PARENT_CHECK_S = 0.5  # how often a shard looks whether its parent is still there


async def stop_with_parent(work: Awaitable[T], parent_pid: int) -> T:
    """``work``'s result, unless this process's parent stops being ``parent_pid`` first
    (it died: the orphan was given another parent): then ``work`` is cancelled and
    :class:`FleetRunError` says why."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if os.getppid() != parent_pid:
                task.cancel()
                await asyncio.wait((task,))
                raise FleetRunError(f"the --processes parent (pid {parent_pid}) is gone: "
                                    "this shard stopped too")
            await asyncio.wait((task,), timeout=PARENT_CHECK_S)
        return task.result()
    finally:
        if not task.done():
            task.cancel()


async def run_processes(spec: FleetSpec, args: argparse.Namespace,
                        target: ServerTarget | None, work_dir: Path, *,
                        progress: ProgressBar,
                        stats: Callable[[dict[str, Any]], None] | None = None
                        ) -> FleetReport:
    """Run ``args.processes`` shards of ``spec`` as child processes; the merged report."""
    wall = SystemClock()
    started = wall.monotonic()
    k = int(args.processes)
    server: ReferenceServer | None = None
    procs: list[asyncio.subprocess.Process] = []
    env = dict(os.environ)
    # The children import the same emulator package as this process.
    root = str(Path(emulator.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # SIGTERM (a CI job cancelled, `kill PID`) stops the run as Ctrl-C does: this task is
    # cancelled and the shards are stopped below, not left running on their own.
    terminated = _on_sigterm_cancel(asyncio.current_task())
    try:
        if target is None:
            server = ReferenceServer(work_dir / "server")
            await server.start()
            keys = tuple(server.create_registration_key(ttl_s=_KEY_TTL_S)
                         for _ in range(spec.devices))
            target = ServerTarget(
                url=f"https://127.0.0.1:{server.port}/", ca_bundle=server.ca_cert_path,
                server_name="localhost", keys=keys,
                firmware_key=server.firmware_public_key_pem.decode(),
                # The shards issue their actions through the admin API.
                admin_token=server.admin_token if spec.actions else None)
        server_args = _server_args(args, target, work_dir)
        for i in range(1, k + 1):
            procs.append(await asyncio.create_subprocess_exec(
                *_shard_command(spec, args, server_args, work_dir, i, k, stats is not None),
                stdout=asyncio.subprocess.DEVNULL, env=env))
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        while True:
            # Uploads stored stand for device-days (action payloads may add a few).
            done_uploads = server.storage.uploads_count() if server is not None else 0
            progress(min(done_uploads, spec.device_days), spec.device_days, None)
            live = _read_stats(work_dir, k) if stats is not None else []
            if stats is not None and live:
                stats(merge_snapshots(live))
            _, pending = await asyncio.wait(waits, timeout=0.25)
            if not pending:
                break
        if stats is not None:
            stats(merge_snapshots(_read_stats(work_dir, k)))
        codes = [w.result() for w in waits]
        failed = [f"{i + 1}/{k} (exit {c})" for i, c in enumerate(codes) if c not in (0, 1)]
        if failed:
            raise FleetRunError(f"shard processes failed: {', '.join(failed)}; their errors "
                                "are above")
        parts = []
        for i in range(1, k + 1):
            path = work_dir / f"shard-{i}.json"
            try:
                parts.append(FleetReport.from_json(json.loads(path.read_text("utf-8"))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise FleetRunError(f"shard {i}/{k} report {path} unreadable: {exc}") from exc
        if server is not None:
            counts: dict[str, int] | None = {
                d["serial"]: int(d["uploads"]) for d in server.storage.devices()}
            progress(min(server.storage.uploads_count(), spec.device_days),
                     spec.device_days, None)
        elif target.admin_token is not None:
            counts = await server_upload_counts(target)
        else:
            counts = None
    except asyncio.CancelledError:
        if not terminated:
            raise
        raise FleetRunError("stopped by SIGTERM: the shard processes were stopped too; "
                            "no report") from None
    finally:
        if terminated is not None:
            terminated.restore()
        for p in procs:
            if p.returncode is None:
                p.terminate()
                await p.wait()
        if server is not None:
            await server.stop()
    return merge_reports(parts, wall_s=wall.monotonic() - started, server_uploads=counts)
