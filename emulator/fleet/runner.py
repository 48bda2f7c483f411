"""Many emulated printers, each with its real agent, on one virtual clock.

Theory of operation
-------------------
Every device of the shard gets an :class:`~emulator.model.device.EmulatedDevice` and a
:class:`~emulator.fleet.fleet_agent.FleetAgent` (its own key, certificate and data
directory under ``<work_dir>/devices/<serial>``; real TLS to the server). One *office*
task drives the printing for the whole shard: a heap of (instant, device) holds each
device's next end of office hours, device-local; at that instant it applies the day
(``run_day``). The first evening also boots the device's agent, so the first upload
(the next local morning, in the upload window) carries a day of use, and the D-th
upload follows the D-th day. With ``spec.actions`` the office task also has the server
issue that evening's remote actions to the device (derived from seed, index and day;
none on the first evening, before registration); the agent polls them with the next
morning's upload and answers each one. An agent task ends when its device has built D
daily payloads and delivered them all; at a deadline (a day after the last evening, plus
a grace day) the office task stops whoever is still retrying, and the report says so.

Time: the office task and every running agent are participants of the
:class:`~emulator.clock.VirtualClock`; the clock jumps only when all of them sleep on
it. Waiting for a connection slot (``concurrency``; a device holds one from building its
payload to the end of the sync that sends it, see ``fleet_agent.py``) or for the server
is not sleeping, so a payload is built and uploaded at its virtual upload time however
long it takes for real.

With no ``target`` the runner starts an embedded reference server in the same event
loop (on the same virtual clock), mints one single-use registration key per device
through its Python API, and at the end compares what each agent built with what the
server stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import heapq
import logging
import random
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from device_direct.clock import Clock, SystemClock
from device_direct.config import (
    AgentConfig,
    DeviceConfig,
    ScheduleConfig,
    ServerConfig,
    ServicesConfig,
    TlsLibrary,
)
from device_direct.durable import in_ram, writes_on_loop
from device_direct.tls_bundled import available, preferred
from emulator.clock import VirtualClock
from emulator.errors import EmulatorError
from emulator.fleet.fleet_agent import DeliveryTally, DeviceDone, FleetAgent, SeededBits
from emulator.fleet.identities import DeviceIdentity, fleet_identities
from emulator.fleet.live_stats import DEVICE_STATES, Latency
from emulator.fleet.report import DeviceOutcome, FleetReport, check
from emulator.fleet.spec import FleetSpec, FleetSpecError, Shard, format_actions, format_mix
from emulator.model.device import EmulatedDevice
from emulator.model.profile import Profile, load_profile
from emulator.server.app import ReferenceServer

log = logging.getLogger("emulator.fleet")

WHOLE_FLEET = Shard(1, 1)
GRACE = timedelta(days=1)  # after the last expected upload, for retries to finish
DEFAULT_CONCURRENCY = 32
_ADMIN_BATCH = 10_000  # the admin API mints at most this many keys per call

ACTION_TTL_S = 2 * 86400  # an issued action is polled the next morning; spare a day

# (device-days delivered, device-days of the shard, virtual now) -> None
ProgressFn = Callable[[int, int, datetime], None]
# a live_stats snapshot of the shard -> None (metrics, --stats-csv, a Dask client)
StatsFn = Callable[[dict[str, Any]], None]
# (device id, action type) -> None: has the server queue one action for the device
IssueFn = Callable[[str, str], Awaitable[None]]


class FleetRunError(EmulatorError):
    """The fleet could not run (server unreachable for set-up, keys missing, ...)."""


@dataclass(frozen=True, slots=True)
class ServerTarget:
    """A communication server the fleet does not own.

    ``keys``: one registration key usable by every device, or one per device of the
    whole fleet (device i uses ``keys[i]``). ``admin_token``: mint keys through
    ``/admin/v1`` instead, and read the server's upload counts back for the checks.
    """

    url: str
    ca_bundle: Path | None = None
    server_name: str = ""
    keys: tuple[str, ...] = ()
    admin_token: str | None = None
    firmware_key: str | None = None  # PEM of the server's Ed25519 manifest key

    def __post_init__(self) -> None:
        # ServerConfig checks the URL and the name the same way every agent will.
        ServerConfig(url=self.url, ca_bundle=self.ca_bundle, server_name=self.server_name)
        if not self.keys and self.admin_token is None:
            raise FleetSpecError("server: give registration keys (--registration-key, "
                                 "--key-file) or an admin token (--admin-token) to mint them")
        if any(not k.strip() for k in self.keys):
            raise FleetSpecError("server: a registration key is empty")

    def key_for(self, index: int, devices: int) -> str:
        """The registration key device ``index`` uses."""
        if len(self.keys) == 1:
            return self.keys[0]
        if len(self.keys) < devices:
            raise FleetSpecError(
                f"registration keys: got {len(self.keys)} for a fleet of {devices} devices; "
                "give one key usable by all devices, or one key per device")
        return self.keys[index]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    url: str
    ca_bundle: Path | None
    server_name: str
    firmware_key: str | None  # pinned by every agent: without it no firmware check
    tls_library: TlsLibrary = "system"  # whose OpenSSL the agents' TLS runs on


class Fleet:
    """The devices of one shard: models, agents, and what happened to them."""

    def __init__(self, spec: FleetSpec, shard: Shard, work_dir: Path, clock: Clock, *,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise FleetSpecError(f"concurrency: must be >= 1, got {concurrency}")
        self.spec = spec
        self.shard = shard
        self.work_dir = work_dir
        self.clock = clock
        self.identities = fleet_identities(spec, shard.indices(spec.devices))
        self.models: list[EmulatedDevice] = []
        self.agents: list[FleetAgent] = []
        self.delivered = DeliveryTally()  # the agents keep it: progress reads it
        self.faults = [0] * len(self.identities)
        self.jams = [0] * len(self.identities)
        self.actions_issued = [0] * len(self.identities)
        self.tasks: list[asyncio.Task[None]] = []
        self.task_of: dict[int, asyncio.Task[None]] = {}  # device position -> its agent
        self.gate = asyncio.Semaphore(concurrency)
        self.latency = Latency()
        self._profiles: dict[str, Profile] = {}

    def build(self, endpoint: _Endpoint, key_for: Callable[[DeviceIdentity], str]) -> None:
        """Create every model and agent (nothing runs yet)."""
        devices_dir = self.work_dir / "devices"
        services = ServicesConfig(firmware_public_key=endpoint.firmware_key)
        for ident in self.identities:
            profile = self._profiles.get(ident.profile)
            if profile is None:
                profile = self._profiles[ident.profile] = load_profile(ident.profile)
            model = EmulatedDevice(profile, serial=ident.serial, clock=self.clock,
                                   rng_seed=ident.model_seed, state_dir=None, mac=ident.mac,
                                   fsync=False, time_zone=ident.time_zone)
            config = AgentConfig(
                server=ServerConfig(url=endpoint.url, ca_bundle=endpoint.ca_bundle,
                                    server_name=endpoint.server_name,
                                    registration_key=key_for(ident),
                                    tls_library=endpoint.tls_library),
                device=DeviceConfig(data_dir=devices_dir / ident.serial,
                                    time_zone=ident.time_zone, profile=ident.profile),
                schedule=ScheduleConfig(upload_time=ident.upload_time),
                services=services,
            )
            self.models.append(model)
            self.agents.append(FleetAgent(config, model, clock=self.clock,
                                          rng=random.Random(ident.agent_seed), gate=self.gate,
                                          target=self.spec.days, latency=self.latency,
                                          tally=self.delivered,
                                          upload_rng=SeededBits(
                                              f"upload-ids/{ident.agent_seed}")))

    def start_agent(self, i: int) -> None:
        """Boot device ``i``'s agent as a participant of the clock."""
        clock = self.clock
        if isinstance(clock, VirtualClock):
            clock.register()
        task = asyncio.create_task(self._run_agent(i))
        self.tasks.append(task)
        self.task_of[i] = task

    async def _run_agent(self, i: int) -> None:
        agent = self.agents[i]
        try:
            await agent.run()
        except DeviceDone:
            pass
        except Exception as exc:  # a bug must not take the fleet down: report it
            log.exception("agent of %s crashed", self.identities[i].serial)
            agent.stats.last_error = f"agent crashed: {type(exc).__name__}: {exc}"
        finally:
            if isinstance(self.clock, VirtualClock):
                self.clock.unregister()

    def snapshot(self) -> dict[str, Any]:
        """The shard's live figures now (``live_stats.py``): one pass over its agents."""
        uploads = {"stored": 0, "duplicate": 0, "rejected": 0}
        actions = {"issued": sum(self.actions_issued), "run": 0, "refused": 0}
        errors: Counter[str] = Counter()
        states = dict.fromkeys(DEVICE_STATES, 0)
        retries = delivered = 0
        for n, agent in enumerate(self.agents):
            s = agent.stats
            uploads["stored"] += s.uploads_stored
            uploads["duplicate"] += s.uploads_duplicate
            uploads["rejected"] += s.uploads_rejected
            retries += s.send_failures
            actions["run"] += agent.fleet.actions_run
            actions["refused"] += agent.fleet.actions_refused
            errors.update(agent.fleet.errors)
            delivered += agent.days_delivered
            task = self.task_of.get(n)
            if task is None:
                states["waiting"] += 1  # not booted yet (its first evening is to come)
            elif agent.finished:
                states["finished"] += 1
            elif task.done():
                states["crashed"] += 1  # ended unfinished: crashed, or stopped at the end
            else:
                states["running"] += 1
        return {"device_days": len(self.agents) * self.spec.days, "delivered": delivered,
                "uploads": uploads, "retries": retries, "errors": dict(errors),
                "actions": actions, "devices": states,
                "virtual_time": self.clock.now().timestamp(),
                "latency": self.latency.to_json()}

    def days_delivered(self) -> int:
        """Daily payloads the server has acknowledged, over all devices (progress): the
        agents' tally, which each keeps as its own figure changes, not a pass over them."""
        return self.delivered.total

    def outcomes(self) -> tuple[DeviceOutcome, ...]:
        """One :class:`DeviceOutcome` per device, in global index order."""
        out = []
        for n, (ident, agent) in enumerate(zip(self.identities, self.agents, strict=True)):
            s = agent.stats
            out.append(DeviceOutcome(
                index=ident.index, serial=ident.serial, profile=ident.profile,
                time_zone=ident.time_zone, device_id=agent.identity.device_id,
                payloads_built=s.payloads_built, uploads_stored=s.uploads_stored,
                uploads_duplicate=s.uploads_duplicate, uploads_rejected=s.uploads_rejected,
                send_failures=s.send_failures, registrations=s.registrations,
                bytes_sent=s.bytes_sent,
                actions_issued=self.actions_issued[n],
                actions_run=agent.fleet.actions_run,
                actions_refused=agent.fleet.actions_refused,
                action_polls=agent.fleet.action_polls,
                firmware_checks=agent.fleet.firmware_checks,
                faults=self.faults[n], jams=self.jams[n],
                queued=len(agent.outbox.entries()), finished=agent.finished,
                last_error=s.last_error))
        return tuple(out)


