"""Signed A/B firmware updates: the shell around ``core.firmware``.

Theory of operation
-------------------
:class:`FirmwareUpdater` keeps one :class:`~device_direct.core.firmware.UpdateRecord`
in ``<data_dir>/firmware/update.json`` and the image being downloaded in
``<data_dir>/firmware/image.part``. Every step that touches the device is preceded by
an atomic write of the record naming the step, so that after a power cut
:meth:`FirmwareUpdater.on_boot` can tell (with ``core.firmware.resume_event`` and the
banks the model reports) whether the step happened.

1. ``check``: ask the server; verify the manifest (pinned Ed25519 key, model, expiry,
   anti-rollback) before anything is downloaded.
2. download into ``image.part``, resuming with ``Range`` after an interruption (the
   part file survives reboots); never more than ``size`` bytes are accepted; then the
   SHA-256 is checked. A hostile or corrupt download aborts the update.
3. write the verified image to the inactive bank.
4. at the maintenance window (or at once for ``{"install": "now"}``) boot the new bank
   on trial; health check = a successful mTLS call to the server (a few tries);
   commit, or roll back to the old bank and report the reason.

The daily check installs only with ``services.auto_firmware``; the ``upgrade_firmware``
action installs whatever the setting (it can be switched off with
``services.disabled_actions``). The outcome of an update started by an action goes to
``on_result`` (the action journal), which reports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from device_direct.audit import AuditLog
from device_direct.clock import Clock
from device_direct.config import AgentConfig
from device_direct.core.actions import Result
from device_direct.core.firmware import (
    ImageDigest,
    UpdateEvent,
    UpdateRecord,
    UpdateState,
    check_image,
    install_time,
    resume_event,
    verify_manifest,
)
from device_direct.core.retry import Backoff
from device_direct.durable import atomic_write, off_loop
from device_direct.errors import (
    BodyTooLong,
    DeviceDirectError,
    FirmwareError,
    ModelError,
    RemoteProtocolError,
    ServerRejected,
    StorageError,
)
from device_direct.model import DeviceModel

if TYPE_CHECKING:
    from device_direct.transport import Transport

log = logging.getLogger("device_direct.firmware")

FIRMWARE_DIR = "firmware"
RECORD_FILE = "update.json"
PART_FILE = "image.part"
HEALTH_ATTEMPTS = 3
HEALTH_RETRY_S = 30.0
MAX_DOWNLOAD_ATTEMPTS = 8
_DOWNLOAD_BACKOFF = Backoff(base_s=60.0, cap_s=3600.0)
_FSYNC_EVERY = 4 << 20
# Download chunks are gathered to this much before one write (and hash) in the storage
# thread: memory stays bounded whatever the image size, and the loop never waits on disk.
_WRITE_BATCH = 1 << 20

ResultSink = Callable[[str, Result], None]
HealthCheck = Callable[[], Awaitable[str | None]]


class FirmwareUpdater:
    """Checks, downloads, installs and commits (or rolls back) firmware for one device."""

    def __init__(
        self,
        config: AgentConfig,
        model: DeviceModel,
        *,
        clock: Clock,
        data_dir: Path,
        rng: random.Random,
        transport_factory: Callable[[], Transport],
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.clock = clock
        self.rng = rng
        self.dir = data_dir / FIRMWARE_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._transport_factory = transport_factory
        self.audit = audit
        self.on_result: ResultSink | None = None
        self.health_check: HealthCheck = self._default_health_check
        self.last_result: Result | None = None
        self._health_problem = ""
        self.record = self._load()

    # -- scheduling -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.record.state is not UpdateState.IDLE

    def next_due(self, now: datetime) -> datetime | None:
        """When :meth:`advance` has something to do (None: nothing in progress)."""
        rec = self.record
        if rec.state is UpdateState.IDLE:
            return None
        if rec.state is UpdateState.DOWNLOADING:
            return rec.next_try_at or now
        if rec.state is UpdateState.READY and not rec.install_now:
            return install_time(now, self._window(), self.config.device.zone)
        return now

    async def run_due(self, transport: Transport, now: datetime) -> None:
        """Background step (agent): carry an update in progress on."""
        await self.advance(transport)

    async def after_sync(self, transport: Transport, *, scheduled: bool) -> None:
        """Post-sync step: the daily check (when enabled), or carry an update on."""
        if self.busy:
            await self.advance(transport)
            return
        if (scheduled and self.config.schedule.firmware_check == "daily"
                and self.config.services.firmware_public_key is not None):
            await self.check(transport, automatic=True)

    # -- entry points ---------------------------------------------------------------------

    async def check(
        self, transport: Transport, *, action_id: str | None = None, install_now: bool = False,
        automatic: bool = False,
    ) -> Result | None:
        """Ask the server for newer firmware and, if there is some, start the update.

        Returns the final result when the update (or the check) is over, None while it
        goes on in the background (download retry, waiting for the window); the final
        result then goes to ``on_result``.
        """
        key = self.config.services.firmware_public_key
        if key is None:
            return Result("failed", {"message": "no firmware key is pinned in the "
                                                "configuration (services.firmware_public_key)",
                                     "check": "key"})
        if self.busy:
            return Result("failed", {"message": "busy", "reason": "an update to version "
                                     f"{self.record.version} is already in progress "
                                     f"({self.record.state.value})"})
        ident = self.model.identity()
        running = self.model.firmware().running_version
        offer = await transport.check_firmware(ident.model, running)
        if offer is None:
            return Result("succeeded", {"message": "up to date", "running": running})
        now = self.clock.now()
        try:
            manifest = verify_manifest(offer, public_key=key, model=ident.model,
                                       running_version=running, now=now)
        except FirmwareError as exc:
            self._audit("firmware-offer", ok=False, check=exc.check, error=str(exc))
            log.error("firmware offer refused: %s", exc)
            return Result("failed", {"message": str(exc), "check": exc.check,
                                     "running": running})
        if automatic and not self.config.services.auto_firmware:
            log.info("firmware %s is available; automatic updates are off", manifest.version)
            self._audit("firmware-offer", ok=True, version=manifest.version, installed=False)
            return None
        self._discard_part()
        self._save(UpdateRecord().step(
            UpdateEvent.START, offer=dict(offer), version=manifest.version,
            old_version=running, action_id=action_id, install_now=install_now))
        self._audit("firmware-update", step="start", version=manifest.version)
        log.info("firmware %s accepted (running %s); downloading", manifest.version, running)
        return await self.advance(transport)

    def on_boot(self) -> None:
        """At agent start: settle a step a power cut interrupted."""
        if not self.busy:
            return
        event = resume_event(self.record, self.model.firmware())
        if event is None:
            log.info("firmware update to %s resumes in state %s", self.record.version,
                     self.record.state.value)
            return
        log.info("firmware update to %s settled from the banks in state %s: %s",
                 self.record.version, self.record.state.value, event.value)
        if event is UpdateEvent.BOOTED_TRIAL:
            self._save(self.record.step(event))
        elif event is UpdateEvent.COMMITTED:
            self._finish(event, Result("succeeded", self._detail(
                message=f"firmware {self.record.version} installed and committed")))
        elif event is UpdateEvent.ROLLED_BACK:
            self._finish(event, Result("failed", self._detail(
                message="health check failed; rolled back to the previous firmware",
                check="health")))
        else:  # FELL_BACK
            self._finish(event, Result("failed", self._detail(
                message="the device restarted before the new firmware was committed; "
                        "the boot loader went back to the previous firmware",
                check="interrupted")))

    async def advance(self, transport: Transport) -> Result | None:
        """Carry the update on as far as it can go now; the result if it ended."""
        while self.busy:
            before = self.record
            state = before.state
            if state is UpdateState.DOWNLOADING:
                if before.next_try_at is not None and before.next_try_at > self.clock.now():
                    return None
                result = await self._download(transport)
            elif state is UpdateState.WRITING:
                result = await self._write()
            elif state is UpdateState.READY:
                now = self.clock.now()
                if not before.install_now and install_time(
                        now, self._window(), self.config.device.zone) > now:
                    return None
                result = await self._trial_boot()
            elif state is UpdateState.CHECKING:
                result = await self._check_health()
            elif state is UpdateState.COMMITTING:
                result = await self._commit()
            elif state is UpdateState.ROLLING_BACK:
                result = await self._rollback()
            else:  # TRIAL_BOOT with the boot already done: settle from the banks
                self.on_boot()
                result = self.last_result if not self.busy else None
            if result is not None:
                return result
            if self.record == before:  # no progress (waiting for a retry): stop here
                return None
        return None

    # -- steps ------------------------------------------------------------------------------

    async def _download(self, transport: Transport) -> Result | None:
        rec = self.record
        manifest = rec.manifest
        part = self.dir / PART_FILE
        start = part.stat().st_size if part.exists() else 0
        if start > manifest.size:
            self._discard_part()
            start = 0
        if start:
            rec = rec.step(UpdateEvent.INTERRUPTED, resumed_from=(*rec.resumed_from, start))
            self._save(rec)
            log.info("firmware download resumes at byte %d of %d", start, manifest.size)
        received = start
        hasher = hashlib.sha256()
        try:
            if start:  # the bytes a resumed download already has go into the hash first
                await off_loop(_hash_file, part, hasher)
            # All of it may be here already (the power went off before the record said
            # so): then nothing is asked for (a Range from the end is answered 416).
            if start < manifest.size:
                with part.open("ab") as out:
                    synced = received
                    batch: list[bytes] = []
                    batched = 0
                    try:
                        async with contextlib.aclosing(
                            transport.download(manifest.url, start, manifest.size - start)
                        ) as chunks:
                            async for chunk in chunks:
                                batch.append(chunk)
                                batched += len(chunk)
                                received += len(chunk)
                                if batched >= _WRITE_BATCH:
                                    sync = received - synced >= _FSYNC_EVERY
                                    await off_loop(_append, out, hasher, batch, sync=sync)
                                    batch, batched = [], 0
                                    synced = received if sync else synced
                    finally:
                        # Also when the body broke off: what arrived is kept for the resume.
                        await off_loop(_append, out, hasher, batch, sync=True)
        except OSError as exc:
            return self._abort(Result("failed", self._detail(
                message=f"cannot store the download: {exc}", check="storage")))
        except (RemoteProtocolError, ServerRejected) as exc:
            # The transport stops one byte past the limit (BodyTooLong).
            check = ("size" if received >= manifest.size or isinstance(exc, BodyTooLong)
                     else "download")
            return self._abort(Result("failed", self._detail(
                message=f"download refused: {exc}", check=check)))
        except DeviceDirectError as exc:
            return self._retry_download(f"{type(exc).__name__}: {exc}", received)
        if received < manifest.size:
            return self._retry_download(
                f"the body ended after {received} of {manifest.size} bytes", received)
        try:
            check_image(manifest, ImageDigest(received, hasher.hexdigest()))
        except FirmwareError as exc:
            return self._abort(Result("failed", self._detail(message=str(exc),
                                                             check=exc.check)))
        self._save(self.record.step(UpdateEvent.DOWNLOADED, next_try_at=None))
        self._audit("firmware-update", step="downloaded", version=rec.version,
                    bytes=manifest.size)
        return None

    def _retry_download(self, why: str, received: int) -> Result | None:
        rec = self.record
        attempts = rec.attempts + 1
        if attempts >= MAX_DOWNLOAD_ATTEMPTS:
            return self._abort(Result("failed", self._detail(
                message=f"download failed {attempts} times; last: {why}", check="download")))
        delay = replace(_DOWNLOAD_BACKOFF, attempt=attempts - 1).next_delay(self.rng)
        self._save(rec.step(UpdateEvent.INTERRUPTED, attempts=attempts,
                            next_try_at=self.clock.now() + timedelta(seconds=delay)))
        log.warning("firmware download interrupted at byte %d (%s); retry in %.0f s",
                    received, why, delay)
        self._audit("firmware-update", step="interrupted", bytes=received, error=why[:200])
        return None

    async def _write(self) -> Result | None:
        rec = self.record
        manifest = rec.manifest
        part = self.dir / PART_FILE
        try:
            # Again: the part file sat on disk meanwhile. Hashed in the storage thread,
            # a chunk at a time; the device reads the file itself to write the bank.
            hasher = hashlib.sha256()
            size = await off_loop(_hash_file, part, hasher)
            check_image(manifest, ImageDigest(size, hasher.hexdigest()))
        except (OSError, FirmwareError) as exc:
            check = exc.check if isinstance(exc, FirmwareError) else "storage"
            return self._abort(Result("failed", self._detail(
                message=f"the downloaded image is gone or changed: {exc}", check=check)))
        try:
            await self.model.write_inactive_bank(rec.version, part)
        except ModelError as exc:
            return self._abort(Result("failed", self._detail(
                message=f"the device refused to write the bank: {exc}", check="write")))
        except OSError as exc:
            return self._abort(Result("failed", self._detail(
                message=f"the image could not be read to write the bank: {exc}",
                check="storage")))
        self._save(rec.step(UpdateEvent.WRITTEN))
        self._discard_part()
        self._audit("firmware-update", step="written", version=rec.version)
        return None

    async def _trial_boot(self) -> Result | None:
        rec = self.record
        fw = self.model.firmware()
        bank = fw.inactive
        if bank.version != rec.version:
            return self._abort(Result("failed", self._detail(
                message=f"the inactive bank holds {bank.version or 'nothing'}, not "
                        f"{rec.version}", check="write")))
        self._save(rec.step(UpdateEvent.INSTALL))
        self._audit("firmware-update", step="trial-boot", version=rec.version, bank=bank.name)
        log.info("booting firmware %s in bank %s on trial", rec.version, bank.name)
        try:
            await self.model.boot_bank(bank.name, trial=True)
        except ModelError as exc:
            log.error("trial boot failed: %s", exc)
        self.on_boot()  # settles TRIAL_BOOT from the banks: booted on trial, or fell back
        return self.last_result if not self.busy else None

    async def _check_health(self) -> Result | None:
        problem = await self.health_check()
        if problem is None:
            self._save(self.record.step(UpdateEvent.HEALTHY))
            return None
        log.error("firmware %s failed its health check: %s", self.record.version, problem)
        self._audit("firmware-update", step="unhealthy", version=self.record.version,
                    error=problem[:200])
        self._save(self.record.step(UpdateEvent.UNHEALTHY))
        self._health_problem = problem
        return None

    async def _commit(self) -> Result | None:
        try:
            await self.model.commit_bank()
        except ModelError as exc:
            log.error("commit failed: %s", exc)
            self.on_boot()
            return self.last_result if not self.busy else None
        return self._finish(UpdateEvent.COMMITTED, Result("succeeded", self._detail(
            message=f"firmware {self.record.version} installed and committed")))

    async def _rollback(self) -> Result | None:
        try:
            await self.model.rollback_bank()
        except ModelError as exc:
            log.error("rollback: %s", exc)  # no trial any more: the loader already fell back
        if self.model.firmware().trial:
            return None
        reason = getattr(self, "_health_problem", "") or "health check failed"
        return self._finish(UpdateEvent.ROLLED_BACK, Result("failed", self._detail(
            message=f"health check failed ({reason}); rolled back to the previous firmware",
            check="health")))

    async def _default_health_check(self) -> str | None:
        """None when the new firmware can reach the server over mTLS, else the problem."""
        last = ""
        for attempt in range(HEALTH_ATTEMPTS):
            if attempt:
                await self.clock.sleep(HEALTH_RETRY_S)
            transport = self._transport_factory()
            try:
                fw = self.model.firmware()
                await transport.check_firmware(self.model.identity().model,
                                               fw.running_version)
                return None
            except DeviceDirectError as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                await transport.close()
        return f"the server could not be reached over mTLS ({last})"

    # -- endings ----------------------------------------------------------------------------

    def _abort(self, result: Result) -> Result:
        return self._finish(UpdateEvent.ABORT, result)

    def _finish(self, event: UpdateEvent, result: Result) -> Result:
        rec = self.record
        # The action journal first: a power cut between the two writes makes on_boot
        # settle the same step again, and the journal ignores a second outcome.
        if rec.action_id is not None and self.on_result is not None:
            self.on_result(rec.action_id, result)
        self._save(rec.step(event))
        self._discard_part()
        self.last_result = result
        self._audit("firmware-update", step=event.value, version=rec.version,
                    result=result.status, check=result.detail.get("check"))
        log.log(logging.INFO if result.status == "succeeded" else logging.ERROR,
                "firmware update to %s: %s (%s)", rec.version, result.status,
                result.detail.get("message"))
        return result

    def _detail(self, *, message: str, check: str | None = None) -> dict[str, Any]:
        rec = self.record
        detail: dict[str, Any] = {"message": message, "version": rec.version,
                                  "previous": rec.old_version,
                                  "running": self.model.firmware().running_version}
        if check is not None:
            detail["check"] = check
        if rec.resumed_from:
            detail["resumed_from"] = list(rec.resumed_from)
        return detail

    # -- storage ----------------------------------------------------------------------------

    def _window(self) -> tuple[time, time] | None:
        w = self.config.services.maintenance_window
        return (w.start, w.end) if w is not None else None

    def _load(self) -> UpdateRecord:
        path = self.dir / RECORD_FILE
        try:
            return UpdateRecord.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return UpdateRecord()
        except (OSError, ValueError, TypeError) as exc:
            # A record we cannot read: the banks are still consistent (the loader falls
            # back from any uncommitted trial), so forget the update and start over.
            log.error("firmware update record %s unreadable (%s); update abandoned", path, exc)
            self._discard_part()
            return UpdateRecord()

    def _save(self, record: UpdateRecord) -> None:
        try:
            atomic_write(self.dir / RECORD_FILE,
                         json.dumps(record.to_json(), sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(f"cannot save the firmware update record: {exc}") from exc
        self.record = record

    def _discard_part(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / PART_FILE).unlink()

    def _audit(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record(self.clock.now(), event, **fields)


def _hash_file(path: Path, hasher: hashlib._Hash) -> int:
    """Feed ``path`` into ``hasher`` a chunk at a time; returns its size (storage thread)."""
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_WRITE_BATCH):
            hasher.update(chunk)
            size += len(chunk)
    return size


def _append(out: BinaryIO, hasher: hashlib._Hash, chunks: list[bytes], *, sync: bool) -> None:
    """Append and hash one batch of a download; fsync when asked (storage thread)."""
    for chunk in chunks:
        out.write(chunk)
        hasher.update(chunk)
    if sync:
        out.flush()
        os.fsync(out.fileno())
