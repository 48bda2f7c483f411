"""Device-side faults a scenario applies: power cuts at checkpoints, skewed clocks, full disks.

* :class:`PowerLoss` and :class:`AgentKilled` are raised *inside* the agent, from its
  checkpoint hook, to stop it at an exact point of its work (between two file writes,
  between the request and the acknowledgement). They are not ``DeviceDirectError``s,
  so no handler of the agent swallows them; the fleet catches them around the agent
  task and reboots the device (a new agent from the same data directory).
* :class:`SkewedClock` is a device's own clock: the fleet's clock plus an offset that
  a scenario can change (a real-time clock battery gone flat, a bad NTP server).
* :class:`DiskFullSeam` makes payload writes under chosen data directories fail with
  ``ENOSPC``. It is a documented test seam, not a real file system: it replaces
  ``device_direct.outbox_store.atomic_write`` and ``append_durably`` (the outbox's only
  ways to write a file) while installed. A real small file system needs root (loop
  mount, tmpfs size) and is not available on the machines the suite runs on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from device_direct.clock import Clock
from emulator.model.device import EmulatedDevice


class Interruption(Exception):
    """The device (or its agent) stops here; raised from a checkpoint."""

    def __init__(self, checkpoint: str, off_s: float) -> None:
        super().__init__(f"{type(self).__name__} at {checkpoint!r}")
        self.checkpoint = checkpoint
        self.off_s = off_s


class PowerLoss(Interruption):
    """The power is cut: the model loses its volatile state, the agent dies."""


class AgentKilled(Interruption):
    """The agent process dies (crash, watchdog, out of memory); the printer stays up."""


class SkewedClock:
    """The fleet's clock as one device sees it: ``now()`` is off by ``offset``.

    Sleeping asks the base clock for the matching base instant, so a virtual clock
    still counts the device as parked and wakes it at the right moment.
    """

    __slots__ = ("base", "offset")

    def __init__(self, base: Clock, offset: timedelta = timedelta(0)) -> None:
        self.base = base
        self.offset = offset

    def now(self) -> datetime:
        return self.base.now() + self.offset

    def monotonic(self) -> float:
        return self.base.monotonic()  # a wall-clock error does not bend elapsed time

    async def sleep_until(self, when: datetime) -> None:
        await self.base.sleep_until(when - self.offset)

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


class ScenarioDevice(EmulatedDevice):
    """An emulated printer that reports the "install" checkpoint before it writes or
    trial-boots a firmware bank (where a power cut hurts most), and remembers every
    system firmware version it ever ran (``versions_run``), trials included."""

    __slots__ = ("checkpoint", "versions_run")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint: Callable[[str], None] | None = None
        self.versions_run: set[str] = {self.firmware().running_version}

    def _note_version(self) -> None:
        self.versions_run.add(self.firmware().running_version)

    async def power_on(self) -> None:
        await super().power_on()
        self._note_version()

    async def rollback_bank(self) -> None:
        await super().rollback_bank()
        self._note_version()

    async def write_inactive_bank(self, version: str, image: bytes | Path) -> None:
        if self.checkpoint is not None:
            self.checkpoint("install")
        await super().write_inactive_bank(version, image)

    async def boot_bank(self, bank: str, *, trial: bool) -> None:
        if trial and self.checkpoint is not None:
            self.checkpoint("install")
        try:
            await super().boot_bank(bank, trial=trial)
        finally:
            self._note_version()


class DiskFullSeam:
    """While installed, outbox writes under a "full" directory raise ``ENOSPC``.

    Use as a context manager around the run; :meth:`fill` and :meth:`free` switch a
    directory (a device's data directory) on and off. Nested fills count.
    """

    def __init__(self) -> None:
        self._full: dict[Path, int] = {}
        self._saved: dict[str, Callable[..., None]] | None = None
        self.refused = 0

    def fill(self, directory: Path) -> None:
        self._full[directory] = self._full.get(directory, 0) + 1

    def free(self, directory: Path) -> None:
        n = self._full.get(directory, 0) - 1
        if n > 0:
            self._full[directory] = n
        else:
            self._full.pop(directory, None)

    def is_full(self, path: Path) -> bool:
        return any(path.is_relative_to(d) for d in self._full)

    def __enter__(self) -> DiskFullSeam:
        import device_direct.outbox_store as store

        if self._saved is not None:
            raise RuntimeError("DiskFullSeam is already installed")
        # The outbox calls the names bound in its own module (imported from
        # device_direct.durable), so those are the ones to replace.
        namespace = vars(store)
        self._saved = {name: namespace[name] for name in _SEAMS}
        for name, real in self._saved.items():
            namespace[name] = self._refusing(real)
        return self

    def _refusing(self, real: Callable[..., None]) -> Callable[..., None]:
        def write(path: Path, data: bytes, **kwargs: Any) -> None:
            if self._full and self.is_full(Path(path)):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real(path, data, **kwargs)

        return write

    def __exit__(self, *exc: object) -> None:
        import device_direct.outbox_store as store

        if self._saved is not None:
            vars(store).update(self._saved)
            self._saved = None


_SEAMS = ("atomic_write", "append_durably")  # the outbox's only ways to write a file