async def _office(fleet: Fleet, clock: VirtualClock, deadline: datetime,
                  issue: IssueFn | None = None) -> None:
    """Apply each device's days at its end of office hours; boot agents on day one;
    have the server issue each evening's actions (``issue``)."""
    spec = fleet.spec
    heap = [(ident.print_at(spec, 0), n, 0) for n, ident in enumerate(fleet.identities)]
    heapq.heapify(heap)
    try:
        while heap:
            at, n, k = heapq.heappop(heap)
            await clock.sleep_until(at)
            ident = fleet.identities[n]
            result = fleet.models[n].run_day(ident.local_day(spec, k))
            fleet.faults[n] += result.faults
            fleet.jams[n] += result.jams
            if k == 0:
                fleet.start_agent(n)
            if issue is not None:
                await _issue_actions(fleet, n, ident.actions_on(spec, k), issue)
            if k + 1 < spec.days:
                heapq.heappush(heap, (ident.print_at(spec, k + 1), n, k + 1))
        await clock.sleep_until(deadline)
        for task in fleet.tasks:
            if not task.done():
                task.cancel()
    finally:
        clock.unregister()


async def _issue_actions(fleet: Fleet, n: int, types: tuple[str, ...], issue: IssueFn
                         ) -> None:
    device_id = fleet.agents[n].identity.device_id
    if device_id is None:  # not registered (yet): the server does not know it
        if types:
            log.info("%s: not registered, %d actions not issued",
                     fleet.identities[n].serial, len(types))
        return
    for kind in types:
        try:
            await issue(device_id, kind)
        except (FleetRunError, ValueError) as exc:
            # The server would not take it (admin API down, device unknown to it): the
            # run goes on; what was not issued is not expected back.
            log.warning("%s: %s not issued: %s", fleet.identities[n].serial, kind, exc)
            continue
        fleet.actions_issued[n] += 1


