"""Remote actions: poll, admit, run, journal and report. The shell around ``core.actions``.

Theory of operation
-------------------
:class:`ActionRunner` polls ``GET /dd/v1/devices/{id}/actions`` after every sync that
had a trigger (the daily upload, "send now", an action), and every
``schedule.action_poll_interval_s`` seconds when that is set. Each new action id gets
a journal file ``<data_dir>/actions/<id>.json`` (atomic writes) *before* anything
else happens; ids already in the journal are not run again. Admission
(``core.actions.admit``) rejects expired, locked-down, unsupported, disabled,
badly-parametrised and unconsented actions; the others run one at a time, in the order
the server listed them. Every result is written to the journal before it is sent, and
pending results are re-sent (with backoff) until the server has them: first thing after
a start, before each poll, and whenever their retry time comes.

The action types:

* ``send_meters_now``: build a payload with trigger "action" and upload it at once;
  succeeded when the server stored it (else failed; the payload stays queued).
* ``get_status``: power, alerts, latest faults, firmware, agent state in the detail.
* ``reboot``: "succeeded" is written to the journal, then the device reboots; the
  result goes out once the agent runs again on the rebooted device.
* ``troubleshoot``: ``troubleshoot.self_test`` (DNS, TCP, proxy, TLS, clock offset)
  plus the latest status.
* ``print_test_page``: the model prints its configuration report (one impression);
  the text, with this module's settings appended, is kept in
  ``<data_dir>/reports/<timestamp>-config-report.txt``, whose path is in the detail.
* ``upgrade_firmware``: ``{"install": "now" | "window"}`` (default window; no window
  configured means now). The result is reported when the update ends: committed, or
  rolled back with the reason. The action stays RUNNING meanwhile, across reboots.
* ``upload_logs``: the engineering log, only with ``services.consent_engineering``.
* ``start_managed``: ``{"interval_s": 3600..86400, "enabled": true|false}``: the
  device is "managed": besides the daily sync it sends a payload every ``interval_s``
  (default 4 h). Persisted in ``<data_dir>/managed.json``; ``enabled: false`` stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from device_direct.core.actions import (
    Action,
    ActionJournal,
    ActionPolicy,
    ActionState,
    JournalEntry,
    Result,
    admit,
    entry_from_json,
    entry_to_json,
)
from device_direct.core.payload import Trigger
from device_direct.core.retry import Backoff
from device_direct.durable import atomic_write
from device_direct.errors import (
    DeviceDirectError,
    ModelError,
    RemoteProtocolError,
    ServerRejected,
    StorageError,
)

if TYPE_CHECKING:
    from device_direct.agent_host import AgentHost
    from device_direct.transport import Transport

log = logging.getLogger("device_direct.actions")

JOURNAL_DIR = "actions"
REPORTS_DIR = "reports"
MANAGED_FILE = "managed.json"
_REPORT_BACKOFF = Backoff(base_s=60.0, cap_s=6 * 3600.0)


class ActionRunner:
    """Polls and runs the server's actions for one agent; the journal lives on disk."""

    def __init__(self, agent: AgentHost) -> None:
        self.agent = agent
        self.dir = agent.data_dir / JOURNAL_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        services = agent.config.services
        self.policy = ActionPolicy(locked_down=services.locked_down,
                                   disabled=frozenset(services.disabled_actions),
                                   consent_engineering=services.consent_engineering)
        self.journal = ActionJournal({e.action.id: e for e in self._load()})
        self.poll_interval_s = agent.config.schedule.action_poll_interval_s
        self.next_poll: datetime | None = None
        self.managed = self._load_managed()
        self.polls = 0
        self._started = False

    # -- what the agent calls -------------------------------------------------------------

    def on_boot(self, now: datetime) -> None:
        """At agent start: settle actions a restart cut off (never run twice)."""
        firmware = self.agent.firmware
        for entry in self.journal.entries():
            if entry.state is not ActionState.RUNNING:
                continue
            resumes = (entry.action.type == "upgrade_firmware" and firmware.busy
                       and firmware.record.action_id == entry.action.id)
            self._store(self.journal.restart(entry.action.id, now, resumes=resumes))
            log.warning("action %s (%s) was running at restart: %s", entry.action.id,
                        entry.action.type, "resumes" if resumes else "reported as interrupted")
        for action_id in self.journal.prunable(now):
            self.journal.forget(action_id)
            with contextlib.suppress(FileNotFoundError):
                (self.dir / _file_name(action_id)).unlink()
        if self.poll_interval_s > 0:
            self.next_poll = now
        self._started = True

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest of: a pending result's retry, the interval poll, a managed sync."""
        times = [t for t in (self.journal.next_report_at(), self.next_poll,
                             self._managed_due()) if t is not None]
        return min(times) if times else None

    async def run_due(self, transport: Transport, now: datetime) -> None:
        """Do what :meth:`next_due` said was due."""
        await self.report_pending(transport)
        if self.next_poll is not None and self.next_poll <= now:
            await self.poll(transport)
        due = self._managed_due()
        if due is not None and due <= now:
            self.managed["last"] = now.isoformat()
            self._save_managed()
            log.info("managed device: periodic transfer")
            # Asked for by the server's start_managed action: not the day's transfer.
            self.agent.send_now("action")

    async def after_sync(self, transport: Transport, trigger: Trigger) -> None:
        """Post-sync hook: poll for actions after every triggered sync."""
        await self.poll(transport)

    async def poll(self, transport: Transport) -> None:
        """Report what is pending, fetch the action list, run what is new."""
        now = self.agent.clock.now()
        if self.poll_interval_s > 0:
            self.next_poll = now + timedelta(seconds=self.poll_interval_s)
        await self.report_pending(transport)
        actions = await transport.poll_actions()
        self.polls += 1
        new: list[str] = []
        for raw in actions:
            try:
                action = Action.from_wire(raw)
            except RemoteProtocolError as exc:
                log.error("action ignored: %s", exc)
                continue
            if action.id in new:
                # Listed twice in one answer: it is already lined up to run once.
                log.warning("action %s listed twice in one answer: run once", action.id)
                continue
            entry = self.journal.receive(action, now)
            if entry is not None:
                self._store(entry)
                new.append(action.id)
                continue
            known = self.journal.get(action.id)
            assert known is not None
            self._store(known)
            if known.state is ActionState.RECEIVED:
                new.append(action.id)  # received before a restart, never started
            else:
                log.info("action %s delivered again (state %s): not run again", action.id,
                         known.state.value)
        for action_id in new:
            await self._run(action_id, transport)
            await self.report_pending(transport)
        await self.report_pending(transport)

    async def report_pending(self, transport: Transport) -> None:
        """Send every result that is due; a failure waits for a backoff delay."""
        for entry in self.journal.to_report(self.agent.clock.now()):
            assert entry.result is not None
            aid = entry.action.id
            try:
                await transport.report_action(aid, entry.result.status, entry.result.detail)
            except ServerRejected as exc:
                # 4xx: the server will never take it (unknown action): stop trying.
                log.error("result of action %s refused by the server: %s", aid, exc)
                self._store(self.journal.reported(aid, self.agent.clock.now()))
                continue
            except DeviceDirectError as exc:
                delay = replace(_REPORT_BACKOFF, attempt=min(entry.report_attempts, 30)
                                ).next_delay(self.agent.rng)
                self._store(self.journal.send_failed(aid, self.agent.clock.now(), delay))
                log.warning("result of action %s not sent (%s); retry in %.0f s", aid, exc,
                            delay)
                return
            done = self.journal.reported(aid, self.agent.clock.now())
            self._store(done)
            self.agent.audit.record(self.agent.clock.now(), "action-result", action_id=aid,
                                    type=entry.action.type, status=entry.result.status)
            log.info("action %s (%s): %s reported", aid, entry.action.type,
                     entry.result.status)

    def firmware_result(self, action_id: str, result: Result) -> None:
        """The firmware updater's outcome for an ``upgrade_firmware`` action."""
        entry = self.journal.get(action_id)
        if entry is None or entry.state is not ActionState.RUNNING:
            return  # already settled (a power cut repeated the last step)
        self._store(self.journal.finish(action_id, result, self.agent.clock.now()))

    # -- running --------------------------------------------------------------------------

    async def _run(self, action_id: str, transport: Transport) -> None:
        entry = self.journal.get(action_id)
        assert entry is not None
        now = self.agent.clock.now()
        refusal = admit(entry.action, now, self.policy)
        if refusal is not None:
            self._store(self.journal.decide(action_id, refusal, now))
            log.info("action %s (%s) %s: %s", action_id, entry.action.type, refusal.status,
                     refusal.detail.get("message"))
            return
        self._store(self.journal.start(action_id))
        log.info("action %s (%s) runs", action_id, entry.action.type)
        try:
            if entry.action.type == "reboot":
                await self._reboot(entry)
                return
            result = await self._handle(entry, transport)
        except ModelError as exc:
            result = Result("failed", {"message": f"the device refused: {exc}"})
        except DeviceDirectError as exc:
            result = Result("failed", {"message": f"{type(exc).__name__}: {exc}"})
        if result is None:
            return  # finishes later (firmware update in progress)
        current = self.journal.get(action_id)
        if current is not None and current.state is ActionState.RUNNING:
            self._store(self.journal.finish(action_id, result, self.agent.clock.now()))

    async def _handle(self, entry: JournalEntry, transport: Transport) -> Result | None:
        kind = entry.action.type
        params = entry.action.params
        agent = self.agent
        if kind == "get_status":
            # Imported when run, as below: the self-test module is not needed by an
            # agent that never gets these actions, and would otherwise load at every start.
            from device_direct.troubleshoot import status

            return Result("succeeded", {**status(agent.model), "agent": agent.status()})
        if kind == "troubleshoot":
            from device_direct.troubleshoot import self_test

            report = await self_test(agent.config, transport, agent.identity, agent.model,
                                     route=agent.proxy_info())
            return Result("succeeded", report)
        if kind == "print_test_page":
            return await self._print_test_page()
        if kind == "upload_logs":
            text = agent.model.engineering_log() or "(the engineering log is empty)"
            await transport.upload_logs(text)
            return Result("succeeded", {"bytes": len(text.encode())})
        if kind == "send_meters_now":
            return await self._send_meters_now(transport)
        if kind == "start_managed":
            return self._start_managed(params)
        if kind == "upgrade_firmware":
            return await agent.firmware.check(
                transport, action_id=entry.action.id,
                install_now=params.get("install") == "now"
                or agent.config.services.maintenance_window is None)
        raise AssertionError(f"admitted an action with no handler: {kind}")

    async def _reboot(self, entry: JournalEntry) -> None:
        aid = entry.action.id
        # The result is "the device came back": written now, sent after the boot.
        self._store(self.journal.finish(aid, Result("succeeded", {
            "message": "the device rebooted", "requested_at": self.agent.clock.now().isoformat(),
        }), self.agent.clock.now()))
        try:
            await self.agent.model.reboot()
        except ModelError as exc:
            self._store(self.journal.revise(aid, Result("failed", {
                "message": f"the device refused to reboot: {exc}"})))
        self.agent.audit.record(self.agent.clock.now(), "reboot", action_id=aid)

    async def _print_test_page(self) -> Result:
        agent = self.agent
        text = await agent.model.print_configuration_report()
        now = agent.clock.now()
        folder = agent.data_dir / REPORTS_DIR
        path = folder / f"{now:%Y%m%dT%H%M%SZ}-config-report.txt"
        try:
            folder.mkdir(exist_ok=True)
            atomic_write(path, (text.rstrip("\n") + "\n" + self._settings_section()).encode())
        except OSError as exc:
            return Result("failed", {"message": f"printed, but the copy was not saved: {exc}",
                                     "impressions": 1})
        return Result("succeeded", {"message": "configuration report printed",
                                    "path": str(path), "impressions": 1})

    def _settings_section(self) -> str:
        cfg = self.agent.config
        s = cfg.services
        reg = self.agent.identity.registration
        managed = (f"every {self.managed.get('interval_s')} s" if self.managed.get("enabled")
                   else "no")
        lines = [
            "[Remote services: Device Direct settings]",
            f"  Server           {cfg.server.url}",
            f"  Device id        {reg.device_id if reg else '(not registered)'}",
            f"  Daily sync       {cfg.schedule.upload_time:%H:%M} {cfg.device.time_zone}",
            f"  Security mode    {s.security_mode}",
            f"  Disabled actions {', '.join(s.disabled_actions) or '-'}",
            f"  Auto firmware    {'on' if s.auto_firmware else 'off'}"
            f" (window {_window_text(cfg)})",
            f"  Engineering data {'consented' if s.consent_engineering else 'not consented'}",
            f"  Proxy            {cfg.proxy.mode}",
            f"  Managed          {managed}",
            "",
        ]
        return "\n".join(lines)

    async def _send_meters_now(self, transport: Transport) -> Result:
        agent = self.agent
        upload_id = await agent.queue_payload("action")
        if upload_id is None:
            return Result("failed", {"message": "no payload could be built (device off, or "
                                                f"storage): {agent.stats.last_error}"})
        await agent.flush(transport)
        queued = {e.upload_id for e in agent.outbox.entries()}
        if upload_id in queued:
            return Result("failed", {"message": "the payload is queued; its upload failed: "
                                                f"{agent.stats.last_error}",
                                     "upload_id": upload_id, "queued": True})
        return Result("succeeded", {"upload_id": upload_id})

    def _start_managed(self, params: Any) -> Result:
        enabled = params.get("enabled", True)
        interval = params.get("interval_s", self.policy.managed_interval_s)
        self.managed = {"enabled": enabled, "interval_s": interval,
                        "last": self.agent.clock.now().isoformat()}
        self._save_managed()
        return Result("succeeded", {"managed": enabled, "interval_s": interval})

    # -- storage ----------------------------------------------------------------------------

    def _store(self, entry: JournalEntry) -> None:
        self.journal.put(entry)
        path = self.dir / _file_name(entry.action.id)
        try:
            atomic_write(path, json.dumps(entry_to_json(entry), sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(f"cannot write action journal {path}: {exc}") from exc

    def _load(self) -> list[JournalEntry]:
        entries = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                entry = entry_from_json(json.loads(path.read_bytes()))
                canonical = self.dir / _file_name(entry.action.id)
                if path != canonical:  # named by an earlier version (':' as '_')
                    os.replace(path, canonical)
                entries.append(entry)
            except (OSError, ValueError, TypeError) as exc:
                # Moved aside, not deleted: QA can look at it; the action is not rerun
                # only if the server does not list it again (its id is lost with it).
                log.error("action journal file %s unreadable (%s); moved aside", path, exc)
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_suffix(".bad"))
        for tmp in self.dir.glob("*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        return entries

    def _managed_due(self) -> datetime | None:
        if not self.managed.get("enabled"):
            return None
        try:
            last = datetime.fromisoformat(str(self.managed["last"]))
            return last + timedelta(seconds=int(self.managed["interval_s"]))
        except (KeyError, ValueError, TypeError):
            return None

    def _load_managed(self) -> dict[str, Any]:
        path = self.agent.data_dir / MANAGED_FILE
        try:
            doc = json.loads(path.read_bytes())
            return doc if isinstance(doc, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("managed-mode file %s unreadable (%s); not managed", path, exc)
            return {}

    def _save_managed(self) -> None:
        try:
            atomic_write(self.agent.data_dir / MANAGED_FILE, json.dumps(self.managed).encode())
        except OSError as exc:
            raise StorageError(f"cannot save the managed-mode setting: {exc}") from exc


def _file_name(action_id: str) -> str:
    # Ids are validated to [A-Za-z0-9._:-]; ':' is not welcome in every file system, so
    # it becomes '+', which no id holds ('_' did: "act:1" and "act_1" shared one file,
    # and after a restart one of the two could run again).
    return action_id.replace(":", "+") + ".json"


def _window_text(cfg: Any) -> str:
    w = cfg.services.maintenance_window
    return f"{w.start:%H:%M}-{w.end:%H:%M}" if w is not None else "none"
