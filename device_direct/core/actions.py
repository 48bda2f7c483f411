"""Remote actions: admission rules and the per-action journal, sans-I/O.

Theory of operation
-------------------
The server hands out actions ``{id, type, params, issued_at, expires_at}``. Each one
the device has seen gets a journal entry, persisted by the shell before anything is
done, and moves through::

    RECEIVED --start-----> RUNNING --finish--> RESULT_PENDING --reported--> REPORTED
    RECEIVED --decide----> RESULT_PENDING          (rejected / expired: never run)
    RUNNING  --restart---> RESULT_PENDING          (power loss mid-run: "failed",
                                                    never run a second time)
    RUNNING  --resume----> RUNNING                 (work that outlives a reboot:
                                                    a firmware update in progress)
    RESULT_PENDING --send-failed--> RESULT_PENDING (re-sent at the next chance)
    RESULT_PENDING --revise-------> RESULT_PENDING (a result persisted ahead of a
                                                    reboot turned out wrong)
    REPORTED --redelivered--> RESULT_PENDING       (the server lost our result: send
                                                    the stored one again, never rerun)

A redelivery of an action in any other state changes nothing. Every pair is in
:data:`TRANSITIONS`; any other pair is a bug on our side and raises
:class:`LocalProtocolError`.

The rules that make this survive power loss: an id already in the journal is never
started again; the result is written to the journal before it is sent, and a
``reboot`` writes its "succeeded" result *before* the device goes down, so the result
is reported after the device is back (as TR-069 reports "M Reboot" with its
CommandKey). Admission (:func:`admit`) decides, in this order: expired, locked-down,
unsupported, disabled, bad parameters, missing consent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from device_direct.errors import LocalProtocolError, RemoteProtocolError

ResultStatus = Literal["succeeded", "failed", "rejected", "expired"]
RESULT_STATUSES: tuple[ResultStatus, ...] = ("succeeded", "failed", "rejected", "expired")

ACTION_TYPES: tuple[str, ...] = (
    "send_meters_now",
    "get_status",
    "reboot",
    "troubleshoot",
    "print_test_page",
    "upgrade_firmware",
    "upload_logs",
    "start_managed",
)
MANAGED_MIN_INTERVAL_S = 3600
MANAGED_MAX_INTERVAL_S = 86400
MANAGED_DEFAULT_INTERVAL_S = 4 * 3600
# After this long past its expiry an entry is only kept for duplicate detection; after
# twice that it is pruned (the server stops handing out an action once it expires).
JOURNAL_KEEP = timedelta(days=30)
_ACTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class ActionState(enum.Enum):
    RECEIVED = "received"
    RUNNING = "running"
    RESULT_PENDING = "result-pending"
    REPORTED = "reported"


class ActionEvent(enum.Enum):
    START = "start"  # admitted: the handler runs now
    DECIDE = "decide"  # rejected or expired without running
    FINISH = "finish"  # the handler returned a result
    RESTART = "restart"  # the agent started and found the entry running
    RESUME = "resume"  # ... and the work goes on after the restart (firmware)
    SEND_FAILED = "send-failed"  # the result did not reach the server
    REVISE = "revise"  # replace a result that was persisted ahead of time
    REPORTED = "reported"  # the server has the result
    REDELIVERED = "redelivered"  # the server listed the action again


_S, _E = ActionState, ActionEvent
TRANSITIONS: dict[tuple[ActionState, ActionEvent], ActionState] = {
    (_S.RECEIVED, _E.START): _S.RUNNING,
    (_S.RECEIVED, _E.DECIDE): _S.RESULT_PENDING,
    (_S.RECEIVED, _E.REDELIVERED): _S.RECEIVED,
    (_S.RUNNING, _E.FINISH): _S.RESULT_PENDING,
    (_S.RUNNING, _E.RESTART): _S.RESULT_PENDING,
    (_S.RUNNING, _E.RESUME): _S.RUNNING,
    (_S.RUNNING, _E.REDELIVERED): _S.RUNNING,
    (_S.RESULT_PENDING, _E.SEND_FAILED): _S.RESULT_PENDING,
    (_S.RESULT_PENDING, _E.REVISE): _S.RESULT_PENDING,
    (_S.RESULT_PENDING, _E.REPORTED): _S.REPORTED,
    (_S.RESULT_PENDING, _E.REDELIVERED): _S.RESULT_PENDING,
    (_S.REPORTED, _E.REDELIVERED): _S.RESULT_PENDING,
}


def transition(state: ActionState, event: ActionEvent) -> ActionState:
    """The state after ``event``; LocalProtocolError when the table has no such pair."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"action journal entry cannot take event {event.value!r} in state {state.value!r}"
        ) from None


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """One action as the server sent it, validated."""

    id: str
    type: str
    params: Mapping[str, Any]
    issued_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if not _ACTION_ID.match(self.id):
            raise ValueError(f"action id must be 1-128 URL-safe characters, got {self.id!r}")
        if not self.type or len(self.type) > 64:
            raise ValueError(f"action type must be 1-64 characters, got {self.type!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError("action params must be a JSON object")
        for name in ("issued_at", "expires_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"Action.{name} must be an aware datetime, got {value!r}")

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Action:
        """Parse one entry of ``GET .../actions``; RemoteProtocolError names the field."""
        try:
            params = doc.get("params", {})
            if params is None:
                params = {}
            return cls(
                id=_wire_str(doc, "id"),
                type=_wire_str(doc, "type"),
                params=dict(params) if isinstance(params, Mapping) else params,
                issued_at=_wire_time(doc, "issued_at"),
                expires_at=_wire_time(doc, "expires_at"),
            )
        except ValueError as exc:
            raise RemoteProtocolError(f"GET /dd/v1/devices/{{id}}/actions: {exc}") from None


def _wire_str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"field '{key}' must be a string, got {value!r}")
    return value


def _wire_time(doc: Mapping[str, Any], key: str) -> datetime:
    text = _wire_str(doc, key)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"field '{key}' is not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"field '{key}' has no time zone: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Result:
    """What is reported for an action."""

    status: ResultStatus
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"result status must be one of {RESULT_STATUSES}, got "
                             f"{self.status!r}")
        if not isinstance(self.detail, Mapping):
            raise ValueError("result detail must be a mapping (a JSON object)")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The journal's record of one action."""

    action: Action
    state: ActionState
    received_at: datetime
    result: Result | None = None
    report_attempts: int = 0
    next_report_at: datetime | None = None
    reported_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.state, ActionState):
            raise ValueError(f"JournalEntry.state must be an ActionState, got {self.state!r}")
        needs_result = self.state in (ActionState.RESULT_PENDING, ActionState.REPORTED)
        if needs_result != (self.result is not None):
            raise ValueError(f"entry {self.action.id}: a result belongs with states "
                             f"result-pending and reported only (state {self.state.value})")
        if self.report_attempts < 0:
            raise ValueError("report_attempts must be >= 0")

    def step(self, event: ActionEvent, **changes: Any) -> JournalEntry:
        """This entry after ``event`` (checked against the table), with ``changes``."""
        return replace(self, state=transition(self.state, event), **changes)