TICK_S = 0.25  # progress, read from the agents' tally
STATS_EVERY_S = 0.5  # a live snapshot at most this often...
STATS_SHARE = 0.02  # ...and its passes over the agents at most this share of the time


async def _ticker(fleet: Fleet, progress: ProgressFn | None, stats: StatsFn | None,
                  wall: Clock) -> None:
    # Real time, not a participant: it only looks. A live snapshot is one pass over every
    # agent (about 2 us each): every 0.5 s in a shard of a few thousand, less often in a
    # big one, so that the passes never take more than 2% of the shard's time.
    next_stats = wall.monotonic()
    while True:
        if progress is not None:
            progress(fleet.days_delivered(), len(fleet.agents) * fleet.spec.days,
                     fleet.clock.now())
        if stats is not None and wall.monotonic() >= next_stats:
            began = wall.monotonic()
            stats(fleet.snapshot())
            spent = wall.monotonic() - began
            next_stats = began + max(STATS_EVERY_S, spent / STATS_SHARE)
        await wall.sleep(TICK_S)


async def run_fleet(
    spec: FleetSpec,
    work_dir: Path,
    *,
    shard: Shard = WHOLE_FLEET,
    target: ServerTarget | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressFn | None = None,
    wall: Clock | None = None,
    stats: StatsFn | None = None,
    tls_library: TlsLibrary | None = None,
) -> FleetReport:
    """Run one shard of the fleet and return its checked report.

    ``target`` None: an embedded reference server under ``work_dir/server``.
    ``tls_library``: whose OpenSSL the devices' TLS runs on; None: the bundled one
    where it can be used (:func:`device_direct.tls_bundled.preferred`).
    ``stats``: called with a live snapshot twice a second and once at the end.
    With ``work_dir`` on a RAM disk (the default, /dev/shm) the devices' durable writes
    run on the loop: cheaper there than two hand-offs to the storage thread a write.
    """
    with writes_on_loop(in_ram(work_dir)):
        return await _run_fleet(spec, work_dir, shard=shard, target=target,
                                concurrency=concurrency, progress=progress, wall=wall,
                                stats=stats, tls_library=tls_library or preferred())


