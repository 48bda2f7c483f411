"""A stateful Hypothesis test: random command sequences on one device with a state_dir.

After each step the snapshot invariants hold, meters have not gone down, alert indices
only grow, and a power loss followed by a reload from the state directory gives back
exactly the state that was last persisted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from model_helpers import EPOCH, check_invariants, make_device

from device_direct.model import Counters, PowerState, PrintJob
from emulator.clock import VirtualClock
from emulator.errors import ModelStateError
from emulator.model import EmulatedDevice

SETTLED = (PowerState.READY, PowerState.SLEEPING, PowerState.FAULTED)


class DeviceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="model-stateful-"))
        self.clock = VirtualClock(EPOCH)
        self.dev: EmulatedDevice = make_device(state_dir=self.dir, clock=self.clock, seed=11)
        self.previous = self.dev.counters()
        self.top_alert = 0
        self.seen_alerts: set[int] = set()

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, coro: object) -> None:
        asyncio.run(coro)  # type: ignore[arg-type]

    @rule(pages=st.integers(1, 30), copies=st.integers(1, 3), duplex=st.booleans(),
          color=st.booleans(), large=st.booleans())
    def print_job(self, pages: int, copies: int, duplex: bool, color: bool,
                  large: bool) -> None:
        job = PrintJob(pages=pages, copies=copies, duplex=duplex, color=color, large=large)
        if self.dev.power in (PowerState.READY, PowerState.SLEEPING):
            result = asyncio.run(self.dev.print_job(job))
            assert result.sheets <= -(-pages // (2 if duplex else 1)) * copies
        else:
            try:
                asyncio.run(self.dev.print_job(job))
            except ModelStateError:
                return
            raise AssertionError(f"printed while {self.dev.power}")

    @rule()
    def jam(self) -> None:
        if self.dev.power in SETTLED:
            self.dev.jam()
            assert self.dev.power is PowerState.FAULTED
        else:
            try:
                self.dev.jam()
            except ModelStateError:
                return
            raise AssertionError("jammed while off")

    @rule()
    def clear(self) -> None:
        self.dev.clear_fault()
        if self.dev.power is PowerState.FAULTED:
            raise AssertionError("still faulted after clear_fault")

    @rule(index=st.integers(1, 11))
    def replace_supply(self, index: int) -> None:
        self.dev.replace_supply(index)

    @rule(data=st.data())
    def replace_part(self, data: st.DataObject) -> None:
        ids = [h.id for h in self.dev.profile.hfsi]
        self.dev.replace_part(data.draw(st.sampled_from(ids)))

    @rule()
    def reboot(self) -> None:
        if self.dev.power in SETTLED:
            self.run(self.dev.reboot())
            assert self.dev.power in (PowerState.READY, PowerState.FAULTED)
        else:
            try:
                self.run(self.dev.reboot())
            except ModelStateError:
                return
            raise AssertionError("rebooted while off")

    @precondition(lambda self: self.dev.power is PowerState.OFF)
    @rule()
    def power_on(self) -> None:
        self.run(self.dev.power_on())

    @rule(then_on=st.booleans())
    def power_loss(self, then_on: bool) -> None:
        persisted = json.loads((self.dir / "model-state.json").read_text())
        self.dev.power_loss()
        assert self.dev.power is PowerState.OFF
        reloaded = make_device(state_dir=self.dir, clock=self.clock, seed=11, powered_on=False)
        assert reloaded.export_state() == persisted
        assert self.dev.export_state() == persisted
        self.dev = reloaded
        if then_on:
            self.run(self.dev.power_on())

    @rule()
    def day_of_use(self) -> None:
        today = self.clock.now().date() + timedelta(days=1)
        last = self.dev.last_day
        day = max(today, last + timedelta(days=1)) if last else today
        self.dev.run_day(day)
        # Office hours are over: move the clock past the simulated day.
        self.clock.advance_to(datetime(day.year, day.month, day.day, tzinfo=UTC)
                              + timedelta(days=2))

    @invariant()
    def invariants_hold(self) -> None:
        snap = self.dev.snapshot()
        check_invariants(snap)
        now: Counters = snap.counters
        for name in now.__dataclass_fields__:
            assert getattr(now, name) >= getattr(self.previous, name), name
        self.previous = now
        for a in snap.alerts:
            if a.index not in self.seen_alerts:
                assert a.index > self.top_alert, "prtAlertIndex must only grow"
                self.seen_alerts.add(a.index)
                self.top_alert = a.index
        fault_alerts = [a for a in snap.alerts if a.group != 11]
        if snap.power in (PowerState.READY, PowerState.SLEEPING):
            assert not fault_alerts
        if snap.power is PowerState.FAULTED:
            assert len(fault_alerts) == 1


DeviceMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25,
                                           deadline=None)
TestDeviceMachine = DeviceMachine.TestCase