# -- admission ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    """What the configuration allows (from ``services.*``)."""

    locked_down: bool = False
    disabled: frozenset[str] = frozenset()
    consent_engineering: bool = False
    managed_interval_s: int = MANAGED_DEFAULT_INTERVAL_S


def admit(action: Action, now: datetime, policy: ActionPolicy) -> Result | None:
    """None when ``action`` may run now, else the result to report instead of running."""
    if action.expires_at <= now:
        return Result("expired", {"message": "the action expired before it could run",
                                  "expires_at": action.expires_at.isoformat()})
    if policy.locked_down:
        return Result("rejected", {"message": "locked-down",
                                   "reason": "the device is in locked-down security mode: "
                                             "no remote commands"})
    if action.type not in ACTION_TYPES:
        return Result("rejected", {"message": "unsupported",
                                   "reason": f"unknown action type {action.type!r}"})
    if action.type in policy.disabled:
        return Result("rejected", {"message": "disabled",
                                   "reason": f"{action.type} is switched off on this device"})
    problem = params_problem(action.type, action.params)
    if problem is not None:
        return Result("rejected", {"message": "invalid-params", "reason": problem})
    if action.type == "upload_logs" and not policy.consent_engineering:
        return Result("rejected", {"message": "no-consent",
                                   "reason": "the customer has not consented to sending "
                                             "engineering logs"})
    return None


