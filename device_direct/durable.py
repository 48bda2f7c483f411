"""Durable small-file writes for the device's non-volatile storage.

``atomic_write`` leaves, after a crash or power cut at any instant, either the old file
or the new one, never a mix: write a temp file beside it, ``fsync`` it, ``os.replace``
it over the target, then ``fsync`` the directory so the rename itself is on disk.
Leftover ``*.tmp`` files are a write that did not finish; their owners delete them on
open. Raises ``OSError``: each caller translates it at its own edge (``StorageError``
naming what it was writing).

:func:`off_loop` runs such work in the one storage thread of the process: an ``fsync``
takes milliseconds on ext4 and far more on eMMC, and every device of a fleet shares
its event loop. One thread, first in first out, keeps the writes serialised as they
were on the loop (the outbox's calls never overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

P = ParamSpec("P")
T = TypeVar("T")
_STORAGE: ThreadPoolExecutor | None = None


def settle() -> None:
    """Wait (blocking) until the storage thread has finished what it was given.

    For whoever opens a store: the work of an agent that was just stopped (cancelled
    while its write ran on) must not race the new one's recovery of the same files."""
    if _STORAGE is not None:
        _STORAGE.submit(int).result()


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the storage thread; the loop goes on meanwhile.

    Cancelling the caller does not cut the work short: a write that started finishes
    (it is durable or it is not, never half done)."""
    global _STORAGE
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


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file gets ``mode``."""
    target = os.fspath(path)
    tmp = target + TMP_SUFFIX
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(target) or ".")
