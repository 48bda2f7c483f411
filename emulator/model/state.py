"""The persistent state of one emulated device, and the operations that change it.

Sans-I/O: every method takes the time as epoch seconds (``t``) and changes plain ints
and lists; no clock, no files, no asyncio. The async shell (``device.py``) decides when
to call what, and persists :meth:`DeviceState.to_dict` after each change.

Memory matters (ten thousand devices in one process): slots, ints, and compact arrays
for the bounded histories (fault history and job log hold ints only; names and
descriptions are looked up in the profile when a snapshot is built).
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from emulator.errors import StateStorageError
from emulator.model.plan import (
    A4_MM,
    A4_UNITS,
    ALERT_CODE_LIFE_OVER,
    ALERT_GROUP_GENERAL,
    ALERT_GROUP_SUPPLIES,
    DRIVE_COLOR,
    DRIVE_SHEETS,
    DRIVE_TONER,
    Plan,
)

if TYPE_CHECKING:
    from device_direct.model import JobRecord

STATE_VERSION = 2  # 2: replenishment, service visits, replacement log (1 still loads)
FAULT_HISTORY = 40  # entries kept, newest first
FAULT_FIELDS = 3  # catalog index, epoch seconds, total impressions then
JOB_LOG = 20  # records kept, newest first
JOB_FIELDS = 6  # kind, epoch, pages, impressions, user number, job number
ENG_LOG_LINES = 50
REPL_LOG = 20  # replacements kept, newest first
# kind (REPL_SUPPLY/REPL_PART), index, epoch, total impressions then, what the old unit
# had done (supply: its impressions; part: its HFSI count), the order that brought the
# new unit (epoch, 0 = none) and the day it was due (ordinal, 0 = none)
REPL_FIELDS = 7
REPL_SUPPLY, REPL_PART = 0, 1
JOB_KIND_CODES = ("print", "copy", "fax", "scan", "report")

# Alert sources (what an alert row is about).
SRC_SUPPLY = 0
SRC_FAULT = 1
SRC_HFSI = 2  # preventive maintenance overdue for an HFSI item
SRC_DOOR = 3  # a cover or door left open (QA): Printer-MIB doorOpen(501), cover group
ALERT_DOOR_OPEN, ALERT_GROUP_COVER, SEVERITY_CRITICAL = 501, 6, 3

# Supply status codes.
OK, LOW, OUT = 0, 1, 2

# Alert row: (index, source, source index, code, severity, group, group index, epoch, ticks)
AlertRow = tuple[int, int, int, int, int, int, int, int, int]

_METERS = (
    "black", "color", "black_large", "color_large", "sheets", "duplex_sheets",
    "print_imps", "copy_imps", "fax_imps", "report_imps", "scan_images", "fax_sent",
    "power_on_count", "pages_unprinted", "visit_day", "switched_off",
)


def stamp(t: float) -> str:
    """Epoch seconds as the ISO-8601 UTC text used in logs."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeviceState:
    """All persistent data of one device. Internal units: see ``plan.py``."""

    __slots__ = (
        "active_bank", "active_fault", "active_fault_day", "alerts", "bank_sha",
        "bank_versions", "black", "black_large", "boot_epoch", "cmd_seq", "color",
        "color_large", "copy_imps", "duplex_sheets", "eng_log", "fault_log", "fax_imps",
        "fax_sent", "hfsi_due_at", "hfsi_raw", "hfsi_repl", "hfsi_repl_at",
        "install_epoch", "job_log", "job_records", "job_seq", "job_text", "kept_views",
        "last_day", "next_alert", "nvm", "pages_unprinted", "power_on_count", "print_imps",
        "repl_log", "report_imps", "scan_images", "sheets", "sup_due", "sup_imps",
        "sup_installed", "sup_order_at", "sup_repl", "sup_spare", "sup_spare_due",
        "sup_spare_order", "sup_status", "sup_used", "supply_units", "switched_off",
        "trial", "trial_boots", "unscheduled", "visit_day",
    )

    def __init__(self, plan: Plan, *, install_epoch: int, system_version: str) -> None:
        n_sup = len(plan.profile.supplies)
        n_hfsi = len(plan.profile.hfsi)
        self.black = self.color = self.black_large = self.color_large = 0
        self.sheets = self.duplex_sheets = 0
        self.print_imps = self.copy_imps = self.fax_imps = self.report_imps = 0
        self.scan_images = self.fax_sent = self.power_on_count = 0
        self.sup_used = [0] * n_sup
        self.sup_imps = [0] * n_sup
        self.sup_installed = [install_epoch] * n_sup
        self.sup_repl = [0] * n_sup
        self.sup_status = [OK] * n_sup
        self.hfsi_raw = [0] * n_hfsi
        self.hfsi_repl = [0] * n_hfsi
        self.hfsi_repl_at = [-1] * n_hfsi
        # Replenishment: the pending order (epoch placed, local day due; 0 = none) and
        # the units on site with the order (epoch, due day) that brought the newest one.
        self.sup_order_at = [0] * n_sup
        self.sup_due = [0] * n_sup
        self.sup_spare = [0] * n_sup
        self.sup_spare_order = [0] * n_sup
        self.sup_spare_due = [0] * n_sup
        self.hfsi_due_at = [0] * n_hfsi  # epoch the item reached its life, 0 = not due
        self.visit_day = 0  # local day (ordinal) of the next technician visit, 0 = none
        self.pages_unprinted = 0  # impressions not made: a blocking supply was empty
        self.switched_off = 0  # 1: switched off for a day nobody printed (on next morning)
        self.repl_log = array("q")
        self.alerts: list[AlertRow] = []
        self.next_alert = 1
        self.fault_log = array("q")
        self.active_fault = -1
        self.active_fault_day = 0
        self.job_log = array("q")
        self.job_seq = 0
        # Names given with a commanded job, by job number; synthetic names need none.
        self.job_text: dict[int, tuple[str, str, str]] = {}
        self.eng_log: list[str] = []
        self.nvm: dict[str, int] = {}
        self.bank_versions = [system_version, ""]
        self.bank_sha = ["", ""]
        self.active_bank = 0
        self.trial = False
        self.trial_boots = 0
        self.install_epoch = install_epoch
        self.last_day = 0
        self.cmd_seq = 0
        self.boot_epoch = float(install_epoch)  # volatile: not persisted
        # Volatile, made by the first snapshot (an idle device holds neither): the
        # records snapshot.jobs last made from the job log, by job number (a logged job
        # never changes; the next snapshot makes only the new ones); and per supply, the
        # unit snapshot.supplies last described (its replacement count and install
        # epoch, the serial and install time made from them, the device serial).
        self.job_records: dict[int, JobRecord] | None = None
        self.supply_units: list[tuple[int, int, str, datetime, str] | None] | None = None
        # Volatile, made by the first snapshot: views (the properties, the NVM settings,
        # the firmware state) as the last snapshot made them, with what they were made
        # from; equal inputs give the same objects again (see snapshot.kept_view).
        self.kept_views: dict[str, tuple[object, object]] | None = None
        # Volatile: an order may lack its delivery day (set by the upkeep, which has
        # the calendar). True after loading, to be safe.
        self.unscheduled = True

    # -- derived ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self.black + self.color

    def supply_level(self, plan: Plan, i: int) -> int:
        """Current level of supply ``i`` (0-based) in its own unit, 0..capacity."""
        cap = plan.profile.supplies[i].capacity
        level = cap - self.sup_used[i] * cap // plan.sup_milli_life[i]
        return max(0, level)

    def hfsi_count(self, plan: Plan, i: int) -> int:
        return self.hfsi_raw[i] // plan.hfsi_div[i]

    def log(self, t: float, text: str) -> None:
        """Append an engineering-log line (bounded; the oldest lines go)."""
        self.eng_log.append(f"{stamp(t)} {text}")
        if len(self.eng_log) > ENG_LOG_LINES:
            del self.eng_log[0]

    # -- alerts -------------------------------------------------------------------------

    def raise_alert(self, t: float, source: int, source_index: int, code: int,
                    severity: int, group: int, group_index: int) -> None:
        ticks = max(0, int((t - self.boot_epoch) * 100))
        self.alerts.append((self.next_alert, source, source_index, code, severity, group,
                            group_index, int(t), ticks))
        self.next_alert += 1

    def drop_alerts(self, source: int, source_index: int) -> None:
        if self.alerts:
            self.alerts = [a for a in self.alerts
                           if not (a[1] == source and a[2] == source_index)]

    def _supply_status_changed(self, plan: Plan, i: int, status: int, t: float) -> None:
        self.sup_status[i] = status
        self.drop_alerts(SRC_SUPPLY, i)
        if status != OK:
            code, severity = plan.supply_alert(i, status)
            self.raise_alert(t, SRC_SUPPLY, i, code, severity.value, ALERT_GROUP_SUPPLIES, i + 1)
            # Supplies replenishment: a low (or empty) unit with no spare on site and no
            # order pending orders one now; the calendar sets its delivery day later.
            if not self.sup_order_at[i] and not self.sup_spare[i]:
                self.order(plan, i, t)

    def order(self, plan: Plan, i: int, t: float) -> None:
        """Order a unit of supply ``i`` at ``t`` (delivery day set by the upkeep)."""
        self.sup_order_at[i] = int(t)
        self.sup_due[i] = 0
        self.unscheduled = True
        self.log(t, f"supply {i + 1} {plan.profile.supplies[i].name} ordered")

    def _hfsi_due(self, plan: Plan, i: int, t: float) -> None:
        """HFSI item ``i`` reached its life: preventive maintenance is overdue."""
        self.hfsi_due_at[i] = int(t)
        h = plan.profile.hfsi[i]
        self.raise_alert(t, SRC_HFSI, i, ALERT_CODE_LIFE_OVER, 4, ALERT_GROUP_GENERAL, i + 1)
        self.log(t, f"HFSI {h.id} {h.name} at its life {h.life}: maintenance overdue")

    # -- marking ------------------------------------------------------------------------

    def mark(self, plan: Plan, t: float, imps: int, color: int, sheets: int,
             large_imps: int, large_color: int, large_sheets: int,
             factors: tuple[int, ...], t_start: float | None = None) -> None:
        """Put ``imps`` impressions on ``sheets`` sheets: meters, supplies, HFSI.

        The marking runs evenly from ``t_start`` (default ``t``) to ``t``; a supply
        that crosses its low or empty mark is stamped at the instant it crossed.
        The caller adds the per-kind usage counters (print/copy/fax/report) and the
        duplex sheet count; this is the part every marking job shares.
        """
        t_a = t if t_start is None else t_start
        before = list(self.sup_used)
        self.black += imps - color
        self.color += color
        self.black_large += large_imps - large_color
        self.color_large += large_color
        self.sheets += sheets
        used = self.sup_used
        toner = 0
        drive = plan.sup_drive
        is_toner = plan.sup_toner
        n = len(used)
        # Toner first: the waste receptacle fills with what the toners gave up.
        for i in range(n):
            d = drive[i]
            if d == DRIVE_TONER:
                continue
            q = (color if d == DRIVE_COLOR else sheets if d == DRIVE_SHEETS else imps) * factors[i]
            used[i] += q
            if is_toner[i]:
                toner += q
            self.sup_imps[i] += color if d == DRIVE_COLOR else imps
        low_used = plan.sup_low_used
        order_used = plan.sup_order_used
        life = plan.sup_milli_life
        status = self.sup_status
        for i in range(n):
            if drive[i] == DRIVE_TONER:
                used[i] += toner
                self.sup_imps[i] += imps
            u = used[i]
            if u >= order_used[i] > before[i] and not self.sup_order_at[i] \
                    and not self.sup_spare[i]:
                self.order(plan, i, t)
            s = 2 if u >= life[i] else 1 if u >= low_used[i] else 0
            if s != status[i]:
                if s > status[i] and u > before[i]:  # when the mark was crossed
                    mark = life[i] if s == 2 else low_used[i]
                    share_done = max(0.0, min(1.0, (mark - before[i]) / (u - before[i])))
                    self._supply_status_changed(plan, i, s, t_a + (t - t_a) * share_done)
                else:
                    self._supply_status_changed(plan, i, s, t)
        if self.hfsi_raw:
            paper = sheets + large_sheets
            bases = (imps, sheets, paper * A4_UNITS, paper * A4_MM)
            raw = self.hfsi_raw
            share = plan.hfsi_share
            cap = plan.hfsi_cap
            life_raw = plan.hfsi_life_raw
            due = self.hfsi_due_at
            for i, rule in enumerate(plan.hfsi_rule):
                r = raw[i] + bases[rule] * share[i]
                raw[i] = r if r < cap[i] else cap[i]
                if r >= life_raw[i] and not due[i]:
                    self._hfsi_due(plan, i, t)

    def room(self, plan: Plan, imps: int, color: int, sheets: int,
             factors: tuple[int, ...], *, colour_blocks: bool = True,
             toner_rates: tuple[int, int] | None = None) -> tuple[float, int]:
        """How far a run of (imps, color, sheets) gets before a blocking supply is empty.

        Returns (share of the run, supply index) for the first blocking supply to run
        out, or (1.0 or more, -1) when the run completes. With ``colour_blocks`` False
        the colour-only supplies are left out (a colour toner stops colour pages only;
        the caller handles that). ``toner_rates``: ``plan.toner_per_impression(factors)``
        when the caller has it already.
        """
        drive = plan.sup_drive
        used = self.sup_used
        life = plan.sup_milli_life
        best, which = 2.0, -1
        toner = -1
        for i in plan.sup_critical_idx:
            d = drive[i]
            if d == DRIVE_COLOR:
                if not colour_blocks:
                    continue
                q = color * factors[i]
            elif d == DRIVE_SHEETS:
                q = sheets * factors[i]
            elif d == DRIVE_TONER:
                if toner < 0:
                    per_imp, per_color = toner_rates or plan.toner_per_impression(factors)
                    toner = imps * per_imp + color * per_color
                q = toner
            else:
                q = imps * factors[i]
            left = life[i] - used[i]
            if left <= 0:
                if q > 0 or d != DRIVE_COLOR:
                    return 0.0, i
                continue
            if q > 0:
                share = left / q
                if share < best:
                    best, which = share, i
        return best, which

    def blocked_by_supply(self, plan: Plan, needs_color: bool) -> int:
        """Index of an empty supply that stops this job, or -1."""
        for i, s in enumerate(self.sup_status):
            if s == OUT and plan.sup_critical[i] and (
                    needs_color or plan.sup_drive[i] != DRIVE_COLOR):
                return i
        return -1

    # -- faults -------------------------------------------------------------------------

    def record_fault(self, plan: Plan, index: int, t: float, impressions: int,
                     *, day: int) -> bool:
        """Add catalog fault ``index`` to the history; True when it stops the machine.

        A stopping fault becomes the active fault with a critical alert; the caller
        moves the power state. Faults that do not stop the machine are history only.
        """
        entry = array("q", (index, int(t), impressions))
        self.fault_log[0:0] = entry
        del self.fault_log[FAULT_HISTORY * FAULT_FIELDS:]
        spec = plan.profile.faults[index]
        self.log(t, f"fault {spec.code} {spec.description} at {impressions} impressions")
        if not spec.stops_machine or self.active_fault >= 0:
            return False
        self.active_fault = index
        self.active_fault_day = day
        self.raise_alert(t, SRC_FAULT, index, spec.alert_code, 3, spec.alert_group, 1)
        return True

    def clear_fault(self, plan: Plan, t: float, how: str) -> None:
        if self.active_fault < 0:
            return
        spec = plan.profile.faults[self.active_fault]
        self.drop_alerts(SRC_FAULT, self.active_fault)
        self.active_fault = -1
        self.log(t, f"fault {spec.code} cleared ({how})")

    # -- replacement --------------------------------------------------------------------

    def _log_replacement(self, kind: int, i: int, t: float, old: int, order_at: int,
                         due: int) -> None:
        entry = array("q", (kind, i, int(t), self.black + self.color, old, order_at, due))
        self.repl_log[0:0] = entry
        del self.repl_log[REPL_LOG * REPL_FIELDS:]

    def replace_supply(self, plan: Plan, i: int, t: float, *, order_at: int = 0,
                       due: int = 0, linked: bool = True) -> None:
        """A new unit of supply ``i`` goes in at ``t`` (from the order placed at
        ``order_at`` and due on local day ``due``, when known); a linked HFSI item
        (the same part) has its counter cleared too."""
        old = self.sup_imps[i]
        self.sup_used[i] = 0
        self.sup_imps[i] = 0
        self.sup_installed[i] = int(t)
        self.sup_repl[i] += 1
        if self.sup_status[i] != OK:
            self._supply_status_changed(plan, i, OK, t)
        self._log_replacement(REPL_SUPPLY, i, t, old, order_at, due)
        self.log(t, f"supply {i + 1} {plan.profile.supplies[i].name} replaced: unit "
                    f"{self.sup_repl[i] + 1} in at {self.black + self.color} impressions, the "
                    f"old one made {old}")
        h = plan.sup_hfsi[i]
        if linked and h >= 0:
            self.replace_part(plan, h, t, linked=False)

    def set_supply_level(self, plan: Plan, i: int, level: int, t: float) -> None:
        """Set supply ``i`` to ``level`` (its own unit, 0..capacity); status follows."""
        cap = plan.profile.supplies[i].capacity
        life = plan.sup_milli_life[i]
        self.sup_used[i] = -(-(cap - level) * life // cap)  # ceil: reads back as level
        u = self.sup_used[i]
        s = OUT if u >= life else LOW if u >= plan.sup_low_used[i] else OK
        if s != self.sup_status[i]:
            self._supply_status_changed(plan, i, s, t)
        self.log(t, f"supply {i + 1} {plan.profile.supplies[i].name} set to {level}")

    def set_door(self, open_: bool, t: float) -> None:
        """Open (raise a critical doorOpen alert) or close the front door."""
        self.drop_alerts(SRC_DOOR, 0)
        if open_:
            self.raise_alert(t, SRC_DOOR, 0, ALERT_DOOR_OPEN, SEVERITY_CRITICAL,
                             ALERT_GROUP_COVER, 1)
        self.log(t, f"front door {'opened' if open_ else 'closed'}")

    def replace_part(self, plan: Plan, i: int, t: float, *, linked: bool = True) -> None:
        """Replace the part counted by HFSI item ``i``: its counter is cleared, its
        overdue-maintenance alert goes, and a linked supply gets a new unit too."""
        old = self.hfsi_count(plan, i)
        self.hfsi_raw[i] = 0
        self.hfsi_repl[i] += 1
        self.hfsi_repl_at[i] = int(t)
        if self.hfsi_due_at[i]:
            self.hfsi_due_at[i] = 0
            self.drop_alerts(SRC_HFSI, i)
        self._log_replacement(REPL_PART, i, t, old, 0, 0)
        h = plan.profile.hfsi[i]
        self.log(t, f"HFSI {h.id} {h.name} replaced at count {old}, counter cleared")
        s = plan.hfsi_sup[i]
        if linked and s >= 0:
            self.replace_supply(plan, s, t, linked=False)

    # -- job log ------------------------------------------------------------------------

    def log_job(self, kind: int, t: float, pages: int, imps: int, user: int,
                text: tuple[str, str, str] = ("", "", "")) -> None:
        """Log a job; ``text`` (user, job name, e-mail) overrides the synthetic names."""
        self.job_seq += 1
        self.job_log[0:0] = array("q", (kind, int(t), pages, imps, user, self.job_seq))
        del self.job_log[JOB_LOG * JOB_FIELDS:]
        if any(text):
            self.job_text[self.job_seq] = text
        if self.job_text:
            oldest = self.job_log[-1]
            for k in [k for k in self.job_text if k < oldest]:
                del self.job_text[k]

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of the persistent state (volatile fields left out)."""
        d: dict[str, Any] = {"version": STATE_VERSION}
        for name in _METERS:
            d[name] = getattr(self, name)
        d.update(
            sup_used=list(self.sup_used), sup_imps=list(self.sup_imps),
            sup_installed=list(self.sup_installed), sup_repl=list(self.sup_repl),
            sup_status=list(self.sup_status),
            hfsi_raw=list(self.hfsi_raw), hfsi_repl=list(self.hfsi_repl),
            hfsi_repl_at=list(self.hfsi_repl_at),
            sup_order_at=list(self.sup_order_at), sup_due=list(self.sup_due),
            sup_spare=list(self.sup_spare), sup_spare_order=list(self.sup_spare_order),
            sup_spare_due=list(self.sup_spare_due), hfsi_due_at=list(self.hfsi_due_at),
            repl_log=self.repl_log.tolist(),
            alerts=[list(a) for a in self.alerts], next_alert=self.next_alert,
            fault_log=self.fault_log.tolist(), active_fault=self.active_fault,
            active_fault_day=self.active_fault_day,
            job_log=self.job_log.tolist(), job_seq=self.job_seq,
            job_text={str(k): list(v) for k, v in self.job_text.items()},
            eng_log=list(self.eng_log), nvm=dict(self.nvm),
            bank_versions=list(self.bank_versions), bank_sha=list(self.bank_sha),
            active_bank=self.active_bank, trial=self.trial, trial_boots=self.trial_boots,
            install_epoch=self.install_epoch, last_day=self.last_day, cmd_seq=self.cmd_seq,
        )
        return d

    @classmethod
    def from_dict(cls, plan: Plan, d: dict[str, Any], *, source: str) -> DeviceState:
        """Rebuild from :meth:`to_dict` output; a mismatch names the file and field."""
        def bad(field: str, why: str) -> StateStorageError:
            return StateStorageError(f"{source}: field '{field}': {why}")

        version = d.get("version")
        if version not in (1, STATE_VERSION):
            raise bad("version", f"expected {STATE_VERSION}, got {version!r}")
        st = cls(plan, install_epoch=0, system_version="")
        if version == 1:  # before replenishment and visits: those start empty
            d = {**st.to_dict(), **d}
        try:
            for name in _METERS:
                setattr(st, name, int(d[name]))
            for name, n in (("sup_used", len(st.sup_used)), ("sup_imps", len(st.sup_used)),
                            ("sup_installed", len(st.sup_used)), ("sup_repl", len(st.sup_used)),
                            ("sup_status", len(st.sup_used)), ("hfsi_raw", len(st.hfsi_raw)),
                            ("hfsi_repl", len(st.hfsi_raw)), ("hfsi_repl_at", len(st.hfsi_raw)),
                            ("sup_order_at", len(st.sup_used)), ("sup_due", len(st.sup_used)),
                            ("sup_spare", len(st.sup_used)),
                            ("sup_spare_order", len(st.sup_used)),
                            ("sup_spare_due", len(st.sup_used)),
                            ("hfsi_due_at", len(st.hfsi_raw))):
                values = [int(v) for v in d[name]]
                if len(values) != n:
                    raise bad(name, f"expected {n} entries for this profile, got {len(values)}")
                setattr(st, name, values)
            st.alerts = [tuple(int(v) for v in a) for a in d["alerts"]]  # type: ignore[misc]
            st.next_alert = int(d["next_alert"])
            st.fault_log = array("q", (int(v) for v in d["fault_log"]))
            st.active_fault = int(d["active_fault"])
            st.active_fault_day = int(d["active_fault_day"])
            st.job_log = array("q", (int(v) for v in d["job_log"]))
            st.job_seq = int(d["job_seq"])
            st.job_text = {int(k): (str(v[0]), str(v[1]), str(v[2]))
                           for k, v in d["job_text"].items()}
            st.eng_log = [str(v) for v in d["eng_log"]]
            st.nvm = {str(k): int(v) for k, v in d["nvm"].items()}
            st.bank_versions = [str(v) for v in d["bank_versions"]]
            st.bank_sha = [str(v) for v in d["bank_sha"]]
            st.active_bank = int(d["active_bank"])
            st.trial = bool(d["trial"])
            st.trial_boots = int(d["trial_boots"])
            st.install_epoch = int(d["install_epoch"])
            st.last_day = int(d["last_day"])
            st.cmd_seq = int(d["cmd_seq"])
            st.repl_log = array("q", (int(v) for v in d["repl_log"]))
        except KeyError as exc:
            raise bad(str(exc.args[0]), "missing") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise StateStorageError(f"{source}: malformed state: {exc}") from exc
        if len(st.fault_log) % FAULT_FIELDS or len(st.job_log) % JOB_FIELDS:
            raise bad("fault_log", "not a whole number of entries")
        if len(st.repl_log) % REPL_FIELDS:
            raise bad("repl_log", "not a whole number of entries")
        if not -1 <= st.active_fault < len(plan.profile.faults):
            raise bad("active_fault", "not a fault of this profile")
        st.boot_epoch = float(st.install_epoch)
        return st
