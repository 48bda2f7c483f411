"""Discovery in two phases, as fleet tools do: a quick probe of every address, then a read
of each printer.

Theory of operation
-------------------
Phase 1 sends every address one GETBULK (sysDescr, sysObjectID, the first rows of
hrDeviceType and prtGeneral), for every credential at once, all addresses in flight
together (up to ``probe_window``): silent addresses then cost one timeout round for
the whole scan, not one per address or per credential. Each community is also tried
as SNMPv1 (a GETNEXT of the same objects), last in preference, sent with the last try
of the others only when none of them has answered by then: an old v1-only printer is
found in the same round, and a printer that answers v2c is not asked twice
(``v1="off"`` skips v1, ``"only"`` speaks nothing else). The
first credential in that order that got an answer is the one used for that address
(its reads use GETNEXT under v1); :func:`is_printer` decides what it is.

Phase 2 reads each printer (at most ``concurrency`` at a time): one multi-subtree
GETBULK walk of the standard tables, then one GET of its vendor's private objects
when the vendor is recognised by its sysObjectID; meanwhile a reverse DNS lookup of
its address gives its DNS name (as fleet tools show it; ``resolve_names=False`` skips).
What went wrong at one address (timeout, garbage, a walk that does not increase, a
table too long, a reply from the wrong address) is recorded against that address and
the scan goes on; whatever was read before the failure is kept.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from device_direct.clock import Clock, SystemClock
from device_direct.manager import mib
from device_direct.manager.errors import SnmpError, SnmpTimeout
from device_direct.manager.reading import PrinterReading, interpret, is_printer
from device_direct.manager.snmp import Credential, SnmpClient, walk_exact
from device_direct.manager.targets import Target
from device_direct.manager.vendors import VendorCatalog

Progress = Callable[[str, int, int], None]  # (phase, done, total)
V1_MODES = ("fallback", "off", "only")


@dataclass(frozen=True, slots=True)
class ScanOptions:
    credentials: tuple[Credential, ...] = (Credential(community="public"),)
    timeout: float = 1.0
    retries: int = 1
    concurrency: int = 32
    probe_window: int = 4096
    max_rows: int = 5000
    # SNMPv1 for the communities: "fallback" (also probe v1, used when v2c and v3 get
    # no answer: old printers speak v1 only), "off", or "only" (communities are v1).
    v1: str = "fallback"
    resolve_names: bool = True  # reverse DNS lookup of each printer's address

    def __post_init__(self) -> None:
        if not self.credentials:
            raise ValueError("give at least one community or v3 user")
        if self.v1 not in V1_MODES:
            raise ValueError(f"v1 must be one of {', '.join(V1_MODES)}, got {self.v1!r}")
        if (self.timeout <= 0 or self.retries < 0 or self.concurrency < 1 or self.max_rows < 1
                or self.probe_window < 1):
            raise ValueError("timeout > 0, retries >= 0, concurrency >= 1, probe window >= 1, "
                             "max_rows >= 1")


    def probe_credentials(self) -> tuple[Credential, ...]:
        """Every credential the probe tries, in order of preference."""
        communities = [c for c in self.credentials if c.community is not None]
        users = [c for c in self.credentials if c.community is None]
        if self.v1 == "only":
            return (*(c.as_version("v1") for c in communities), *users)
        if self.v1 == "off":
            return self.credentials
        v1 = [c.as_version("v1") for c in communities if not c.v1]
        return tuple(dict.fromkeys((*self.credentials, *v1)))


@dataclass(frozen=True, slots=True)
class ScanError:
    address: str
    kind: str  # timeout | protocol | local | internal
    message: str
    phase: str  # probe | read


@dataclass
class ScanReport:
    """What one scan found."""

    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    probe_s: float = 0.0
    read_s: float = 0.0
    scanned: int = 0
    printers: list[PrinterReading] = field(default_factory=list)
    not_printers: list[str] = field(default_factory=list)
    no_answer: list[str] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    requests: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"printers": [...], "not_printers": N, "no_answer": N, "errors": [...]}``."""
        return {
            "printers": [p.to_json() for p in sorted(self.printers, key=_address_key)],
            "not_printers": len(self.not_printers),
            "no_answer": len(self.no_answer),
            "errors": [{"address": e.address, "kind": e.kind, "phase": e.phase,
                        "message": e.message} for e in self.errors],
            "scanned": self.scanned,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round(self.duration_s, 3),
            "probe_s": round(self.probe_s, 3),
            "read_s": round(self.read_s, 3),
            "snmp_requests": self.requests,
        }