# Allowed parameters per type: name -> checker returning a problem or None.
def _install(value: object) -> str | None:
    return None if value in ("now", "window") else "'install' must be 'now' or 'window'"


def _interval(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not (
        MANAGED_MIN_INTERVAL_S <= value <= MANAGED_MAX_INTERVAL_S
    ):
        return (f"'interval_s' must be an integer from {MANAGED_MIN_INTERVAL_S} to "
                f"{MANAGED_MAX_INTERVAL_S}")
    return None


def _enabled(value: object) -> str | None:
    return None if isinstance(value, bool) else "'enabled' must be true or false"


_PARAMS: dict[str, dict[str, Any]] = {
    "send_meters_now": {},
    "get_status": {},
    "reboot": {},
    "troubleshoot": {},
    "print_test_page": {},
    "upgrade_firmware": {"install": _install},
    "upload_logs": {},
    "start_managed": {"interval_s": _interval, "enabled": _enabled},
}


def params_problem(action_type: str, params: Mapping[str, Any]) -> str | None:
    """What is wrong with ``params`` for ``action_type`` (None when they are fine)."""
    allowed = _PARAMS.get(action_type)
    if allowed is None:
        return f"unknown action type {action_type!r}"
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        return (f"unknown parameter(s) {', '.join(unknown)} for {action_type}; allowed: "
                f"{', '.join(sorted(allowed)) or 'none'}")
    for name, check in allowed.items():
        if name in params:
            problem: str | None = check(params[name])
            if problem is not None:
                return problem
    return None


# -- the journal ----------------------------------------------------------------------------------


class ActionJournal:
    """All journal entries by action id. Methods return the changed entry; the shell
    persists it before acting on it."""

    def __init__(self, entries: Mapping[str, JournalEntry] | None = None) -> None:
        self._entries: dict[str, JournalEntry] = dict(entries or {})

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._entries

    def get(self, action_id: str) -> JournalEntry | None:
        return self._entries.get(action_id)

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest received first."""
        return sorted(self._entries.values(), key=lambda e: (e.received_at, e.action.id))

    def put(self, entry: JournalEntry) -> JournalEntry:
        self._entries[entry.action.id] = entry
        return entry

    def receive(self, action: Action, now: datetime) -> JournalEntry | None:
        """A polled action. Returns a new RECEIVED entry, or None when the id is known
        (a known REPORTED entry goes back to RESULT_PENDING to resend its result)."""
        known = self._entries.get(action.id)
        if known is None:
            return self.put(JournalEntry(action, ActionState.RECEIVED, received_at=now))
        after = known.step(ActionEvent.REDELIVERED)
        if after.state is not known.state:
            after = replace(after, next_report_at=now)
            self.put(after)
            return None
        return None

    def start(self, action_id: str) -> JournalEntry:
        return self.put(self._need(action_id).step(ActionEvent.START))

    def decide(self, action_id: str, result: Result, now: datetime) -> JournalEntry:
        return self.put(self._need(action_id).step(ActionEvent.DECIDE, result=result,
                                                    next_report_at=now))

    def finish(self, action_id: str, result: Result, now: datetime) -> JournalEntry:
        return self.put(self._need(action_id).step(ActionEvent.FINISH, result=result,
                                                    next_report_at=now))

    def revise(self, action_id: str, result: Result) -> JournalEntry:
        return self.put(self._need(action_id).step(ActionEvent.REVISE, result=result))

    def restart(self, action_id: str, now: datetime, *, resumes: bool) -> JournalEntry:
        """The agent started and found ``action_id`` running (it was cut off)."""
        entry = self._need(action_id)
        if resumes:
            return self.put(entry.step(ActionEvent.RESUME))
        result = Result("failed", {"message": "interrupted",
                                   "reason": "the device restarted while the action ran; "
                                             "it is not run a second time"})
        return self.put(entry.step(ActionEvent.RESTART, result=result, next_report_at=now))

    def reported(self, action_id: str, now: datetime) -> JournalEntry:
        return self.put(self._need(action_id).step(ActionEvent.REPORTED, reported_at=now,
                                                    next_report_at=None))

    def send_failed(self, action_id: str, now: datetime, delay_s: float) -> JournalEntry:
        entry = self._need(action_id)
        return self.put(entry.step(ActionEvent.SEND_FAILED,
                                   report_attempts=entry.report_attempts + 1,
                                   next_report_at=now + timedelta(seconds=delay_s)))

    def to_report(self, now: datetime) -> list[JournalEntry]:
        """Entries whose result is due to be sent, oldest first."""
        return [e for e in self.entries() if e.state is ActionState.RESULT_PENDING
                and (e.next_report_at is None or e.next_report_at <= now)]

    def next_report_at(self) -> datetime | None:
        """When the earliest pending result is due to be (re)sent."""
        times = [e.next_report_at or e.received_at for e in self._entries.values()
                 if e.state is ActionState.RESULT_PENDING]
        return min(times) if times else None

    def prunable(self, now: datetime) -> list[str]:
        """Reported entries long past expiry: safe to forget."""
        return [e.action.id for e in self._entries.values()
                if e.state is ActionState.REPORTED
                and e.action.expires_at + JOURNAL_KEEP <= now]

    def forget(self, action_id: str) -> None:
        self._entries.pop(action_id, None)

    def _need(self, action_id: str) -> JournalEntry:
        entry = self._entries.get(action_id)
        if entry is None:
            raise LocalProtocolError(f"no journal entry for action {action_id!r}")
        return entry


# -- persistence form ---------------------------------------------------------------------------


def entry_to_json(entry: JournalEntry) -> dict[str, Any]:
    """The JSON document of one entry (what the shell writes to disk)."""
    a = entry.action

    def t(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "version": 1,
        "action": {"id": a.id, "type": a.type, "params": dict(a.params),
                   "issued_at": a.issued_at.isoformat(), "expires_at": a.expires_at.isoformat()},
        "state": entry.state.value,
        "received_at": entry.received_at.isoformat(),
        "result": ({"status": entry.result.status, "detail": dict(entry.result.detail)}
                   if entry.result is not None else None),
        "report_attempts": entry.report_attempts,
        "next_report_at": t(entry.next_report_at),
        "reported_at": t(entry.reported_at),
    }


def entry_from_json(doc: Mapping[str, Any]) -> JournalEntry:
    """Parse :func:`entry_to_json` output; ValueError naming the bad field."""
    if not isinstance(doc, Mapping) or doc.get("version") != 1:
        raise ValueError("not a version 1 journal entry")
    raw = doc.get("action")
    if not isinstance(raw, Mapping):
        raise ValueError("field 'action' must be an object")
    try:
        action = Action.from_wire(raw)
    except RemoteProtocolError as exc:
        raise ValueError(str(exc)) from None
    try:
        state = ActionState(doc.get("state"))
    except ValueError:
        raise ValueError(f"field 'state' is not a journal state: {doc.get('state')!r}") from None
    res = doc.get("result")
    result = None
    if res is not None:
        if not isinstance(res, Mapping) or not isinstance(res.get("detail", {}), Mapping):
            raise ValueError("field 'result' must be {status, detail}")
        status: Any = res.get("status")
        result = Result(status, dict(res.get("detail", {})))
    attempts = doc.get("report_attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise ValueError("field 'report_attempts' must be an integer")

    def t(key: str) -> datetime | None:
        value = doc.get(key)
        return _wire_time(doc, key) if value is not None else None

    received = t("received_at")
    if received is None:
        raise ValueError("field 'received_at' is required")
    return JournalEntry(action=action, state=state, received_at=received, result=result,
                        report_attempts=attempts, next_report_at=t("next_report_at"),
                        reported_at=t("reported_at"))
