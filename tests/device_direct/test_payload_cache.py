"""The payload cache: what it writes again is byte for byte what a fresh build writes.

The agent keeps one :class:`PayloadCache` per device and hands it to every
``build_xml``; these tests build each day's payload twice, with the device's cache and
without one, and compare the bytes, over emulated printers whose days change what the
cache keeps (faults, alerts, NVM settings, firmware, supplies) and over personal data
that comes and goes (the day's job names in a property, in a transfer's detail).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, date, datetime, timedelta

from device_direct.core.payload import (
    PayloadCache,
    PayloadMeta,
    ProxyRoute,
    TransferRecord,
    build_xml,
    new_upload_id,
)
from device_direct.core.privacy import PERSONAL_REPLACEMENT, PrivacyPolicy
from device_direct.model import JobKind, JobRecord, Property
from emulator.clock import VirtualClock
from emulator.model import EmulatedDevice, load_profile
from tests.device_direct.core.payload_samples import make_snapshot

START = date(2026, 2, 2)
PROFILES = ("office-color", "office-mono", "production")


def _meta(day: int, rng: random.Random, at: datetime) -> PayloadMeta:
    return PayloadMeta(new_upload_id(rng.getrandbits(128)), day, at, "scheduled")


def test_an_emulated_fleet_gets_the_same_bytes_with_and_without_the_cache() -> None:
    at = datetime.combine(START, datetime.min.time(), UTC)
    clock = VirtualClock(at)
    rng = random.Random(7)
    devices = [EmulatedDevice(load_profile(PROFILES[i % 3]), serial=f"PC{i:04d}",
                              clock=clock, rng_seed=i, state_dir=None) for i in range(6)]
    caches = [PayloadCache() for _ in devices]
    histories: list[list[TransferRecord]] = [[] for _ in devices]
    reused = 0
    for k in range(24):
        day = START + timedelta(days=k)
        clock.advance_to(at + timedelta(days=k, hours=8))
        for n, dev in enumerate(devices):
            dev.run_day(day)
            # What a day can change in the parts the cache keeps.
            if k % 5 == n % 5:
                dev.jam()
            if k % 7 == 3:
                dev.clear_fault()
            settable = [s for s in dev.profile.nvm if not s.protected]
            if k % 6 == n % 6 and settable:
                setting = settable[k % len(settable)]
                value = setting.minimum + (k % (setting.maximum - setting.minimum + 1))
                asyncio.run(dev.set_nvm(setting.id, value))
            if k % 9 == n % 9:
                dev.replace_supply(1)
            if k == 11:
                dev.set_door(n % 2 == 0)
        clock.advance_to(at + timedelta(days=k, hours=20))
        # Locked down on some days: the network section changes with the policy.
        policy = PrivacyPolicy(locked_down=k % 8 == 5)
        proxy = ProxyRoute("DIRECT", "off") if k < 15 else ProxyRoute("PROXY 10.0.0.8:3128", "pac")
        for n, dev in enumerate(devices):
            snap = dev.snapshot()
            meta = _meta(k, rng, clock.now())
            fresh = build_xml(snap, meta, policy=policy, transfer_history=histories[n],
                              proxy=proxy)
            kept = dict(caches[n]._parts)
            again = build_xml(snap, meta, policy=policy, transfer_history=histories[n],
                              proxy=proxy, cache=caches[n])
            assert again == fresh, f"device {n}, day {k}"
            reused += sum(1 for name, part in caches[n]._parts.items() if kept.get(name) is part)
            result = "dropped" if (k + n) % 10 == 0 else "stored"
            detail = "over budget" if result == "dropped" else ""
            histories[n].append(TransferRecord(clock.now(), result, 2000 + k,  # type: ignore[arg-type]
                                               meta.upload_id, detail))
            del histories[n][:-50]
    assert reused > 6 * 24 * 2  # the cache did keep parts from day to day


def _job(user: str, name: str) -> JobRecord:
    return JobRecord(JobKind.PRINT, datetime(2026, 3, 29, 1, tzinfo=UTC), 1, 1, user, name,
                     f"{user}@example.org")


def test_personal_data_arriving_in_a_kept_part_is_scrubbed_not_written_again() -> None:
    """A property kept from yesterday now holds the name of a user who printed today:
    the kept markup would leak it, so nothing kept is used while any text has
    something to blank."""
    cache = PayloadCache()
    clean = dataclasses.replace(
        make_snapshot(), jobs=(_job("jdoe", "Budget.xlsx"),),
        properties=(Property("memory", "4096 MB"), Property("contact", "ask mmiller")),
        alerts=())
    rng = random.Random(1)
    policy = PrivacyPolicy()
    first = build_xml(clean, _meta(1, rng, clean.taken_at), policy=policy, cache=cache)
    assert b"ask mmiller" in first and "properties" in cache._parts
    today = dataclasses.replace(clean, jobs=(_job("mmiller", "Report.pdf"),))
    meta = _meta(2, rng, clean.taken_at)
    cached = build_xml(today, meta, policy=policy, cache=cache)
    assert cached == build_xml(today, meta, policy=policy)
    assert b"ask mmiller" not in cached
    assert f"ask {PERSONAL_REPLACEMENT}".encode() in cached


def test_a_transfer_detail_is_scrubbed_every_day_and_a_plain_transfer_kept() -> None:
    cache = PayloadCache()
    snap = dataclasses.replace(make_snapshot(), jobs=(), alerts=(),
                               properties=(Property("memory", "4096 MB"),))
    rng = random.Random(2)
    t = datetime(2026, 3, 28, 2, tzinfo=UTC)
    stored = TransferRecord(t, "stored", 1200, new_upload_id(1))
    rejected = TransferRecord(t + timedelta(hours=1), "rejected", 900, new_upload_id(2),
                              "422 sent by rsmith")
    history = [stored, rejected]
    policy = PrivacyPolicy()
    first = build_xml(snap, _meta(1, rng, snap.taken_at), policy=policy,
                      transfer_history=history, cache=cache)
    assert b"sent by rsmith" in first  # nobody named rsmith printed yet
    assert set(cache._transfers) == {id(stored)}  # the one with a detail is not kept
    today = dataclasses.replace(snap, jobs=(_job("rsmith", "Plan.docx"),))
    meta = _meta(2, rng, snap.taken_at)
    cached = build_xml(today, meta, policy=policy, transfer_history=history, cache=cache)
    assert cached == build_xml(today, meta, policy=policy, transfer_history=history)
    assert b"rsmith" not in cached


def test_a_part_with_a_text_the_scrubber_did_not_know_of_is_not_kept() -> None:
    """The running firmware version stands in for the module list when the model gives
    none, and is not among the texts the scrubber is told of in advance: a part holding
    such a text is written afresh every day, scrubbed by that day's names."""
    cache = PayloadCache()
    base = make_snapshot()
    snap = dataclasses.replace(
        base, identity=dataclasses.replace(base.identity, firmware={}), jobs=(), alerts=(),
        properties=(Property("memory", "4096 MB"),),
        firmware=dataclasses.replace(base.firmware, banks=(
            dataclasses.replace(base.firmware.banks[0], version="7.1-kjones-build"),
            base.firmware.banks[1])))
    rng = random.Random(3)
    policy = PrivacyPolicy()
    first = build_xml(snap, _meta(1, rng, snap.taken_at), policy=policy, cache=cache)
    assert b'version="7.1-kjones-build"' in first and "identity" not in cache._parts
    today = dataclasses.replace(snap, jobs=(_job("kjones", "Memo.txt"),))
    meta = _meta(2, rng, snap.taken_at)
    cached = build_xml(today, meta, policy=policy, cache=cache)
    assert cached == build_xml(today, meta, policy=policy)
    assert b"kjones" not in cached
