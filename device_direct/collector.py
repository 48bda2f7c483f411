"""Reading the device: a validated snapshot, and the payload built from it.

:func:`collect` takes :meth:`DeviceModel.snapshot` and checks that it makes sense
before anything is built from it: a model that returns negative meters, a total that
is not black + color, or a naive timestamp is broken, and sending its numbers to a
billing system would be worse than sending nothing. Such a snapshot raises
:class:`ModelError` naming the field. A fault history longer than 40 is not an error:
the newest 40 are kept and the trim is logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime

from device_direct.core.payload import (
    MAX_FAULTS,
    PayloadMeta,
    ProxyRoute,
    TransferRecord,
    build_xml,
    pack_zip,
)
from device_direct.core.privacy import PrivacyPolicy
from device_direct.errors import ModelError
from device_direct.model import (
    CHAIN_LINK,
    SPECIAL_LEVELS,
    Counters,
    DeviceModel,
    DeviceSnapshot,
)

log = logging.getLogger(__name__)


def _aware(value: object, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ModelError(f"model returned {what} = {value!r}: expected an aware datetime")


_COUNTER_FIELDS = tuple(f.name for f in dataclasses.fields(Counters))


def _check_counters(c: Counters) -> None:
    if not isinstance(c, Counters):
        raise ModelError(f"model returned counters = {type(c).__name__}, not Counters")
    for name in _COUNTER_FIELDS:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelError(f"model returned counters.{name} = {value!r}: expected >= 0")
    if c.total_impressions != c.black_impressions + c.color_impressions:
        raise ModelError(
            f"model returned counters.total_impressions = {c.total_impressions}, but "
            f"black + color = {c.black_impressions + c.color_impressions}"
        )
    large = c.black_large_impressions + c.color_large_impressions
    if c.total_large_impressions != large:
        raise ModelError(
            f"model returned counters.total_large_impressions = {c.total_large_impressions}, "
            f"but black + color large = {large}"
        )


def validate_snapshot(snap: DeviceSnapshot) -> DeviceSnapshot:
    """Check a snapshot; returns it with the fault history cut to the newest 40."""
    if not isinstance(snap, DeviceSnapshot):
        raise ModelError(f"model.snapshot() returned {type(snap).__name__}, not a DeviceSnapshot")
    _aware(snap.taken_at, "taken_at")
    _check_counters(snap.counters)
    for fault in snap.faults:
        if not CHAIN_LINK.match(fault.code):
            raise ModelError(f"model returned fault code {fault.code!r}: expected NNN-NNN")
        _aware(fault.at, f"fault {fault.code} at")
        if fault.impressions < 0:
            raise ModelError(f"model returned fault {fault.code} impressions < 0")
    for alert in snap.alerts:
        _aware(alert.raised_at, f"alert {alert.index} raised_at")
    for supply in snap.supplies:
        for name in ("capacity", "level"):
            value = getattr(supply, name)
            if value < 0 and value not in SPECIAL_LEVELS:
                raise ModelError(
                    f"model returned supply {supply.index} {name} = {value}: "
                    "expected >= 0 or a Printer-MIB special value (-1, -2, -3)"
                )
        if supply.capacity >= 0 and supply.level > supply.capacity:
            raise ModelError(
                f"model returned supply {supply.index} level {supply.level} above its "
                f"capacity {supply.capacity}"
            )
    for item in snap.hfsi:
        if not CHAIN_LINK.match(item.id):
            raise ModelError(f"model returned HFSI id {item.id!r}: expected NNN-NNN")
        if item.count < 0 or item.life <= 0:
            raise ModelError(f"model returned HFSI {item.id} count/life {item.count}/{item.life}")
    for setting in snap.nvm:
        if not CHAIN_LINK.match(setting.id):
            raise ModelError(f"model returned NVM id {setting.id!r}: expected NNN-NNN")
    for job in snap.jobs:
        _aware(job.at, "job at")
    if len(snap.faults) > MAX_FAULTS:
        log.warning("model returned %d faults; keeping the newest %d", len(snap.faults), MAX_FAULTS)
        newest = sorted(snap.faults, key=lambda f: f.at, reverse=True)[:MAX_FAULTS]
        snap = dataclasses.replace(snap, faults=tuple(newest))
    return snap


def collect(model: DeviceModel) -> DeviceSnapshot:
    """Read and validate a snapshot from ``model``; ModelError names a nonsense field."""
    return validate_snapshot(model.snapshot())


def build_payload(
    model: DeviceModel,
    meta: PayloadMeta,
    *,
    policy: PrivacyPolicy,
    transfer_history: Sequence[TransferRecord] = (),
    proxy: ProxyRoute | None = None,
) -> bytes:
    """Collect from ``model`` and build the payload zip under ``policy``.

    The engineering log is only read from the model when the policy allows sending it.
    """
    snapshot = collect(model)
    engineering = model.engineering_log() if policy.send_engineering else None
    xml = build_xml(
        snapshot,
        meta,
        policy=policy,
        transfer_history=transfer_history,
        proxy=proxy,
        engineering_log=engineering,
    )
    return pack_zip(xml)
