"""pytest fixtures for test suites that talk to Device Direct devices.

Install ``device-direct[test]`` and the fixtures are there (entry point ``pytest11``
named ``emulator.pytest_plugin``, so ``-p emulator.pytest_plugin`` and ``pytest_plugins =
["emulator.pytest_plugin"]`` in a root ``conftest.py`` find it already loaded). They
run on pytest-asyncio; use them from ``async def`` tests. No configuration is needed:
an ``async def`` test that asks for a ``dd_*`` fixture is run by pytest-asyncio even in
its default strict mode (the plugin marks it ``asyncio``), and when the project has not
chosen ``asyncio_default_fixture_loop_scope`` the plugin chooses ``function`` (the
default pytest-asyncio announces), so pytest-asyncio has nothing to warn about. A value
the project sets wins. The user's guide is docs/pytest-plugin.md.

``dd_clock``
    A :class:`~emulator.clock.VirtualClock` for the test. The test itself holds time:
    virtual time moves only while the test awaits a ``dd_wait`` helper or calls
    :meth:`DeviceDirectWaiter.run_for` (then it jumps from one wake-up to the next,
    as fast as the real network allows).
``dd_server``
    The reference communication server, started on 127.0.0.1 (a free port) over TLS,
    on ``dd_clock``. Its Python API: ``enqueue_action``, ``publish_firmware``,
    ``set_fault``, ``storage.uploads(device_id)``...
``dd_device`` / ``dd_make_device``
    An emulated printer (:class:`~emulator.model.device.EmulatedDevice`) with its real
    ``device_direct`` agent running, wired to ``dd_server`` (own key, certificate and
    data directory). ``dd_make_device(profile=..., serial=...)`` makes more.
    ``await device.start_web()`` serves its web pages (docs/web.md) and returns the URL.
``dd_wait``
    Helpers that wait for events: ``await dd_wait.uploads(n, device)`` (n uploads
    stored), ``await dd_wait.action(action_id)`` (its result reported),
    ``await dd_wait.registered(device)``, ``await dd_wait.until(predicate)``.
``dd_fleet`` / ``dd_scenario``
    ``await dd_fleet(devices=20, days=7)``: a fleet run on its own virtual clock and
    embedded server, returning the checked :class:`~emulator.fleet.report.FleetReport`;
    ``await dd_scenario("fixtures/scenarios/x.toml")``: a fault scenario's report.

A helper that times out raises ``AssertionError`` saying what it waited for and what
it saw, so a failing test reads like a test failure, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from device_direct.agent import Agent
from device_direct.config import (
    AgentConfig,
    DeviceConfig,
    RetryConfig,
    ScheduleConfig,
    ServerConfig,
    ServicesConfig,
)
from emulator.clock import VirtualClock
from emulator.fleet.report import FleetReport
from emulator.fleet.scenario_report import ScenarioReport
from emulator.model.device import EmulatedDevice
from emulator.model.profile import load_profile
from emulator.network_cut import NetworkLink, cut_network
from emulator.server.app import ReferenceServer

if TYPE_CHECKING:
    from emulator.web import PrinterWebServer

try:
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - the async fixtures need it; the rest still loads
    _fixture = pytest.fixture

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(fn: _F) -> _F:
    return cast(_F, _fixture(fn))


DEFAULT_TIMEOUT_S = 30.0  # real seconds a wait helper allows before it fails the test
_POLL_S = 0.005


class DeviceUnderTest:
    """An emulated printer and its running agent, registered with ``server``."""

    def __init__(self, model: EmulatedDevice, agent: Agent, server: ReferenceServer,
                 clock: VirtualClock) -> None:
        self.model = model
        self.agent = agent
        self.server = server
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.web: PrinterWebServer | None = None  # see start_web()

    @property
    def serial(self) -> str:
        return self.model.serial

    @property
    def device_id(self) -> str | None:
        """The server's id for this device, once registered."""
        return self.agent.identity.device_id

    def start(self) -> None:
        """Boot the agent (a participant of the clock)."""
        if self._task is not None:
            raise RuntimeError(f"the agent of {self.serial} is already running")
        self.clock.register()

        async def run() -> None:
            try:
                await self.agent.run()
            finally:
                self.clock.unregister()

        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        """Stop the agent (as a process exit would)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def send_now(self) -> None:
        """Press "send now": a sync at once (register, upload, actions, firmware)."""
        self.agent.send_now()

    def uploads(self) -> list[dict[str, Any]]:
        """What the server stored for this device, in sequence order."""
        return self.server.storage.uploads(self.device_id) if self.device_id else []

    def enqueue_action(self, type: str, params: dict[str, Any] | None = None) -> str:
        """Queue a server action for this device (it must be registered)."""
        if self.device_id is None:
            raise AssertionError(f"{self.serial} is not registered yet: await "
                                 "dd_wait.registered(device) first")
        return self.server.enqueue_action(self.device_id, type, params)

    async def start_web(self, admin_password: str | None = None) -> str:
        """Start the printer's web pages (``emulator.web``) on 127.0.0.1; their base URL.

        The admin password defaults to the serial number; stopped with the device."""
        from emulator.web import PrinterWebServer

        if self.web is None:
            self.web = PrinterWebServer(_WebHost(self), admin_password=admin_password)
            await self.web.start()
        return self.web.base_url

    def __repr__(self) -> str:
        return f"<DeviceUnderTest {self.serial} ({self.model.profile.name})>"


class _WebHost:
    """A :class:`DeviceUnderTest` as the web pages see a device (no SNMP, no port 9100)."""

    snmp = None
    jetdirect = None

    def __init__(self, dut: DeviceUnderTest) -> None:
        self._dut = dut
        self.device: EmulatedDevice | None = dut.model
        self.clock = dut.clock
        self._link = NetworkLink()

    @property
    def agent(self) -> Agent | None:
        return self._dut.agent

    @property
    def state_dir(self) -> Path:
        return Path(self._dut.agent.data_dir).parent

    async def stop_agent(self) -> None:
        await self._dut.stop()

    async def restart_agent(self) -> None:
        await self._dut.stop()
        self._dut.start()

    async def cut_network(self, seconds: float) -> None:
        """No SNMP or port 9100 here: the cut stops the agent, then restarts it."""
        await cut_network(self._link, self.clock, seconds, jetdirect=None,
                          stop_agent=self.stop_agent, restart_agent=self.restart_agent)

    async def power_off(self) -> None:
        await self._dut.stop()
        await self._dut.model.power_off()

    async def power_on(self) -> None:
        await self._dut.model.power_on()
        self._dut.start()


class DeviceDirectWaiter:
    """Wait helpers: virtual time runs free while one of them waits."""

    def __init__(self, clock: VirtualClock, server: ReferenceServer | None = None) -> None:
        self.clock = clock
        self.server = server

    @contextlib.contextmanager
    def _time_runs(self) -> Iterator[None]:
        # The test is a participant that never parks: while it waits here it steps
        # aside, so the clock jumps whenever every device sleeps.
        self.clock.unregister()
        try:
            yield
        finally:
            self.clock.register()

    async def until(self, predicate: Callable[[], Any], *, what: str = "a condition",
                    timeout: float = DEFAULT_TIMEOUT_S,
                    seen: Callable[[], str] | None = None) -> Any:
        """Wait (virtual time running) until ``predicate()`` is truthy; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._time_runs():
            while True:
                value = predicate()
                if value:
                    return value
                if loop.time() >= deadline:
                    now = self.clock.now().isoformat()
                    extra = f"; saw {seen()}" if seen is not None else ""
                    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                         f"(virtual time {now}){extra}")
                await asyncio.sleep(_POLL_S)

    async def registered(self, device: DeviceUnderTest, *,
                         timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """Wait until ``device`` registered; returns its device id."""
        result = await self.until(lambda: device.device_id, timeout=timeout,
                                  what=f"{device.serial} to register",
                                  seen=lambda: f"last error {device.agent.stats.last_error!r}")
        return str(result)

    async def uploads(self, n: int, device: DeviceUnderTest, *,
                      timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until the server stored ``n`` uploads of ``device``; returns them all."""
        def enough() -> list[dict[str, Any]] | None:
            ups = device.uploads()
            return ups if len(ups) >= n else None

        result = await self.until(enough, timeout=timeout, what=f"{n} uploads of "
                                  f"{device.serial} stored",
                                  seen=lambda: f"{len(device.uploads())} stored, last error "
                                               f"{device.agent.stats.last_error!r}")
        return list(result)

    async def action(self, action_id: str, *, status: str | None = None,
                     timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the device reported action ``action_id``; returns the action row
        (``result_status``, ``result_detail``). With ``status``, it must be that one."""
        server = self._server()

        def reported() -> dict[str, Any] | None:
            row = server.storage.action(action_id)
            if row is None:
                raise AssertionError(f"no action {action_id!r} on the server")
            return row if row["result_status"] else None

        row: dict[str, Any] = await self.until(reported, timeout=timeout,
                                               what=f"action {action_id} to be reported")
        if status is not None and row["result_status"] != status:
            raise AssertionError(f"action {action_id} ({row['type']}) reported "
                                 f"{row['result_status']!r}, expected {status!r}: "
                                 f"{row['result_detail']}")
        return row

    async def run_for(self, delta: timedelta, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Let ``delta`` of virtual time pass (devices do whatever falls due)."""
        target = self.clock.now() + delta
        marker = asyncio.get_running_loop().create_future()
        self.clock.register()  # a sleeper that wakes at the target

        async def sleeper() -> None:
            try:
                await self.clock.sleep_until(target)
                marker.set_result(None)
            finally:
                self.clock.unregister()

        task = asyncio.create_task(sleeper())
        try:
            await self.until(marker.done, what=f"virtual time to reach {target.isoformat()}",
                             timeout=timeout)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _server(self) -> ReferenceServer:
        if self.server is None:
            raise AssertionError("this helper needs the dd_server fixture")
        return self.server


# -- making the fixtures work with no configuration -----------------------------------------

_LOOP_SCOPE_INI = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-asyncio reads it: an unset fixture loop scope becomes ``function``."""
    try:
        chosen = config.getini(_LOOP_SCOPE_INI)
    except ValueError:  # pytest-asyncio is not installed: nothing to configure
        return
    if chosen:
        return
    # pytest has no public way for a plugin to give another plugin's ini option a value;
    # getini() has just cached "unset" here, and pytest-asyncio reads the same cache.
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        cache[_LOOP_SCOPE_INI] = "function"


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object
                              ) -> Iterator[Any]:
    """Mark ``async def`` tests that use a ``dd_*`` fixture as asyncio tests.

    ``trylast``: this wrapper sits inside pytest-asyncio's, so the mark is there when
    pytest-asyncio turns marked coroutine functions into its own test items."""
    result = yield
    items: list[Any] = (result if isinstance(result, list)
                        else [result] if result is not None else [])
    for item in items:
        if (isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.obj)
                and any(f.startswith("dd_") for f in item.fixturenames)
                and item.get_closest_marker("asyncio") is None):
            item.add_marker(pytest.mark.asyncio)
    return result


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def dd_clock() -> Iterator[VirtualClock]:
    """A virtual clock; the test is its participant (time moves only in dd_wait)."""
    clock = VirtualClock()
    clock.register()
    yield clock


@_async_fixture
async def dd_server(tmp_path: Path, dd_clock: VirtualClock) -> AsyncIterator[ReferenceServer]:
    """The reference communication server on 127.0.0.1 (free port), TLS, virtual clock."""
    server = ReferenceServer(tmp_path / "dd-server", clock=dd_clock, rng=random.Random(0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


MakeDevice = Callable[..., Awaitable[DeviceUnderTest]]


@_async_fixture
async def dd_make_device(tmp_path: Path, dd_server: ReferenceServer, dd_clock: VirtualClock
                         ) -> AsyncIterator[MakeDevice]:
    """``await dd_make_device(profile="office-mono", serial="X1", start=True,
    upload_time="02:00", time_zone="UTC", seed=None, **config_sections)``: a new printer
    with its agent (started unless ``start=False``). ``config_sections`` replace parts
    of the agent's :class:`~device_direct.config.AgentConfig` (``services=...``)."""
    made: list[DeviceUnderTest] = []

    async def make(profile: str = "office-color", serial: str | None = None, *,
                   start: bool = True, upload_time: str = "02:00", time_zone: str = "UTC",
                   seed: int | None = None, **sections: Any) -> DeviceUnderTest:
        serial = serial or f"PYT{len(made) + 1:07d}"
        if seed is None:
            # Per device: the agent draws its Upload-Ids from this seed, and two devices
            # with the same ids would collide on the server (409).
            seed = zlib.crc32(serial.encode())
        # the printer stands where its agent does: working hours, holidays, faults and
        # supply swaps in the agent's time zone
        model = EmulatedDevice(load_profile(profile), serial=serial, clock=dd_clock,
                               rng_seed=seed, state_dir=None, fsync=False,
                               time_zone=time_zone)
        hh, mm = (int(x) for x in upload_time.split(":"))
        config = AgentConfig(
            server=ServerConfig(url=f"https://127.0.0.1:{dd_server.port}/",
                                ca_bundle=dd_server.ca_cert_path, server_name="localhost",
                                registration_key=dd_server.create_registration_key(
                                    ttl_s=365 * 86400)),
            device=DeviceConfig(data_dir=tmp_path / "dd-devices" / serial,
                                time_zone=time_zone, profile=profile),
            schedule=ScheduleConfig(upload_time=time(hh, mm)),
            services=ServicesConfig(
                firmware_public_key=dd_server.firmware_public_key_pem.decode()),
            retry=RetryConfig(base_s=5.0, cap_s=600.0))
        if sections:
            config = replace(config, **sections)
        agent = Agent(config, model, clock=dd_clock, rng=random.Random(seed))
        device = DeviceUnderTest(model, agent, dd_server, dd_clock)
        made.append(device)
        if start:
            device.start()
        return device

    try:
        yield make
    finally:
        for device in made:
            if device.web is not None:
                await device.web.stop()
            await device.stop()


@_async_fixture
async def dd_device(dd_make_device: MakeDevice) -> DeviceUnderTest:
    """One office colour MFP with its agent running, registered on first sync."""
    return await dd_make_device()


@pytest.fixture
def dd_wait(dd_clock: VirtualClock, request: pytest.FixtureRequest) -> DeviceDirectWaiter:
    """Wait helpers (uploads stored, action reported, registered, any condition)."""
    server = (request.getfixturevalue("dd_server")
              if "dd_server" in request.fixturenames else None)
    return DeviceDirectWaiter(dd_clock, server)


@pytest.fixture
def dd_fleet(tmp_path: Path) -> Callable[..., Awaitable[FleetReport]]:
    """``await dd_fleet(devices=10, days=3, seed=1, **FleetSpec fields)``: a fleet run
    on its own virtual clock and embedded server; the checked report."""
    from emulator.fleet.runner import run_fleet
    from emulator.fleet.spec import FleetSpec

    runs = [0]

    async def run(devices: int = 10, days: int = 3, **spec: Any) -> FleetReport:
        runs[0] += 1
        work = tmp_path / f"dd-fleet-{runs[0]}"
        work.mkdir()
        return await run_fleet(FleetSpec(devices=devices, days=days, **spec), work)

    return run


@pytest.fixture
def dd_scenario(tmp_path: Path) -> Callable[..., Awaitable[ScenarioReport]]:
    """``await dd_scenario(path, seed=None)``: run a fault scenario file; its report."""
    from emulator.faults.scenario import load_scenario
    from emulator.fleet.scenario_run import run_scenario

    runs = [0]

    async def run(path: str | Path, seed: int | None = None) -> ScenarioReport:
        runs[0] += 1
        scenario = load_scenario(path)
        if seed is not None:
            scenario = replace(scenario, fleet=replace(scenario.fleet, seed=seed))
        work = tmp_path / f"dd-scenario-{runs[0]}"
        work.mkdir()
        return await run_scenario(scenario, work)

    return run
