"""Fleet benchmark: device-days per second over real TLS, against Locust and openssl.

One run, all on this machine, one reference server in its own process
(``python -m emulator.server.cli server run``) so that the server and the load do not
share one event loop:

(a) the fleet runner: 1,000 emulated printers x 30 virtual days, each device with its
    own real agent (registers once; then daily a new TLS connection with its client
    certificate, the upload, the action poll and the firmware check), all on one
    virtual clock in this process. Every device uploads at 02:00 UTC, so the fleet
    keeps ``--concurrency`` connections busy (a realistic spread of upload times would
    measure the virtual clock's serialisation, not the load the fleet can make). It runs
    on the loop ``fleet`` would pick (``--loop``, default auto: uvloop when installed);
    the last line's ``fleet_loop`` names it;
(b) Locust (``locust --headless``, its own process): the same HTTP work per
    "device-day" for the devices (a) registered - build a payload zip, upload it with
    the device's certificate, poll actions, check firmware, close the connection - with
    its default user class, HttpUser (requests), the goal's baseline; and (b') the same
    with FastHttpUser (geventhttpclient), the faster class Locust's docs offer, printed
    as a stricter baseline beside it;
(c) ``openssl s_time -new``: full TLS handshakes per second against the same port, the
    floor TLS itself sets. s_time makes one connection at a time (no client
    certificate), so its rate is set by openssl's CPU and the server's in turn; the
    bench prints both per handshake and the server's share of a core meanwhile;
(c') the same, making the handshake a device makes (its client certificate, the
    server's chain verified), after each round of (b)-(e'): printed beside the goal's (c),
    which it does not replace;
(e) ``bare_client.py``: Locust's device-day made over aiohttp on uvloop and nothing else,
    no agent: the floor of the fleet's stack until brief 23x gave the transport its own
    HTTP/1.1 (cheaper than aiohttp's client: docs/fleet.md). Its CPU per device-day
    beside the fleet's says what the agents' own work (model, payload, outbox, journal)
    costs above a library client;
(e') ``bare_client.py --client transport``: the same device-day over the device's own
    transport (``device_direct.transport.Transport``: the fleet's HTTP/1.1, TLS settings
    and TLS library) and nothing else. The fleet's CPU per device-day less this one's is what
    the agents' own work costs (printed as "the agents' own work");
(d) RSS per idle simulated device: 10,000 models + agents created and parked on the
    virtual clock, in a fresh process; RSS delta / 10,000.

What (b), (e) and (e') upload: the fleet's own payloads (``--baseline-payloads fleet``,
the default). First of all (this is also the warm-up: imports and first-use costs) a
small fleet of the same length as (a), 30 devices x ``--days``, uploads; the payloads the
server stored, every day of each device's life, are what the baselines send, round
robin, with their own devices' serials, Upload-Ids and sequence numbers. So the server
checks and stores the same payloads whichever client sends them. A fleet device's
payload grows through its first weeks (its transfer history gains a record a day:
about 6.7 KB of XML on day 1, 10-11 KB on day 30), and the fixture's sample
(``--baseline-payloads fixture``, 7.2 KB, what the baselines sent until the thirteenth
round of issue 23) is lighter for the server than the fleet's average day.

(b), (b'), (e), (e') and (c) are each run ``--repeats`` times (4), interleaved with each other and
bracketing (a) evenly: half the rounds before the 30-day fleet, half after it (and one
more openssl run first). Their medians are quoted: the machine is shared, its speed
drifts over minutes, and one noisy stretch must not make or break a ratio. The split is
even because the rounds after the fleet meet a server that holds 30,000 more uploads
(and were often the slower ones): a median of mostly-after rounds would favour the
fleet. (a) is one long run (three to four minutes), which averages by itself.

The reference server runs in its own process, and the bench reads its CPU time
(``/proc``) over each timed stretch: it prints the server's share of a core while the
fleet ran and while each Locust class ran, so a reader sees whether the server (not the
client) set a rate. On this 2-core machine the client and the server share the cores,
so the ratios compare CPU per device-day of the clients, which is what they are about.

Goals (issue 23): (a) >= (b') FastHttpUser; (a)/(c) >= 0.65; (d) <= 16 KiB per idle
device. For the two rate goals the bench also prints the most CPU per device-day each
side could have spent for the goal's rate, from the run's own figures: the fleet at the
share of a core it had, the server at all of one (each is one thread). Also printed:
(a)/(b) HttpUser (the earlier goal, >= 1). The last line is one JSON object, units in its
keys. Each client's CPU per device-day is printed too: the baselines' from their first
device-day to their last (their start-up left out; FastHttpUser and the bare clients
build every device's TLS context before their first device-day, as a fleet device has its
own from registration on), the fleet's over its whole run and in steady state. On this
shared 2-core machine a client's rate is capped by the server as much as by itself, its
CPU per device-day only by itself.

    .venv/bin/python bench/fleet_bench.py [--devices 1000] [--days 30] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from peers import (  # bench/, beside this script
    HandshakeRun,
    openssl_run,
    start_server,
    tree_cpu_s,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_direct.config import TlsLibrary  # noqa: E402
from emulator.clock import VirtualClock  # noqa: E402
from emulator.fleet.runner import Fleet, ServerTarget, _Endpoint, run_fleet  # noqa: E402
from emulator.fleet.spec import FleetSpec, Shard, UploadWindow  # noqa: E402
from emulator.loop import LOOP_NAMES, LoopName, resolve  # noqa: E402
from emulator.loop import run as run_on_loop  # noqa: E402

BENCH_WINDOW = UploadWindow.parse("02:00-02:01")


def tmp_base() -> str | None:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def server_cli(state: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "emulator.server.cli", "server", "--state-dir", str(state),
         *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def served() -> Iterator[tuple[Path, Path, subprocess.Popen[str], int]]:
    """A temporary directory (in RAM where there is one) and the reference server in its
    own process with its state in ``<tmp>/state``: (tmp, state, process, port). The
    server is stopped and the directory removed at the end."""
    with tempfile.TemporaryDirectory(dir=tmp_base()) as tmp:
        state = Path(tmp) / "state"
        server_cli(state, "export-firmware-key")  # creates the state (PKI, keys)
        proc, port = start_server(state)
        try:
            yield Path(tmp), state, proc, port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


# -- (a) the fleet --------------------------------------------------------------------------


def fleet_target(port: int, state: Path, devices: int) -> ServerTarget:
    """What an operator hands the fleet: URL, CA, one registration key per device and the
    firmware signing key (minted by the server's CLI, outside the timed run)."""
    keys = tuple(server_cli(state, "make-key", "--count", str(devices),
                            "--ttl", str(7 * 86400)).split())
    firmware_key = server_cli(state, "export-firmware-key")
    return ServerTarget(url=f"https://127.0.0.1:{port}/", ca_bundle=state / "pki" / "bundle.pem",
                        server_name="localhost", keys=keys, firmware_key=firmware_key)


def fleet_run(target: ServerTarget, work: Path, devices: int, days: int, concurrency: int,
              seed: int = 8, loop: LoopName = "auto", tls_library: TlsLibrary | None = None
              ) -> tuple[float, dict[str, int], bool]:
    """One fleet run; ``tls_library`` None: the fleet's default (bundled where usable)."""
    spec = FleetSpec(devices=devices, days=days, seed=seed, zones=("UTC",),
                     upload_window=BENCH_WINDOW)
    report = run_on_loop(run_fleet(spec, work, target=target, concurrency=concurrency,
                                   tls_library=tls_library), loop)
    for e in report.expectations:
        if not e.ok:
            print(f"fleet expectation FAILED: {e.name}: {e.detail}")
    return report.device_days / report.wall_s, report.totals(), report.ok


# -- (b) Locust -----------------------------------------------------------------------------

# Two user classes, the same device-day: HttpUser (requests; Locust's default, what its
# quick start uses) and FastHttpUser (geventhttpclient; what Locust's docs point to for
# more load per core). FLEET_USER picks one. Both verify the server's certificate and
# present the device's client certificate; both close the connection after each device-day.
# The rate and the CPU are those of the device-days alone (first to last): Locust's start-up
# and imports are left out, as the fleet's steady state leaves out its set-up. FastHttpUser
# builds each device's TLS context before the first device-day, as a fleet device has its
# own from registration on; HttpUser (requests) makes one per connection, which is how
# requests works.
LOCUSTFILE = textwrap.dedent('''
    """One task = one device-day: upload + action poll + firmware check, new connection."""
    import hashlib, itertools, json, os, ssl, sys, time
    from locust import HttpUser, events, task

    DEVICES = json.load(open(os.environ["FLEET_DEVICES"]))
    CA = os.environ["FLEET_CA"]
    NEXT = itertools.count()
    DONE = {"device_days": 0, "errors": 0, "first": None, "last": None,
            "cpu_first": None, "cpu_last": None}
    FIRMWARE = {"model": "ColorMFP C8055", "version": "100.002.057"}

    # The same payloads as bench/bare_client.py's device-days (one function for both).
    sys.path.insert(0, os.environ["FLEET_BENCH_DIR"])
    from bare_client import load_samples, payload as sample_payload
    SAMPLES = load_samples(os.environ["FLEET_SAMPLE"])

    def payload(serial, sequence, n):
        return sample_payload(SAMPLES[n % len(SAMPLES)], serial, sequence)

    def next_day():
        n = next(NEXT)
        dev = DEVICES[n % len(DEVICES)]
        if DONE["first"] is None:
            DONE["first"], DONE["cpu_first"] = time.perf_counter(), time.process_time()
        upload_id, body = payload(dev["serial"], 100000 + n // len(DEVICES), n)
        headers = {"Content-Type": "application/zip", "Upload-Id": upload_id,
                   "Content-SHA256": hashlib.sha256(body).hexdigest()}
        return dev, f"/dd/v1/devices/{dev['device_id']}", body, headers

    def count(ok):
        DONE["device_days" if ok else "errors"] += 1
        DONE["last"], DONE["cpu_last"] = time.perf_counter(), time.process_time()

    if os.environ.get("FLEET_USER") == "FastHttpUser":
        import gevent.ssl
        from locust.contrib.fasthttp import FastHttpSession, FastHttpUser

        def device_context(dev):
            ctx = gevent.ssl.create_default_context(cafile=CA)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(dev["cert"], dev["key"])
            return ctx

        # One TLS context per device, as each agent keeps one, built before the first
        # device-day (a fleet device has its own from registration on).
        CONTEXTS = {dev["serial"]: device_context(dev) for dev in DEVICES}

        def context_for(dev):
            return CONTEXTS[dev["serial"]]

        class Device(FastHttpUser):
            @task
            def device_day(self):
                dev, base, body, headers = next_day()
                ctx = context_for(dev)
                # A session (and its connection pool) per device-day: a new TLS connection.
                s = FastHttpSession(self.host, self.environment.events.request, self,
                                    insecure=False, concurrency=1,
                                    ssl_context_factory=lambda *a, **k: ctx)
                try:
                    ok = s.post(base + "/uploads", data=body, name="upload",
                                headers=headers).status_code == 201
                    ok &= s.get(base + "/actions", name="actions").status_code == 200
                    ok &= s.get(base + "/firmware", name="firmware",
                                params=FIRMWARE).status_code in (200, 204)
                finally:
                    s.client.close()
                count(ok)
    else:
        class Device(HttpUser):
            @task
            def device_day(self):
                dev, base, body, headers = next_day()
                kw = {"cert": (dev["cert"], dev["key"]), "verify": CA}
                ok = self.client.post(base + "/uploads", data=body, name="upload",
                                      headers=headers, **kw).status_code == 201
                ok &= self.client.get(base + "/actions", name="actions",
                                      **kw).status_code == 200
                ok &= self.client.get(base + "/firmware", name="firmware", params=FIRMWARE,
                                      **kw).status_code in (200, 204)
                self.client.close()  # the next device-day opens a new TLS connection
                count(ok)

    @events.quitting.add_listener
    def _save(environment, **kw):
        # One file per process: with --processes, each worker counts its own users.
        with open(f"{os.environ['FLEET_RESULT']}.{os.getpid()}", "w") as fh:
            json.dump(DONE, fh)
''')

LOCUST_USERS = ("HttpUser", "FastHttpUser")
BARE = "aiohttp"  # (e): bare_client.py, aiohttp's client on uvloop without the agents
OWN = "transport"  # (e'): bare_client.py --client transport, the device's own transport
CLIENTS = (*LOCUST_USERS, BARE, OWN)


SAMPLE = ROOT / "fixtures" / "payloads" / "sample-device-data.xml"
SAMPLE_FLEET_DEVICES = 30  # the small fleet whose payloads the baselines send


def fleet_payloads(state: Path, out: Path) -> tuple[Path, list[int]]:
    """Every payload the server has stored so far (the small fleet's, run first), as a
    JSON list of device-data.xml texts in ``out``; with their sizes in bytes."""
    db = sqlite3.connect(f"file:{state / 'server.sqlite3'}?mode=ro", uri=True)
    try:
        zips = [row[0] for row in db.execute(
            "SELECT zip FROM uploads ORDER BY device_id, sequence")]
    finally:
        db.close()
    texts = [zipfile.ZipFile(io.BytesIO(z)).read("device-data.xml").decode("utf-8")
             for z in zips]
    if not texts:
        raise SystemExit("the small fleet stored no payloads for the baselines")
    out.write_text(json.dumps(texts), encoding="utf-8")
    return out, [len(t.encode("utf-8")) for t in texts]

# A baseline run: device-days/s, device-days, errors, the client process's CPU seconds.
Baseline = tuple[float, int, int, float]


def devices_file(work: Path) -> Path:
    """The devices a fleet in ``work`` registered, as Locust and the bare client read them."""
    path = work / "baseline-devices.json"
    if not path.exists():
        devices = []
        for ident in sorted((work / "devices").glob("*/identity/identity.json")):
            data = json.loads(ident.read_text())
            devices.append({"serial": data["serial"], "device_id": data["device_id"],
                            "cert": str(ident.with_name("certificate.pem")),
                            "key": str(ident.with_name("key.pem"))})
        path.write_text(json.dumps(devices))
    return path


def locust_run(port: int, state: Path, work: Path, users: int, seconds: int, run: str,
               user_class: str = "HttpUser", processes: int = 1,
               samples: Path = SAMPLE, wrap: tuple[str, ...] = ()) -> Baseline:
    """Locust's device-day for ``seconds``, ``users`` at once, in one process or, with
    ``processes`` > 1, ``locust --processes`` workers (its own master beside them),
    sending ``samples`` (one device-data.xml, or a JSON list of them). ``wrap``: a
    command to run Locust under (valgrind: fleet_instructions.py)."""
    locust = Path(sys.executable).with_name("locust")
    if not locust.exists():
        raise SystemExit("locust is not installed: .venv/bin/pip install locust")
    tmp = work / f"locust-{run}"
    tmp.mkdir()
    (tmp / "locustfile.py").write_text(LOCUSTFILE)
    env = dict(os.environ, FLEET_DEVICES=str(devices_file(work)), FLEET_SAMPLE=str(samples),
               FLEET_CA=str(state / "pki" / "bundle.pem"), FLEET_RESULT=str(tmp / "result.json"),
               FLEET_USER=user_class, FLEET_BENCH_DIR=str(Path(__file__).parent))
    proc = subprocess.run(
        [*wrap, sys.executable, str(locust), "-f", str(tmp / "locustfile.py"), "--headless",
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
         "--host", f"https://127.0.0.1:{port}",
         "--only-summary", "--loglevel", "ERROR",
         *(("--processes", str(processes)) if processes > 1 else ())],
        cwd=tmp, env=env, check=False, capture_output=True, text=True,
        timeout=seconds * 3 + (900 if wrap else 60))
    # The processes that made device-days (a --processes master makes none).
    results = [r for r in (json.loads(f.read_text()) for f in tmp.glob("result.json.*"))
               if r["first"] is not None]
    if not results:
        raise SystemExit(f"locust ({user_class}) wrote no result:\n{proc.stderr[-2000:]}")
    done = sum(r["device_days"] for r in results)
    # perf_counter is the system's monotonic clock here (Linux): one time line for all.
    span = max(r["last"] or 0 for r in results) - min(r["first"] for r in results)
    rate = done / span if span > 0 else 0.0
    # Each process's CPU from its first device-day to its last (imports and set-up out).
    cpu = sum((r["cpu_last"] or r["cpu_first"]) - r["cpu_first"] for r in results)
    return rate, done, sum(r["errors"] for r in results), cpu


def bare_run(port: int, state: Path, work: Path, users: int, seconds: int,
             client: str = BARE, samples: Path = SAMPLE, wrap: tuple[str, ...] = ()
             ) -> Baseline:
    """(e), (e'): the same device-day over aiohttp's client or the device's transport on
    uvloop alone (``bare_client.py --client``), sending ``samples``; under ``wrap``."""
    proc = subprocess.run(
        [*wrap, sys.executable, str(Path(__file__).with_name("bare_client.py")),
         "--port", str(port), "--devices", str(devices_file(work)),
         "--ca", str(state / "pki" / "bundle.pem"),
         "--sample", str(samples), "--seconds", str(seconds), "--concurrency", str(users),
         "--client", client],
        check=False, capture_output=True, text=True,
        timeout=seconds * 3 + (900 if wrap else 60))
    if proc.returncode != 0:
        raise SystemExit(f"bare_client.py failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = result["device_days"] / result["seconds"] if result["seconds"] > 0 else 0.0
    return rate, result["device_days"], result["errors"], result["cpu_s"]


def cpu_needed(rate: float, fleet_busy: float) -> tuple[float, float]:
    """CPU ms per device-day that the fleet (busy ``fleet_busy`` of a core, as measured)
    and the server (one process, at most all of a core) may spend for ``rate``
    device-days/s: each is one thread, so its rate is at most its share of a core over
    its CPU per device-day."""
    return 1000 * fleet_busy / rate, 1000 / rate


# -- (d) idle RSS ---------------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc/self/status")


cpu_s = tree_cpu_s  # the server's CPU seconds so far (other benches import it from here)


async def idle_devices(n: int, work: Path) -> float:
    """RSS KiB per device for ``n`` models + agents parked on the virtual clock."""
    spec = FleetSpec(devices=n, days=30, seed=4)
    clock = VirtualClock()
    # This coroutine stays a busy participant, so time never moves: agents stay parked.
    clock.register()
    endpoint = _Endpoint("https://127.0.0.1:9/", None, "localhost", None)
    # Everything shared (profiles, plans, imports, the fleet object) is made first.
    fleet = Fleet(spec, Shard(), work, clock)
    gc.collect()
    before = rss_kib()
    fleet.build(endpoint, lambda _: "unused-key")
    for i in range(n):
        fleet.start_agent(i)
    for _ in range(10_000):
        if clock.parked >= n:
            break
        await asyncio.sleep(0)
    if clock.parked < n:
        raise SystemExit(f"only {clock.parked} of {n} agents parked")
    gc.collect()
    per_device = (rss_kib() - before) / n
    for task in fleet.tasks:
        task.cancel()
    await asyncio.gather(*fleet.tasks, return_exceptions=True)
    return per_device


def idle_rss_subprocess(n: int, loop: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--idle-only", str(n), "--loop", loop],
                         cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=32,
                    help="fleet connections at once, and Locust users")
    ap.add_argument("--locust-seconds", type=int, default=15, help="per Locust run")
    ap.add_argument("--openssl-seconds", type=int, default=5, help="per openssl run")
    ap.add_argument("--repeats", type=int, default=4,
                    help="Locust and openssl rounds, half before the fleet and half after; "
                         "their medians are quoted")
    ap.add_argument("--idle-devices", type=int, default=10_000)
    ap.add_argument("--loop", choices=LOOP_NAMES, default="auto",
                    help="the fleet's event loop, as `fleet --loop` (default auto: uvloop "
                         "when installed)")
    ap.add_argument("--baseline-payloads", choices=("fleet", "fixture"), default="fleet",
                    help="what Locust and the bare clients upload: the fleet's own payloads "
                         "(default: those of a small fleet of --days, run first) or the "
                         "fixture's one sample")
    ap.add_argument("--idle-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.loop = resolve(args.loop)
    if args.idle_only:
        with tempfile.TemporaryDirectory(dir=tmp_base()) as idle_dir:
            print(run_on_loop(idle_devices(args.idle_only, Path(idle_dir)), args.loop))
        return 0
    with served() as (tmp, state, proc, port):
        work = tmp / "fleet"
        # The same fleet for one day (other serials, so it registers too): what the
        # one-time set-up plus a day costs, to split the 30-day run into set-up and
        # steady state. Locust's device-days below are steady state only.
        # Warm-up (not measured): imports and first-use costs in this process would
        # otherwise land on whichever fleet runs first. It is also the small fleet whose
        # payloads the baselines send (see the module's docstring).
        fleet_run(fleet_target(port, state, SAMPLE_FLEET_DEVICES), tmp / "warm-up",
                  SAMPLE_FLEET_DEVICES, args.days, args.concurrency, seed=10, loop=args.loop)
        samples, sample_sizes = (
            fleet_payloads(state, tmp / "baseline-payloads.json")
            if args.baseline_payloads == "fleet" else (SAMPLE, [SAMPLE.stat().st_size]))
        # The machine is shared and noisy: the baselines are taken several times,
        # before and after the fleet and between each other, and their medians used.
        handshake_runs: list[HandshakeRun] = [openssl_run(port, args.openssl_seconds, proc.pid)]
        target = fleet_target(port, state, args.devices)
        t0, one_day_cpu0 = time.perf_counter(), time.process_time()
        one_day = tmp / "one-day"
        fleet_run(target, one_day, args.devices, 1, args.concurrency, seed=9,
                  loop=args.loop)
        one_day_s = time.perf_counter() - t0
        one_day_cpu = time.process_time() - one_day_cpu0
        # Locust drives the devices the one-day fleet registered. Its rounds bracket
        # the 30-day fleet evenly, each followed by openssl.
        locust_runs: dict[str, list[Baseline]] = {user: [] for user in CLIENTS}
        # (c'): s_time making a device's handshake (one of the devices just registered).
        first = json.loads(devices_file(one_day).read_text())[0]
        device_files = (Path(first["cert"]), Path(first["key"]), state / "pki" / "bundle.pem")
        device_handshake_runs: list[HandshakeRun] = []
        # The server's CPU seconds and the device-days it served, per client.
        server_use: dict[str, list[float]] = {
            user: [0.0, 0.0] for user in ("fleet", *CLIENTS)}

        def baseline_round(run: int) -> None:
            for user in CLIENTS:
                before_cpu = cpu_s(proc.pid)
                result = (bare_run(port, state, one_day, args.concurrency,
                                   args.locust_seconds, user, samples)
                          if user in (BARE, OWN) else
                          locust_run(port, state, one_day, args.concurrency,
                                     args.locust_seconds, f"{user}-{run}", user,
                                     samples=samples))
                server_use[user][0] += cpu_s(proc.pid) - before_cpu
                server_use[user][1] += result[1] + result[2]
                locust_runs[user].append(result)
            handshake_runs.append(openssl_run(port, args.openssl_seconds, proc.pid))
            device_handshake_runs.append(openssl_run(port, args.openssl_seconds, proc.pid,
                                                     device_files))

        before = max(1, args.repeats // 2)
        for run in range(before):
            baseline_round(run)
        target = fleet_target(port, state, args.devices)
        t0 = time.perf_counter()
        before_cpu, fleet_cpu0 = cpu_s(proc.pid), time.process_time()
        fleet_rate, totals, fleet_ok = fleet_run(target, work, args.devices, args.days,
                                                 args.concurrency, loop=args.loop)
        fleet_s = time.perf_counter() - t0
        fleet_cpu = time.process_time() - fleet_cpu0
        server_use["fleet"] = [cpu_s(proc.pid) - before_cpu,
                               float(args.devices * args.days)]
        server_busy = server_use["fleet"][0] / fleet_s
        # Only meaningful when the run is long beside its set-up.
        steady_rate: float | None = (
            (args.devices * (args.days - 1)) / (fleet_s - one_day_s)
            if args.days >= 5 and fleet_s > 2 * one_day_s else None)
        steady_ms: float | None = (
            round(1000 * (fleet_cpu - one_day_cpu) / (args.devices * (args.days - 1)), 2)
            if steady_rate else None)
        for run in range(before, args.repeats):
            baseline_round(run)
    kib = idle_rss_subprocess(args.idle_devices, args.loop)
    locust_rate = {u: statistics.median(r[0] for r in runs) for u, runs in locust_runs.items()}
    handshakes = statistics.median(h.per_s for h in handshake_runs)
    device_handshakes = statistics.median(h.per_s for h in device_handshake_runs)
    device_hs_client_ms = statistics.median(h.client_cpu_ms for h in device_handshake_runs)
    device_hs_server_ms = statistics.median(h.server_cpu_ms or 0.0
                                            for h in device_handshake_runs)
    openssl_client_ms = statistics.median(h.client_cpu_ms for h in handshake_runs)
    openssl_server_ms = statistics.median(h.server_cpu_ms or 0.0 for h in handshake_runs)
    openssl_server_busy = statistics.median(h.server_busy or 0.0 for h in handshake_runs)
    device_days = args.devices * args.days

    def server_ms(user: str) -> float | None:
        cpu, days = server_use[user]
        return round(1000 * cpu / days, 2) if days else None

    print(f"(a)  fleet:  {args.devices} devices x {args.days} days = {device_days} "
          f"device-days in {fleet_s:.1f} s (incl. set-up): {fleet_rate:.1f} device-days/s; "
          f"uploads stored {totals['uploads_stored']}, action polls {totals['action_polls']}, "
          f"firmware checks {totals['firmware_checks']}, retries {totals['send_failures']}, "
          f"expectations {'ok' if fleet_ok else 'FAILED'}; event loop {args.loop}")
    print(f"     fleet process CPU {1000 * fleet_cpu / device_days:.2f} ms per device-day "
          f"({fleet_cpu / fleet_s:.0%} of a core); the server's process "
          f"{server_ms('fleet')} ms per device-day, busy {server_busy:.0%} of a core "
          "meanwhile")
    steady_text = f"{steady_rate:.1f} device-days/s" if steady_rate else "n/a (run too short)"
    print(f"     steady state (days 2..{args.days}, set-up and registration excluded by a "
          f"same-run 1-day fleet of {one_day_s:.1f} s): {steady_text}, the fleet process "
          f"{steady_ms} ms CPU per device-day")
    def client_ms(user: str) -> float | None:
        """The client process's CPU per device-day, median of its runs."""
        runs = [1000 * r[3] / r[1] for r in locust_runs[user] if r[1]]
        return round(statistics.median(runs), 2) if runs else None

    fleet_ms = round(1000 * fleet_cpu / device_days, 2)
    for label, user, name in (("(b) ", "HttpUser", "locust HttpUser"),
                              ("(b')", "FastHttpUser", "locust FastHttpUser"),
                              ("(e) ", BARE, "bare aiohttp on uvloop (bare_client.py)"),
                              ("(e')", OWN, "the device's transport alone on uvloop "
                                            "(bare_client.py --client transport)")):
        runs = locust_runs[user]
        print(f"{label} {name}: median {locust_rate[user]:.1f} device-days/s of "
              f"{len(runs)} runs ({', '.join(f'{r[0]:.1f}' for r in runs)}, the first "
              f"{before} before the fleet; "
              f"{sum(r[1] for r in runs)} device-days, {sum(r[2] for r in runs)} errors, "
              f"{args.concurrency} at once, {args.locust_seconds} s each); its process "
              f"{client_ms(user)} ms CPU per device-day, the server's {server_ms(user)}")
    sizes_kb = sorted(n / 1000 for n in sample_sizes)
    whose = "the fleet" if args.baseline_payloads == "fleet" else "the fixture"
    print(f"     (b)-(e') uploaded {whose}'s payloads: {len(sizes_kb)} device-data.xml"
          + (f" of a {SAMPLE_FLEET_DEVICES}-device, {args.days}-day fleet, median "
             f"{statistics.median(sizes_kb):.1f} KB ({sizes_kb[0]:.1f}-{sizes_kb[-1]:.1f})"
             if len(sizes_kb) > 1 else f", {sizes_kb[0]:.1f} KB"))
    print(f"(c)  openssl s_time -new: median {handshakes:.1f} handshakes/s of "
          f"{len(handshake_runs)} runs ({', '.join(f'{h.per_s:.1f}' for h in handshake_runs)}; "
          "same server, same port)")
    print(f"     one connection at a time: openssl {openssl_client_ms:.2f} ms CPU per "
          f"handshake, the server {openssl_server_ms:.2f} ms (no client certificate), "
          f"busy {openssl_server_busy:.0%} of a core meanwhile: the rate is set by the two "
          "in turn, not by the server's capacity")
    print(f"(c') the same with a device's handshake (its client certificate, the server's "
          f"chain verified: -cert -key -CAfile -verify): median {device_handshakes:.1f} "
          f"handshakes/s of {len(device_handshake_runs)} runs "
          f"({', '.join(f'{h.per_s:.1f}' for h in device_handshake_runs)}); openssl "
          f"{device_hs_client_ms:.2f} ms, the server {device_hs_server_ms:.2f} ms per handshake")
    print(f"(d)  idle devices: {kib:.1f} KiB RSS per device ({args.idle_devices} parked)")
    print("client CPU per device-day (ms; a rate is capped at 1000 / this on one core; "
          "the baselines' from their first device-day to their last): "
          f"fleet {fleet_ms} (steady state {steady_ms}), locust FastHttpUser "
          f"{client_ms('FastHttpUser')}, locust HttpUser {client_ms('HttpUser')}, bare "
          f"aiohttp {client_ms(BARE)} (a library client on the fleet's loop), the device's "
          f"transport alone {client_ms(OWN)}")
    own_ms = client_ms(OWN)
    fleet_day_ms = steady_ms if steady_ms is not None else fleet_ms
    agents_ms = round(fleet_day_ms - own_ms, 2) if own_ms is not None else None
    print(f"     the agents' own work (the fleet{' in steady state' if steady_ms else ''} less "
          f"its transport alone): {agents_ms} ms per device-day (model, payload, outbox, "
          "journal, the agent's logic)")

    def cores_busy(rate: float, client: float | None, server: float | None) -> float | None:
        """Cores the client and the server kept busy together: rate x their CPU per
        device-day. Each is one thread, so 2 is the most on this machine; what falls
        short is time one of them waited for the other."""
        return round(rate * (client + server) / 1000, 2) if client and server else None

    fleet_cores = cores_busy(fleet_rate, fleet_ms, server_ms("fleet"))
    fast_cores = cores_busy(locust_rate["FastHttpUser"], client_ms("FastHttpUser"),
                            server_ms("FastHttpUser"))
    print(f"cores kept busy by client and server together: fleet {fleet_cores}, locust "
          f"FastHttpUser {fast_cores} (of {os.cpu_count()}; a rate is about this over "
          "the two's CPU per device-day)")

    def ratio(a: float | None, b: float) -> float | None:
        return round(a / b, 3) if a and b else None

    r_http = ratio(fleet_rate, locust_rate["HttpUser"])
    r_fast = ratio(fleet_rate, locust_rate["FastHttpUser"])
    r_openssl = ratio(fleet_rate, handshakes)
    goals = (
        ("fleet / locust FastHttpUser", r_fast, ">=", 1.0, "ratio_vs_locust_fasthttpuser"),
        ("fleet / openssl s_time -new", r_openssl, ">=", 0.65, "ratio_vs_openssl"),
        ("idle RSS per device, KiB", round(kib, 1), "<=", 16.0, "kib_per_idle_device"),
        ("fleet / locust HttpUser", r_http, ">=", 1.0, "ratio_vs_locust"),
    )
    met: dict[str, bool] = {}
    print("goals, same run:")
    for name, value, op, goal, key in goals:
        ok = value is not None and (value >= goal if op == ">=" else value <= goal)
        met[key] = ok
        print(f"     {name:<29} {value!s:>7}   goal {op} {goal:<5} {'met' if ok else 'NOT met'}")
    print(f"     (fleet / openssl with a device's handshake, (c'), beside the goal: "
          f"{ratio(fleet_rate, device_handshakes)})")
    if steady_rate:
        print(f"     steady state: fleet/locust-FastHttpUser "
              f"{ratio(steady_rate, locust_rate['FastHttpUser'])}, fleet/openssl "
              f"{ratio(steady_rate, handshakes)}, fleet/locust-HttpUser "
              f"{ratio(steady_rate, locust_rate['HttpUser'])}")
    if server_busy > 0.9:
        print(f"     note: the server was busy {server_busy:.0%} of a core while the fleet "
              "ran: it may have set the fleet's rate")
    fleet_busy = fleet_cpu / fleet_s
    targets = (("fleet >= FastHttpUser", "fasthttpuser", locust_rate["FastHttpUser"]),
               ("fleet >= 0.65 x openssl", "openssl", 0.65 * handshakes))
    needs = {key: cpu_needed(goal_rate, fleet_busy) for _, key, goal_rate in targets}
    print("what a goal's rate needs, from this run's figures (each process is one thread: "
          "at most one core):")
    for name, key, goal_rate in targets:
        fleet_need, server_need = needs[key]
        print(f"     {name} ({goal_rate:.1f}/s): the fleet at <= {fleet_need:.2f} ms CPU per "
              f"device-day at its {fleet_busy:.0%} of a core (now {fleet_ms}), the server at "
              f"<= {server_need:.2f} ms per fleet device-day at all of a core (now "
              f"{server_ms('fleet')})")
    print(json.dumps({
        "device_days_per_s": round(fleet_rate, 1),
        "locust_httpuser_device_days_per_s": round(locust_rate["HttpUser"], 1),
        "locust_fasthttpuser_device_days_per_s": round(locust_rate["FastHttpUser"], 1),
        "openssl_handshakes_per_s": round(handshakes, 1),
        "openssl_device_handshakes_per_s": round(device_handshakes, 1),
        "ratio_vs_openssl_device_handshake": ratio(fleet_rate, device_handshakes),
        "openssl_device_handshake_client_cpu_ms": round(device_hs_client_ms, 3),
        "openssl_device_handshake_server_cpu_ms": round(device_hs_server_ms, 3),
        "openssl_client_cpu_ms_per_handshake": round(openssl_client_ms, 3),
        "openssl_server_cpu_ms_per_handshake": round(openssl_server_ms, 3),
        "server_busy_fraction_of_core_during_openssl": round(openssl_server_busy, 3),
        "ratio_vs_locust_fasthttpuser": r_fast,
        "ratio_vs_openssl": r_openssl,
        "ratio_vs_locust": r_http,
        "kib_per_idle_device": round(kib, 1),
        "goal_ratio_vs_locust_fasthttpuser_ge_1_met": met["ratio_vs_locust_fasthttpuser"],
        "goal_ratio_vs_openssl_ge_0_65_met": met["ratio_vs_openssl"],
        "goal_kib_per_idle_device_le_16_met": met["kib_per_idle_device"],
        "steady_device_days_per_s": round(steady_rate, 1) if steady_rate else None,
        "steady_ratio_vs_locust": ratio(steady_rate, locust_rate["HttpUser"]),
        "steady_ratio_vs_locust_fasthttpuser": ratio(steady_rate,
                                                     locust_rate["FastHttpUser"]),
        "steady_ratio_vs_openssl": ratio(steady_rate, handshakes),
        "bare_aiohttp_device_days_per_s": round(locust_rate[BARE], 1),
        "fleet_cpu_ms_per_device_day": fleet_ms,
        "fleet_steady_cpu_ms_per_device_day": steady_ms,
        "locust_fasthttpuser_cpu_ms_per_device_day": client_ms("FastHttpUser"),
        "locust_httpuser_cpu_ms_per_device_day": client_ms("HttpUser"),
        "bare_aiohttp_cpu_ms_per_device_day": client_ms(BARE),
        "transport_alone_device_days_per_s": round(locust_rate[OWN], 1),
        "transport_alone_cpu_ms_per_device_day": own_ms,
        "agents_own_work_cpu_ms_per_device_day": agents_ms,
        "server_cpu_ms_per_device_day_transport_alone": server_ms(OWN),
        "server_cpu_ms_per_device_day_bare_aiohttp": server_ms(BARE),
        "server_cpu_ms_per_device_day_fleet": server_ms("fleet"),
        "server_cpu_ms_per_device_day_locust_fasthttpuser": server_ms("FastHttpUser"),
        "server_cpu_ms_per_device_day_locust_httpuser": server_ms("HttpUser"),
        "server_busy_fraction_of_core_during_fleet": round(server_busy, 3),
        "fleet_busy_fraction_of_core": round(fleet_busy, 3),
        "cores_busy_fleet_and_server": fleet_cores,
        "cores_busy_locust_fasthttpuser_and_server": fast_cores,
        **{f"goal_{key}_needs_fleet_cpu_ms_per_device_day": round(need[0], 2)
           for key, need in needs.items()},
        **{f"goal_{key}_needs_server_cpu_ms_per_device_day": round(need[1], 2)
           for key, need in needs.items()},
        "baseline_payloads": args.baseline_payloads,
        "baseline_payload_xml_kb_median": round(statistics.median(sample_sizes) / 1000, 2),
        "fleet_wall_s": round(fleet_s, 1),
        "fleet_ok": fleet_ok,
        "fleet_loop": args.loop,
    }))
    return 0 if fleet_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
