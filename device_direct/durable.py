"""Durable small-file writes for the device's non-volatile storage.

``atomic_write`` leaves, after a crash or power cut at any instant, either the old file
or the new one, never a mix: write a temp file beside it, ``fsync`` it, ``os.replace``
it over the target, then ``fsync`` the directory so the rename itself is on disk.
Leftover ``*.tmp`` files are a write that did not finish; their owners delete them on
open. ``append_durably`` adds bytes to the end of a file and ``fsync``s it: a crash may
leave the last append torn (a prefix of it), never an earlier one, so a journal of
lines read back up to its last whole line is what was acknowledged. Both raise
``OSError``: each caller translates it at its own edge (``StorageError`` naming what it
was writing).

:func:`off_loop` runs such work in the one storage thread of the process: an ``fsync``
takes milliseconds on ext4 and far more on eMMC, and every device of a fleet shares
its event loop. One thread, first in first out, keeps the writes serialised as they
were on the loop (the outbox's calls never overlap). A process whose device data lives in
RAM (a fleet on tmpfs, where an ``fsync`` returns at once) may run that work on the loop
instead (:func:`writes_on_loop`): there the hand-off to the thread and back costs more
than the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

P = ParamSpec("P")
T = TypeVar("T")
_STORAGE: ThreadPoolExecutor | None = None
_ON_LOOP = False  # writes_on_loop() in force


def settle() -> None:
    """Wait (blocking) until the storage thread has finished what it was given.

    For whoever opens a store: the work of an agent that was just stopped (cancelled
    while its write ran on) must not race the new one's recovery of the same files."""
    if _STORAGE is not None:
        _STORAGE.submit(int).result()


@contextlib.contextmanager
def writes_on_loop(enabled: bool = True) -> Iterator[None]:
    """While in force, :func:`off_loop` runs its work on the calling thread (the loop).

    Only for data on a RAM file system (see :func:`in_ram`): the writes are as durable
    as they were (the same ``fsync``s, which tmpfs answers at once), in the same order,
    and each still finishes once it started; the loop only skips the two thread
    hand-offs a write costs. Never for a real device's flash."""
    global _ON_LOOP
    before, _ON_LOOP = _ON_LOOP, enabled
    try:
        yield
    finally:
        _ON_LOOP = before


# File systems whose files live in memory: fsync returns at once, a write never waits
# on a device.
RAM_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def in_ram(path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo") -> bool:
    """True if ``path`` is on a RAM file system (tmpfs, ramfs), by its longest mount."""
    target = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,..."
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if not sep or len(fields) < 5 or not right.split():
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
    except OSError:
        return False
    return fstype in RAM_FILE_SYSTEMS


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the storage thread; the loop goes on meanwhile.

    Cancelling the caller does not cut the work short: a write that started finishes
    (it is durable or it is not, never half done). Under :func:`writes_on_loop` it runs
    right here instead."""
    global _STORAGE
    if _ON_LOOP:
        return fn(*args, **kwargs)
    if _STORAGE is None:
        from concurrent.futures import ThreadPoolExecutor  # on first use: not at import

        _STORAGE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dd-storage")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_STORAGE, functools.partial(fn, *args, **kwargs))

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a write may take less than it was given), then
    ``fsync`` it."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file gets ``mode``."""
    target = os.fspath(path)
    tmp = target + TMP_SUFFIX
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(target) or ".")


def read_at_most(path: str | os.PathLike[str], limit: int) -> bytes:
    """The first ``limit`` bytes of ``path`` (fewer if it is shorter).

    A plain ``open(path, "rb").read()`` also asks the file's size twice, its position
    and whether it is a terminal: four system calls more, for a file read daily."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def append_durably(path: str | os.PathLike[str], data: bytes, *, new_file: bool,
                   mode: int = 0o644) -> None:
    """Append ``data`` to ``path`` (created if absent) and ``fsync`` it.

    ``new_file``: the caller expects to create the file with this append, so the
    directory is ``fsync``ed too (the file's name must survive a power cut as well)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    if new_file:
        fsync_dir(os.path.dirname(os.fspath(path)) or ".")