def _address_key(p: PrinterReading) -> tuple[int, ...] | tuple[str]:
    host = p.address.rsplit(":", 1)[0]
    parts = host.split(".")
    return tuple(int(x) for x in parts) if all(x.isdigit() for x in parts) else (host,)


class Scanner:
    """Runs scans with one SNMP client; ``close()`` when done."""

    def __init__(self, options: ScanOptions, catalog: VendorCatalog | None = None,
                 clock: Clock | None = None) -> None:
        self.options = options
        self.catalog = catalog or VendorCatalog.load()
        self.clock = clock or SystemClock()
        self.client = SnmpClient(timeout=options.timeout, retries=options.retries)
        probe = options.probe_credentials()
        # Communities added as v1 fallbacks are probed late (see _fallback).
        extra = (set(probe) - set(options.credentials)) if options.v1 == "fallback" else set()
        self._probe_creds = tuple(c for c in probe if c not in extra)
        self._fallback_creds = tuple(c for c in probe if c in extra)

    def close(self) -> None:
        self.client.close()

    async def scan(self, targets: list[Target], progress: Progress | None = None) -> ScanReport:
        """Probe every target, read every printer; never raises for one address."""
        report = ScanReport(started_at=self.clock.now(), scanned=len(targets))
        t0 = time.perf_counter()
        requests0 = self.client.requests
        found: list[tuple[Target, Credential, dict[mib.Oid, mib.Value]]] = []
        window = asyncio.Semaphore(self.options.probe_window)
        done = 0

        async def probe(t: Target) -> None:
            nonlocal done
            async with window:
                try:
                    hit = await self._probe(t)
                except SnmpTimeout:
                    report.no_answer.append(str(t))
                except SnmpError as exc:
                    report.errors.append(ScanError(str(t), exc.kind, exc.message, "probe"))
                except Exception as exc:  # a bug must cost one address, not the scan
                    report.errors.append(ScanError(str(t), "internal",
                                                   f"{type(exc).__name__}: {exc}", "probe"))
                else:
                    if hit is not None and is_printer(hit[1]):
                        found.append((t, *hit))
                    else:
                        report.not_printers.append(str(t))
            done += 1
            if progress:
                progress("probe", done, len(targets))

        await asyncio.gather(*(probe(t) for t in targets))
        report.probe_s = time.perf_counter() - t0
        slots = asyncio.Semaphore(self.options.concurrency)
        read_done = 0

        async def read(t: Target, cred: Credential, probed: dict[mib.Oid, mib.Value]) -> None:
            nonlocal read_done
            async with slots:
                try:
                    reading, error = await self._read(t, cred, probed)
                except Exception as exc:  # a bug must cost one address, not the scan
                    reading, error = None, ScanError(str(t), "internal",
                                                     f"{type(exc).__name__}: {exc}", "read")
            if reading is not None:
                report.printers.append(reading)
            if error is not None:
                report.errors.append(error)
            read_done += 1
            if progress:
                progress("read", read_done, len(found))

        await asyncio.gather(*(read(*f) for f in found))
        report.finished_at = self.clock.now()
        report.duration_s = time.perf_counter() - t0
        report.read_s = report.duration_s - report.probe_s
        report.requests = self.client.requests - requests0
        return report

    async def _probe(self, t: Target) -> tuple[Credential, dict[mib.Oid, mib.Value]] | None:
        """(credential, probe values) of the first credential answered; raises if none."""
        async def one(cred: Credential, tries: int | None = None
                      ) -> dict[mib.Oid, mib.Value]:
            got = await self.client.bulk(t.host, t.port, cred, list(mib.PROBE_SCALARS),
                                         list(mib.PROBE_COLUMNS), 3, tries=tries)
            return {oid: v for oid, v in got if v is not None and v is not mib.END}

        first = [asyncio.create_task(one(c)) for c in self._probe_creds]
        fallback = self._fallback_creds
        results: list[Any] = []
        if fallback:
            results += await self._fallback(first, fallback, one)
        results = [*await asyncio.gather(*first, return_exceptions=True), *results]
        creds = [*self._probe_creds, *fallback]
        errors: list[BaseException] = []
        for cred, result in zip(creds, results, strict=False):
            if isinstance(result, dict):
                return cred, result
            errors.append(result)
        for e in errors:  # an answer that was wrong says more than a silence
            if isinstance(e, SnmpError) and not isinstance(e, SnmpTimeout):
                raise e
        for e in errors:
            if isinstance(e, SnmpError):
                raise e
        raise errors[0]

    async def _fallback(self, first: list[asyncio.Task[dict[mib.Oid, mib.Value]]],
                        fallback: tuple[Credential, ...], one: Any) -> list[Any]:
        """The v1 probes, sent with the first credentials' last try unless one answered.

        A printer that answers v2c (or v3) is never asked in v1; a silent address gets
        its v1 probe alongside its last v2c try, so the round still ends after
        ``timeout x (retries + 1)``.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        wait = self.options.timeout * self.options.retries
        pending = set(first)
        while pending:
            left = wait - (loop.time() - start)
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left,
                                               return_when=asyncio.FIRST_COMPLETED)
            if any(not f.exception() for f in done):
                return [None] * len(fallback)  # answered: no v1 probe
        spent = int((loop.time() - start) // self.options.timeout)
        tries = max(1, self.options.retries + 1 - spent)
        got = await asyncio.gather(*(one(c, tries) for c in fallback), return_exceptions=True)
        return list(got)

    async def _dns_name(self, ip: str | None) -> str | None:
        """The name a reverse lookup gives ``ip`` (None: none, or not within the timeout)."""
        if ip is None or not self.options.resolve_names:
            return None
        loop = asyncio.get_running_loop()
        try:
            name, _ = await asyncio.wait_for(
                loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), self.options.timeout)
        except (OSError, TimeoutError, UnicodeError):
            return None
        return name if name and name != ip else None

    async def _read(self, t: Target, cred: Credential, probed: dict[mib.Oid, mib.Value]
                    ) -> tuple[PrinterReading | None, ScanError | None]:
        ip = self.client.ip_of(t.host, t.port)
        lookup = asyncio.ensure_future(self._dns_name(ip))
        values: dict[mib.Oid, mib.Value] = dict(probed)
        problems: list[str] = []
        error: ScanError | None = None
        oid = probed.get(mib.SYS_OBJECT_ID)
        sys_object_id = oid if isinstance(oid, tuple) else None
        vendor = self.catalog.match(sys_object_id)
        try:
            extra = (*mib.READ_SCALARS, *(vendor.private_oids() if vendor else ()))
            # values is filled as the walk goes: a printer that stops answering
            # mid-walk keeps what it said before
            _, problems, left = await walk_exact(
                self.client, t.host, t.port, cred, mib.READ_SUBTREES, exact=extra,
                max_rows=self.options.max_rows, values=values)
            if left:
                values.update(await self.client.get(t.host, t.port, cred, left))
        except SnmpError as exc:
            error = ScanError(str(t), exc.kind, exc.message, "read")
        if problems and error is None:
            error = ScanError(str(t), "protocol", "; ".join(problems), "read")
        reading = interpret(str(t), values, vendor, self.catalog.enterprise_name(sys_object_id),
                            problems=tuple(problems) + ((error.message,) if error and
                                                         not problems else ()),
                            ip=ip, dns_name=await lookup)
        reading.properties["snmp"] = cred.label()  # how it was read (never the secret)
        return reading, error
