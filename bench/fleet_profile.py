"""Where a device-day's CPU goes in the fleet process: a profile, not a benchmark.

Runs ``--devices`` x ``--days`` of the fleet against the reference server in its own
process (as ``fleet_bench.py`` does) and times, in CPU seconds of the loop's thread
(``time.thread_time``), the parts of a device-day that are plain calls: the client's
TLS handshake (OpenSSL), the model snapshot, the payload XML and zip, the audit line,
the outbox reads and the agent-state write on the loop, the TLS context builds (at
registration). The rest of the loop thread's CPU is the HTTP client (the transport's
own HTTP/1.1, ``device_direct/core/http1.py`` and ``http_connection.py``), the event loop
(uvloop's C code and TLS transport), asyncio and the agent's own logic: ``--py-spy FILE`` also
records a sampled profile of the timed run (``py-spy``, in the ``bench`` extra) to split
that rest. The outbox's durable writes and bookkeeping are timed
wherever they run: on the loop (a fleet on a RAM disk, the default) or in the storage
thread (``device_direct.durable``), whose other CPU (hand-offs, waking up) is the process
total less the loop thread's and the timed calls it made.

docs/fleet.md ("Where a device-day goes") quotes this script's output.

    .venv/bin/python bench/fleet_profile.py [--devices 300] [--days 10] [--py-spy out.txt]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet_bench import fleet_run, fleet_target, served  # bench/, beside this

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import device_direct.agent as agent_module  # noqa: E402
import device_direct.audit as audit_module  # noqa: E402
import device_direct.outbox_store as outbox_module  # noqa: E402
import device_direct.transport as transport_module  # noqa: E402

CPU: dict[str, float] = {}  # loop thread
ELSEWHERE: dict[str, float] = {}  # the same calls made in another thread (storage)
NESTED = threading.local()  # per thread: the CPU of timed calls inside the current one


def timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper adding its CPU (``time.thread_time``) to
    ``label``: in CPU when the loop thread made the call, else in ELSEWHERE. A timed call
    inside another counts in its own label only, not in the outer one's too."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack: list[float] = NESTED.__dict__.setdefault("stack", [])
        stack.append(0.0)
        started = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent = time.thread_time() - started
            inside = stack.pop()
            if stack:
                stack[-1] += spent
            where = CPU if threading.current_thread() is threading.main_thread() else ELSEWHERE
            where[label] = where.get(label, 0.0) + spent - inside

    setattr(owner, name, wrapper)


def instrument() -> None:
    timed(ssl.SSLObject, "do_handshake", "TLS handshake, client side (OpenSSL)")
    timed(agent_module, "collect", "model snapshot (collect)")
    timed(agent_module, "build_xml", "payload XML (build_xml)")
    timed(agent_module, "pack_zip", "payload zip (pack_zip)")
    timed(audit_module.AuditLog, "record", "audit journal line")
    for method in ("allocate", "next_due", "entries", "next_wakeup", "history"):
        timed(outbox_module.OutboxStore, method, "outbox reads on the loop")
    timed(agent_module.Agent, "_save_state", "agent state write (on the loop)")
    timed(outbox_module, "atomic_write", "outbox durable writes")
    if hasattr(outbox_module, "append_durably"):  # the journal (absent in older trees)
        timed(outbox_module, "append_durably", "outbox durable writes")
    for method in ("add", "begin_send", "mark_sent"):
        timed(outbox_module.OutboxStore, method, "outbox bookkeeping (add, send, sent)")
    timed(transport_module, "build_ssl_context", "TLS context builds (registration)")


def main() -> int:
    """Profile one fleet run and print the breakdown (last line: JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--tls-library", choices=("system", "bundled"),
                    help="whose OpenSSL the devices' TLS runs on (default: the fleet's)")
    ap.add_argument("--py-spy", metavar="FILE",
                    help="also record py-spy's sampled profile of the timed run (raw format)")
    args = ap.parse_args()
    instrument()
    with served() as (tmp, state, _, port):
        fleet_run(fleet_target(port, state, 5), tmp / "warm-up", 5, 1,
                  args.concurrency, seed=10)
        target = fleet_target(port, state, args.devices)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "250",
                 "-f", "raw", "--threads", "-o", args.py_spy, "--pid",
                 str(os.getpid())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)  # py-spy attaches
        CPU.clear()
        loop_cpu, process_cpu = time.thread_time(), time.process_time()
        rate, _, ok = fleet_run(target, tmp / "fleet", args.devices, args.days,
                                args.concurrency, tls_library=args.tls_library)
        loop_cpu = time.thread_time() - loop_cpu
        process_cpu = time.process_time() - process_cpu
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    days = args.devices * args.days

    def ms(seconds: float) -> float:
        return float(round(1000 * seconds / days, 3))

    rows = {label: ms(cpu) for label, cpu in sorted(CPU.items(), key=lambda kv: -kv[1])}
    rows["rest of the loop thread (HTTP client, event loop, asyncio, agent logic)"] = ms(
        loop_cpu - sum(CPU.values()))
    for label, cpu in sorted(ELSEWHERE.items(), key=lambda kv: -kv[1]):
        rows[f"{label}, in the storage thread"] = ms(cpu)
    rows["rest of the storage thread (hand-offs, waking up)"] = ms(
        process_cpu - loop_cpu - sum(ELSEWHERE.values()))
    print(f"{args.devices} devices x {args.days} days, {rate:.1f} device-days/s, "
          f"expectations {'ok' if ok else 'FAILED'}; CPU ms per device-day:")
    for label, value in rows.items():
        print(f"  {value:7.3f}  {label}")
    print(f"  {ms(process_cpu):7.3f}  the fleet process in all")
    print(json.dumps({"cpu_ms_per_device_day": rows,
                      "process_cpu_ms_per_device_day": ms(process_cpu),
                      "device_days_per_s": round(rate, 1), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