async def _run_fleet(spec: FleetSpec, work_dir: Path, *, shard: Shard,
                     target: ServerTarget | None, concurrency: int,
                     progress: ProgressFn | None, wall: Clock | None,
                     stats: StatsFn | None, tls_library: TlsLibrary) -> FleetReport:
    wall = wall or SystemClock()
    started = wall.monotonic()
    identities = fleet_identities(spec, shard.indices(spec.devices))
    if not identities:
        raise FleetSpecError(f"shard {shard} of a {spec.devices}-device fleet has no devices")
    first = min(i.print_at(spec, 0) for i in identities)
    last = max(i.print_at(spec, spec.days - 1) for i in identities)
    clock = VirtualClock(first - timedelta(minutes=1))
    fleet = Fleet(spec, shard, work_dir, clock, concurrency=concurrency)
    server: ReferenceServer | None = None
    ticker: asyncio.Task[None] | None = None
    frozen = False  # gc.freeze() held for the run
    try:
        if target is None:
            server = ReferenceServer(work_dir / "server", clock=clock,
                                     rng=random.Random(spec.seed))
            await server.start()
            endpoint = _Endpoint(f"https://127.0.0.1:{server.port}/", server.ca_cert_path,
                                 "localhost", server.firmware_public_key_pem.decode(),
                                 tls_library)
            ttl = (spec.days + 3) * 86400  # keys live on the virtual clock too
            embedded = server
            fleet.build(endpoint, lambda _: embedded.create_registration_key(ttl_s=ttl))

            async def issue_embedded(device_id: str, kind: str) -> None:
                embedded.enqueue_action(device_id, kind, expires_in_s=ACTION_TTL_S)

            issue: IssueFn | None = issue_embedded if spec.actions else None
        else:
            endpoint = _Endpoint(target.url, target.ca_bundle, target.server_name,
                                 target.firmware_key, tls_library)
            keys = target.keys
            if not keys:
                assert target.admin_token is not None
                keys = await mint_keys(target, len(identities))
                by_serial = dict(zip((i.serial for i in identities), keys, strict=True))
                fleet.build(endpoint, lambda ident: by_serial[ident.serial])
            else:
                fleet.build(endpoint, lambda ident: target.key_for(ident.index, spec.devices))
            issue = None
            if spec.actions:
                if target.admin_token is None:
                    raise FleetSpecError("actions: issuing actions on your server needs its "
                                         "admin API (--admin-token-file)")
                issue = functools.partial(issue_action, target)
        if progress is not None or stats is not None:
            ticker = asyncio.create_task(_ticker(fleet, progress, stats, wall))
        clock.register()
        # The models and agents just built live as long as the run: out of the garbage
        # collector's sight (gc.freeze), a full collection walks only what the run's
        # requests allocate, not the whole fleet again (about 0.1 ms per device-day
        # at 1,000 devices). Thawed below, so nothing stays uncollectable afterwards.
        gc.collect()
        gc.freeze()
        frozen = True
        office = asyncio.create_task(
            _office(fleet, clock, last + timedelta(days=1) + GRACE, issue))
        await office
        await asyncio.gather(*fleet.tasks, return_exceptions=True)
        if progress is not None:
            progress(fleet.days_delivered(), len(fleet.agents) * spec.days, clock.now())
        if stats is not None:
            stats(fleet.snapshot())
        if server is not None:
            counts: dict[str, int] | None = {
                d["serial"]: int(d["uploads"]) for d in server.storage.devices()}
        elif target is not None and target.admin_token is not None:
            counts = await server_upload_counts(target)
        else:
            counts = None
    finally:
        if frozen:
            gc.unfreeze()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for task in fleet.tasks:
            task.cancel()
        await asyncio.gather(*fleet.tasks, return_exceptions=True)
        if server is not None:
            await server.stop()
    if counts is not None:
        mine = {i.serial for i in identities}
        counts = {s: c for s, c in counts.items() if s in mine}
    report = FleetReport(
        devices=spec.devices, days=spec.days, seed=spec.seed, mix=format_mix(spec.mix),
        shards=(str(shard),), outcomes=fleet.outcomes(), wall_s=wall.monotonic() - started,
        server_uploads=counts, actions=format_actions(spec.actions), loop=_loop_name(),
        tls=_tls_name(tls_library))
    return check(report, complete_fleet=shard.count == 1)


