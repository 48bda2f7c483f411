"""The emulated MFP: ``device_direct.model.DeviceModel`` over a :class:`DeviceState`.

Theory of operation
-------------------
The shell owns the power state (``power.py`` table), the clock, the seed and the state
file; the sans-I/O parts (``state.py``, ``usage.py``) change counters. Every command
that changes persistent data writes the state file before it returns (and before any
simulated wait), so :meth:`EmulatedDevice.power_loss` loses only volatile things: the
power state, uptime, and the last report text. A new ``EmulatedDevice`` on the same
``state_dir`` resumes from the file.

Firmware banks work like a bootloader with a boot counter: ``boot_bank(trial=True)``
boots the new bank once; any further boot before ``commit_bank`` (a reboot, a power
cut, a hang) falls back to the previous bank, like a watchdog would.

Randomness: one shared scratch ``random.Random`` is reseeded from (rng_seed, serial,
stream, day or command number) before each use, so a device carries no generator
state, a day replays exactly, and the same day comes out whatever ran before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import math
import random
import re
import zlib
from datetime import date
from pathlib import Path
from typing import Any

from device_direct.clock import Clock
from device_direct.model import (
    Alert,
    Counters,
    DeviceSnapshot,
    Fault,
    FirmwareState,
    Identity,
    JobKind,
    NetworkInfo,
    PowerState,
    PrintJob,
    PrintResult,
    Property,
)
from emulator.errors import StateStorageError
from emulator.model import snapshot as views
from emulator.model.aging import age_device
from emulator.model.calendar import WorkCalendar, calendar_for
from emulator.model.console import Console
from emulator.model.errors import DeviceCommandError, DeviceStateError
from emulator.model.plan import Plan, plan_for
from emulator.model.power import PowerEvent, is_powered, next_state
from emulator.model.profile import Profile
from emulator.model.report import configuration_report
from emulator.model.snapshot import Replacement
from emulator.model.state import DeviceState
from emulator.model.storage import StateFile
from emulator.model.traits import DeviceTraits, draw_traits
from emulator.model.usage import (
    KIND_COPY,
    KIND_FAX,
    KIND_PRINT,
    KIND_REPORT,
    KIND_SCAN,
    DayResult,
    pick_fault,
    run_day,
)

_RNG = random.Random()  # scratch generator, reseeded before every use (see module doc)
_STREAM_DAY = 1
_STREAM_JOB = 2
_STREAM_TRAITS = 3
_FLASH_BYTES_PER_S = 20_000_000
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_KIND_CODE = {JobKind.PRINT: KIND_PRINT, JobKind.COPY: KIND_COPY, JobKind.FAX: KIND_FAX,
              JobKind.SCAN: KIND_SCAN, JobKind.REPORT: KIND_REPORT}
_S = PowerState
_E = PowerEvent


class EmulatedDevice:
    """One emulated printer. Implements ``device_direct.model.DeviceModel``."""

    __slots__ = ("_cal", "_clock", "_gen", "_lock", "_network", "_plan", "_power",
                 "_printing", "_seed_base", "_serial", "_state", "_store", "_traits",
                 "console", "last_report", "revision")

    def __init__(
        self,
        profile: Profile,
        *,
        serial: str,
        clock: Clock,
        rng_seed: int,
        state_dir: Path | None,
        mac: str | None = None,
        ipv4: str | None = None,
        subnet_mask: str = "255.255.255.0",
        gateway: str = "",
        hostname: str | None = None,
        domain: str = "",
        wpad_url: str | None = None,
        dns_servers: tuple[str, ...] = (),
        powered_on: bool = True,
        fsync: bool = True,
        time_zone: str | None = None,
        country: str | None = None,
        age_days: int | None = None,
    ) -> None:
        """Build the device; with ``powered_on`` it is up at once (no boot wait).

        ``mac`` and ``ipv4`` default to values derived from the serial (a locally
        administered MAC, an address in 10.0.0.0/8). With a ``state_dir`` holding a
        state file the device resumes from it. ``time_zone`` is where the device
        stands (default: the profile's); its working hours, weekends, public holidays
        (of ``country``, default: the zone's country), faults, supply swaps and
        service visits all happen in that local time. A new device with ``age_days``
        (default: the profile's ``[history] age_days``) starts as a used printer with
        that many days of its own use behind it (:mod:`emulator.model.aging`).
        """
        if not serial or not serial.isprintable() or len(serial) > 32:
            raise DeviceCommandError(f"serial must be 1..32 printable characters, got {serial!r}")
        digest = hashlib.sha256(serial.encode()).digest()
        mac = (mac or "02:" + ":".join(f"{b:02x}" for b in digest[:5])).lower()
        if not _MAC.match(mac):
            raise DeviceCommandError(f"mac must look like 02:00:5e:00:00:01, got {mac!r}")
        ipv4 = ipv4 or f"10.{digest[5]}.{digest[6]}.{max(2, digest[7] % 254)}"
        try:
            ipaddress.IPv4Address(ipv4)
            ipaddress.IPv4Network(f"0.0.0.0/{subnet_mask}")
        except ValueError as exc:
            raise DeviceCommandError(f"bad IPv4 address or mask: {exc}") from None
        self._serial = serial
        self._clock = clock
        self._plan: Plan = plan_for(profile)
        usage = profile.usage
        zone = time_zone or usage.timezone
        try:
            self._cal: WorkCalendar = calendar_for(
                zone, usage.office_start_hour, usage.office_end_hour,
                country if country is not None else usage.country)
        except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise DeviceCommandError(f"unknown time zone {zone!r}: {exc}") from None
        self._seed_base = (rng_seed << 32) ^ zlib.crc32(serial.encode())
        _RNG.seed(self._seed(_STREAM_TRAITS, 0))
        self._traits: DeviceTraits = draw_traits(self._plan, _RNG)
        self._network = NetworkInfo(
            mac=mac, ipv4=ipv4, subnet_mask=subnet_mask, gateway=gateway,
            hostname=hostname if hostname is not None else f"mfp-{serial.lower()}",
            domain=domain, wpad_url=wpad_url, dns_servers=dns_servers)
        self._power = _S.OFF
        self._gen = 0
        self._lock: asyncio.Lock | None = None
        # A running job's engine time, which a power loss ends (see _engine_time).
        self._printing: asyncio.Future[None] | None = None
        self.last_report = ""
        # The control panel (display text, PJL RDYMSG/OPMSG), and a number that grows
        # with every change of state or power, for readers that cache a view (SNMP).
        self.console = Console()
        self.revision = 0
        self._store = StateFile(state_dir, fsync=fsync) if state_dir is not None else None
        stored = self._store.read() if self._store is not None else None
        if stored is not None:
            self._state = self._load(stored)
        else:
            self._state = DeviceState(
                self._plan, install_epoch=int(self._now()),
                system_version=profile.identity.firmware[0].version)
            self._state.log(self._now(), f"installed: {profile.identity.model} serial {serial}")
            if self._traits.keeps_spare:  # the customer starts with a spare of each unit
                self._state.sup_spare = [usage.spare_units] * len(profile.supplies)
            self._persist()
        if powered_on:
            self._to(_E.POWER_ON)
            self._begin_boot()
            self._finish_boot()
        age = profile.history.age_days if age_days is None else age_days
        if stored is None and age > 0:
            if not powered_on:
                raise DeviceCommandError("a used printer (age_days > 0) must be created "
                                         "powered on: its history is simulated at once")
            age_device(self, age)

    # -- plumbing -----------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _to(self, event: PowerEvent) -> None:
        self._power = next_state(self._power, event)
        self.revision += 1
        if self._power is _S.OFF or self._power is _S.BOOTING:
            self.console.reset()  # the panel's messages do not survive a power cycle

    def _require_powered(self, what: str) -> None:
        if not is_powered(self._power):
            raise DeviceStateError(f"cannot {what} while the device is {self._power.value}")

    def _locked(self) -> asyncio.Lock:
        # Created on first use: a fleet of idle devices should not pay for one each.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _seed(self, stream: int, n: int) -> int:
        return (((self._seed_base << 4) | stream) << 40) | (n & ((1 << 40) - 1))

    def export_state(self) -> dict[str, Any]:
        """The persistent state as a JSON-ready dict (what the state file holds)."""
        d = self._state.to_dict()
        d["serial"] = self._serial
        d["profile"] = self._plan.profile.name
        return d

    def _persist(self) -> None:
        self.revision += 1
        if self._store is not None:
            self._store.write(self.export_state())

    def _load(self, data: dict[str, Any]) -> DeviceState:
        assert self._store is not None
        source = str(self._store.path)
        for key, mine in (("serial", self._serial), ("profile", self._plan.profile.name)):
            if data.get(key) != mine:
                raise StateStorageError(
                    f"{source}: field '{key}': stored {data.get(key)!r}, this device is "
                    f"{mine!r} (one state_dir per device)")
        return DeviceState.from_dict(self._plan, data, source=source)

    def _begin_boot(self) -> None:
        st, t = self._state, self._now()
        if st.trial:
            st.trial_boots += 1
            if st.trial_boots > 1:
                failed = views.BANK_NAMES[st.active_bank]
                st.active_bank = 1 - st.active_bank
                st.trial = False
                st.trial_boots = 0
                st.log(t, f"watchdog: trial bank {failed} was not committed; falling back to "
                          f"bank {views.BANK_NAMES[st.active_bank]}")
        self._persist()

    def _finish_boot(self) -> None:
        st, t = self._state, self._now()
        st.boot_epoch = t
        st.power_on_count += 1
        bank = st.active_bank
        st.log(t, f"booted bank {views.BANK_NAMES[bank]} version {st.bank_versions[bank]}"
                  f"{' (trial)' if st.trial else ''}")
        self._to(_E.BOOT_FAULTED if st.active_fault >= 0 else _E.BOOT_OK)
        self._persist()

    async def _boot(self, gen: int, seconds: float) -> None:
        self._begin_boot()
        await self._clock.sleep(seconds)
        if gen != self._gen:
            raise DeviceStateError("power was lost while the device was booting")
        self._finish_boot()

    # -- read side ----------------------------------------------------------------------

    @property
    def power(self) -> PowerState:
        return self._power

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def profile(self) -> Profile:
        return self._plan.profile

    @property
    def time_zone(self) -> str:
        """The IANA zone the device stands in (its local time)."""
        return self._cal.zone

    @property
    def calendar(self) -> WorkCalendar:
        """The device's working calendar (zone, office hours, public holidays)."""
        return self._cal

    @property
    def traits(self) -> DeviceTraits:
        """This device's own figures, drawn from its class (seed and serial)."""
        return self._traits

    @property
    def pages_unprinted(self) -> int:
        """Impressions not made because a blocking supply was empty (jobs cancelled)."""
        return self._state.pages_unprinted

    def replacements(self) -> tuple[Replacement, ...]:
        """The newest replacements (supplies swapped, parts replaced), newest first."""
        return views.replacements(self._state, self._plan)

    @property
    def last_day(self) -> date | None:
        """The last day run by :meth:`run_day` (a fleet resumes after it)."""
        return date.fromordinal(self._state.last_day) if self._state.last_day else None

    def uptime_ticks(self) -> int:
        """sysUpTime in hundredths of a second; 0 while off or booting."""
        if not is_powered(self._power):
            return 0
        return max(0, int((self._now() - self._state.boot_epoch) * 100))

    def identity(self) -> Identity:
        ident = self._plan.profile.identity
        # Positional, in field order (as the views do, see emulator.model.snapshot):
        # manufacturer, model, serial, product_code, firmware, installed_options,
        # install_date, profile.
        return Identity(
            ident.manufacturer, ident.model, self._serial, ident.product_code,
            views.firmware_modules(self._state, self._plan), ident.options,
            views.install_date(self._state), self._plan.profile.name)

    def network(self) -> NetworkInfo:
        return self._network

    def counters(self) -> Counters:
        return views.counters(self._state)

    def alerts(self) -> tuple[Alert, ...]:
        return views.alerts(self._state, self._plan)

    def faults(self) -> tuple[Fault, ...]:
        """Fault history, newest first, at most 40."""
        return views.faults(self._state, self._plan)

    def firmware(self) -> FirmwareState:
        return views.firmware(self._state)

    def engineering_log(self) -> str:
        return "\n".join(self._state.eng_log)

    def snapshot(self) -> DeviceSnapshot:
        st, plan = self._state, self._plan
        alerts = views.alerts(st, plan)
        # Positional, in field order (as the views do, see emulator.model.snapshot):
        # taken_at, power, identity, network, properties, alerts, faults, counters,
        # supplies, hfsi, nvm, firmware, jobs.
        return DeviceSnapshot(
            self._clock.now(), self._power, self.identity(), self._network,
            (*views.properties(st, plan),
             Property("console-display", self.console.display(self._power, alerts))),
            alerts, views.faults(st, plan), views.counters(st),
            views.supplies(st, plan, self._serial), views.hfsi(st, plan), views.nvm(st, plan),
            views.firmware(st), views.jobs(st))

    # -- power commands -----------------------------------------------------------------

    async def power_on(self) -> None:
        """Switch on and boot (takes the profile's boot time on the clock)."""
        async with self._locked():
            self._to(_E.POWER_ON)
            self._gen += 1
            await self._boot(self._gen, self._plan.profile.engine.boot_seconds)

    async def power_off(self) -> None:
        async with self._locked():
            self._to(_E.SHUTDOWN)
            self._gen += 1
            self._state.log(self._now(), "power off (orderly shutdown)")
            self.last_report = ""
            self._persist()

    async def reboot(self) -> None:
        async with self._locked():
            self._to(_E.RESTART)
            self._gen += 1
            self._state.log(self._now(), "reboot requested")
            eng = self._plan.profile.engine
            await self._boot(self._gen, eng.shutdown_seconds + eng.boot_seconds)

    def power_loss(self) -> None:
        """The power is cut: volatile state is gone; storage holds what was persisted."""
        self._to(_E.POWER_LOSS)
        self._gen += 1
        if self._printing is not None and not self._printing.done():
            self._printing.set_result(None)  # the engine stops with the power
        self.last_report = ""
        if self._store is not None:
            stored = self._store.read()
            if stored is not None:
                self._state = self._load(stored)

    # -- printing -----------------------------------------------------------------------

    async def print_job(self, job: PrintJob) -> PrintResult:
        async with self._locked():
            return await self._print(job)

    async def _print(self, job: PrintJob) -> PrintResult:
        if job.pages < 1 or job.copies < 1:
            raise DeviceCommandError(f"pages and copies must be >= 1, got {job.pages}, "
                                     f"{job.copies}")
        if not 0.0 <= job.coverage <= 1.0:
            raise DeviceCommandError(f"coverage must be in [0, 1], got {job.coverage}")
        st, plan = self._state, self._plan
        if job.kind is JobKind.SCAN:  # the scanner works even with a jam in the engine
            self._require_powered("scan")
        elif self._power is not _S.SLEEPING:
            next_state(self._power, _E.START_JOB)  # refuse before anything changes
        t = self._now()
        st.cmd_seq += 1
        rng = _RNG
        rng.seed(self._seed(_STREAM_JOB, st.cmd_seq))
        user = int(rng.random() * plan.profile.usage.users)
        if job.kind is JobKind.SCAN:
            images = job.pages * job.copies
            st.scan_images += images
            st.log_job(KIND_SCAN, t, images, 0, user, text=(job.user, job.job_name, job.email))
            self._persist()
            return PrintResult(sheets=0, impressions=0, completed=True)
        if self._power is _S.SLEEPING:
            self._to(_E.WAKE)
        self._to(_E.START_JOB)
        color = job.color and plan.color
        if st.blocked_by_supply(plan, color) >= 0:
            self._to(_E.END_JOB)
            self._persist()
            return PrintResult(sheets=0, impressions=0, completed=False)
        sides = 2 if job.duplex else 1
        sheets = -(-job.pages // sides) * job.copies
        done = sheets
        fault_index = -1
        lam = sheets * plan.sheet_rate
        if lam > 0 and rng.random() < 1.0 - math.exp(-lam):
            fault_index = pick_fault(plan, rng, sheets, day_faults=False)
            if plan.profile.faults[fault_index].stops_machine:
                done = int(rng.random() * sheets)
        factors = (plan.sup_factor if job.coverage == plan.profile.usage.coverage
                   else plan.factors(job.coverage))
        # A blocking supply that runs out mid-job stops the engine: the rest waits.
        room, _ = st.room(plan, done * sides, done * sides if color else 0, done, factors)
        if room < 1.0:
            done = min(done, math.ceil(done * room))  # the last sheet empties it
        imps = done * sides
        st.mark(plan, t, imps, imps if color else 0, done, imps if job.large else 0,
                imps if job.large and color else 0, done if job.large else 0, factors)
        if job.duplex:
            st.duplex_sheets += done
        kind = _KIND_CODE[job.kind]
        if kind == KIND_PRINT:
            st.print_imps += imps
        elif kind == KIND_COPY:
            st.copy_imps += imps
        elif kind == KIND_FAX:
            st.fax_imps += imps
        else:
            st.report_imps += imps
        st.log_job(kind, t, job.pages * job.copies, imps, user,
                   text=(job.user, job.job_name, job.email))
        fault = None
        if fault_index >= 0:
            st.record_fault(plan, fault_index, t, st.black + st.color,
                            day=self._cal.local_ordinal(t))
            fault = views.faults(st, plan)[0]
        self._persist()
        gen = self._gen
        await self._engine_time(done * 60.0 / plan.profile.engine.ppm)
        if gen != self._gen:
            raise DeviceStateError("power was lost while the job was printing")
        self._to(_E.FAULT if st.active_fault >= 0 else _E.END_JOB)
        return PrintResult(sheets=done, impressions=imps, completed=done == sheets, fault=fault)

    async def _engine_time(self, seconds: float) -> None:
        """The engine printing a job's sheets, on the clock; cut short by a power loss.
        The job holds the device's lock meanwhile: without the cut, a power-on after the
        loss would wait out every page the engine no longer prints (hours for a big job
        on a device on real time)."""
        cut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._printing = cut
        engine = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((engine, cut), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._printing = None
            if not engine.done():
                engine.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engine

    async def print_configuration_report(self) -> str:
        async with self._locked():
            self._require_powered("print a configuration report")
            text = configuration_report(
                self.snapshot(), uptime_s=self.uptime_ticks() / 100)
            result = await self._print(PrintJob(kind=JobKind.REPORT, pages=1, job_name=""))
            if result.completed:
                self.last_report = text
            return text

    # -- firmware banks -----------------------------------------------------------------

    async def write_inactive_bank(self, version: str, image: bytes | Path) -> None:
        # A file is read a chunk at a time, off the loop: a big image is never held whole.
        size, sha = (await asyncio.to_thread(_file_facts, image) if isinstance(image, Path)
                     else (len(image), hashlib.sha256(image).hexdigest()))
        async with self._locked():
            self._require_powered("write a firmware bank")
            st = self._state
            if st.trial:
                raise DeviceStateError("cannot overwrite the fallback bank while a trial "
                                       "bank runs: commit or roll back first")
            if not version or not version.isprintable() or len(version) > 64:
                raise DeviceCommandError(f"bad firmware version {version!r}")
            target = 1 - st.active_bank
            st.bank_versions[target] = version
            st.bank_sha[target] = sha
            st.log(self._now(), f"firmware {version} written to bank "
                                f"{views.BANK_NAMES[target]} ({size} bytes)")
            self._persist()
            gen = self._gen
            await self._clock.sleep(size / _FLASH_BYTES_PER_S)
            if gen != self._gen:
                raise DeviceStateError("power was lost while writing the firmware bank")

    async def boot_bank(self, bank: str, *, trial: bool) -> None:
        async with self._locked():
            st = self._state
            if bank not in views.BANK_NAMES:
                raise DeviceCommandError(f"bank must be 'A' or 'B', got {bank!r}")
            target = views.BANK_NAMES.index(bank)
            if not st.bank_versions[target]:
                raise DeviceCommandError(f"bank {bank} is empty")
            if st.trial:
                raise DeviceStateError("a trial bank is running: commit or roll back first")
            if trial and target == st.active_bank:
                raise DeviceCommandError(f"bank {bank} is already running; a trial needs the "
                                         f"other bank")
            self._to(_E.RESTART)
            self._gen += 1
            st.log(self._now(), f"boot into bank {bank}{' on trial' if trial else ''}")
            st.active_bank = target
            st.trial = trial
            st.trial_boots = 0
            eng = self._plan.profile.engine
            await self._boot(self._gen, eng.shutdown_seconds + eng.boot_seconds)

    async def commit_bank(self) -> None:
        async with self._locked():
            self._require_powered("commit a firmware bank")
            st = self._state
            if not st.trial:
                raise DeviceStateError("no trial bank to commit")
            st.trial = False
            st.trial_boots = 0
            st.log(self._now(), f"bank {views.BANK_NAMES[st.active_bank]} committed")
            self._persist()

    async def rollback_bank(self) -> None:
        async with self._locked():
            st = self._state
            if not st.trial:
                raise DeviceStateError("no trial bank to roll back")
            self._to(_E.RESTART)
            self._gen += 1
            st.active_bank = 1 - st.active_bank
            st.trial = False
            st.trial_boots = 0
            st.log(self._now(), f"rollback to bank {views.BANK_NAMES[st.active_bank]}")
            eng = self._plan.profile.engine
            await self._boot(self._gen, eng.shutdown_seconds + eng.boot_seconds)

    # -- settings -----------------------------------------------------------------------

    async def set_nvm(self, nvm_id: str, value: int) -> None:
        async with self._locked():
            self._require_powered("change NVM")
            spec = next((n for n in self._plan.profile.nvm if n.id == nvm_id), None)
            if spec is None:
                raise DeviceCommandError(f"unknown NVM id {nvm_id!r}")
            if spec.protected:
                raise DeviceCommandError(f"NVM {nvm_id} ({spec.name}) is protected: it needs "
                                         f"the service password, on site")
            if isinstance(value, bool) or not spec.minimum <= value <= spec.maximum:
                raise DeviceCommandError(f"NVM {nvm_id} ({spec.name}) must be "
                                         f"{spec.minimum}..{spec.maximum}, got {value!r}")
            self._state.nvm[nvm_id] = value
            self._state.log(self._now(), f"NVM {nvm_id} set to {value}")
            self._persist()

    # -- emulator-only commands (QA, fleet) ---------------------------------------------

    def run_day(self, day: date) -> DayResult:
        """Simulate a day of use (synchronous, no event loop needed). Days must advance."""
        st = self._state
        ordinal = day.toordinal()
        if ordinal <= st.last_day:
            raise DeviceStateError(f"day {day} already simulated (last: "
                                   f"{date.fromordinal(st.last_day)}); days must advance")
        if self._power is _S.OFF or self._power is _S.BOOTING:
            st.last_day = ordinal
            self._persist()
            return DayResult(day, 0, 0, 0, 0, 0, stopped=False, ran=False)
        _RNG.seed(self._seed(_STREAM_DAY, ordinal))
        result = run_day(st, self._plan, day, _RNG, self._cal, self._traits, self._now())
        power = self._power
        if st.active_fault >= 0:
            if power is _S.READY or power is _S.SLEEPING:
                self._to(_E.FAULT)
        elif power is _S.FAULTED:
            self._to(_E.CLEAR)
        if self._power is _S.READY:  # energy saver after office hours
            self._to(_E.SLEEP)
        self._persist()
        return result

    def inject_fault(self, code: str) -> Fault:
        """Record catalog fault ``code`` now; a stopping one faults the device."""
        self._require_powered("inject a fault")
        plan, st = self._plan, self._state
        try:
            spec = plan.profile.fault(code)
        except KeyError as exc:
            raise DeviceCommandError(str(exc.args[0])) from None
        index = plan.profile.faults.index(spec)
        stops = st.record_fault(plan, index, self._now(), st.black + st.color,
                                day=self._cal.local_ordinal(self._now()))
        if stops and self._power is not _S.PRINTING and self._power is not _S.FAULTED:
            self._to(_E.FAULT)
        self._persist()
        return views.faults(st, plan)[0]

    def jam(self, code: str | None = None) -> Fault:
        """A paper jam (the profile's first jam code unless ``code`` is given)."""
        if code is None:
            jams = [f.code for f in self._plan.profile.faults if f.is_jam and f.stops_machine]
            if not jams:
                raise DeviceCommandError(f"profile {self._plan.profile.name} has no jam fault")
            code = jams[0]
        return self.inject_fault(code)

    def clear_fault(self) -> None:
        """Clear the active fault (operator or technician); the device becomes ready."""
        if self._state.active_fault < 0:
            return
        self._state.clear_fault(self._plan, self._now(), "cleared by command")
        if self._power is _S.FAULTED:
            self._to(_E.CLEAR)
        self._persist()

    def replace_supply(self, index: int) -> None:
        """Replace supply ``index`` (1-based, prtMarkerSuppliesIndex) with a new unit."""
        n = len(self._plan.profile.supplies)
        if not 1 <= index <= n:
            raise DeviceCommandError(f"supply index must be 1..{n}, got {index}")
        self._state.replace_supply(self._plan, index - 1, self._now())
        self._persist()

    def set_supply_level(self, index: int, level: int) -> None:
        """Set supply ``index`` (1-based) to ``level`` in its own unit (QA)."""
        supplies = self._plan.profile.supplies
        if not 1 <= index <= len(supplies):
            raise DeviceCommandError(f"supply index must be 1..{len(supplies)}, got {index}")
        cap = supplies[index - 1].capacity
        if not 0 <= level <= cap:
            raise DeviceCommandError(f"level of {supplies[index - 1].name} must be 0..{cap}, "
                                     f"got {level}")
        self._state.set_supply_level(self._plan, index - 1, level, self._now())
        self._persist()

    def set_door(self, open_: bool) -> None:
        """Open or close the front door (QA): an open door is a critical doorOpen alert."""
        self._state.set_door(open_, self._now())
        self._persist()

    def replace_part(self, hfsi_id: str) -> None:
        """Replace the part counted by HFSI ``hfsi_id``: its counter is cleared."""
        ids = [h.id for h in self._plan.profile.hfsi]
        if hfsi_id not in ids:
            raise DeviceCommandError(f"unknown HFSI id {hfsi_id!r}; known: {', '.join(ids)}")
        self._state.replace_part(self._plan, ids.index(hfsi_id), self._now())
        self._persist()


def _file_facts(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a firmware image file, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()