def _tls_name(library: TlsLibrary) -> str:
    """The devices' TLS library, for the report: ``bundled (OpenSSL 4.0.3 ...)``."""
    version = available() if library == "bundled" else ssl.OPENSSL_VERSION
    return f"{library} ({version})"


def _loop_name() -> str:
    """The running event loop, for the report: uvloop or asyncio."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


# -- admin API of a server the fleet does not own -------------------------------------------


def _admin_ssl(target: ServerTarget) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        cafile=str(target.ca_bundle) if target.ca_bundle is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def admin_url(server_url: str, path: str) -> str:
    """The admin API URL of ``path`` on the server at ``server_url``.

    A server behind a path prefix (``https://host/remote/``) has its admin API under the
    same prefix, as its device API: ``.../remote/admin/v1/...``. A URL that names the
    device API itself (``.../dd/v1``) counts from the prefix before it.
    """
    parts = urlsplit(server_url)
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/dd/v1"):
        prefix = prefix[: -len("/dd/v1")]
    return urlunsplit(("https", parts.netloc, f"{prefix}/admin/v1/{path}", "", ""))


async def _admin_call(target: ServerTarget, method: str, path: str,
                      body: dict[str, Any] | None = None) -> dict[str, Any]:
    config = ServerConfig(url=target.url, ca_bundle=target.ca_bundle,
                          server_name=target.server_name)
    url = admin_url(target.url, path)
    headers = {"Authorization": f"Bearer {target.admin_token}"}
    try:
        async with aiohttp.ClientSession() as session, session.request(
            method, url, json=body, headers=headers, ssl=_admin_ssl(target),
            server_hostname=config.server_name,
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 300 or not isinstance(data, dict):
                raise FleetRunError(f"admin API {method} /admin/v1/{path}: {response.status} "
                                    f"{data!r:.200}")
            return data
    except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
        raise FleetRunError(f"admin API {method} /admin/v1/{path} failed: {exc}") from exc


async def mint_keys(target: ServerTarget, count: int, *, ttl_s: int = 7 * 86400
                    ) -> tuple[str, ...]:
    """Single-use registration keys from the server's admin API (``--admin-token``)."""
    keys: list[str] = []
    while len(keys) < count:
        n = min(_ADMIN_BATCH, count - len(keys))
        data = await _admin_call(target, "POST", "registration-keys",
                                 {"count": n, "ttl_s": ttl_s})
        got = data.get("keys")
        if not isinstance(got, list) or len(got) != n:
            raise FleetRunError(f"admin API returned {got!r:.100} for {n} keys")
        keys.extend(str(k) for k in got)
    return tuple(keys)


async def issue_action(target: ServerTarget, device_id: str, kind: str) -> None:
    """Have the server queue one action for a device, through its admin API."""
    await _admin_call(target, "POST", f"devices/{device_id}/actions",
                      {"type": kind, "expires_in_s": ACTION_TTL_S})


async def server_upload_counts(target: ServerTarget) -> dict[str, int]:
    """serial -> uploads stored, from the server's admin API."""
    data = await _admin_call(target, "GET", "devices")
    devices = data.get("devices")
    if not isinstance(devices, list):
        raise FleetRunError("admin API GET /admin/v1/devices: no 'devices' list")
    return {str(d["serial"]): int(d.get("uploads", 0)) for d in devices}
