"""Scratch directories for device data, and sweeping up those a killed process left.

A fleet keeps its devices' state (outboxes, journals, certificates) in a directory on a
RAM disk where there is one (``/dev/shm``): every payload is fsync'ed by the outbox, and a
thousand simulated devices need not wear a real disk. The process that made the directory
removes it when it ends; a process killed outright (``SIGKILL``, the OOM killer) cannot,
and on a RAM disk what it left holds memory until someone removes it.

A directory made with ``owned=True`` carries an :data:`OWNER_FILE` naming its process (host,
pid, and the process's start time, so that a pid the kernel has since handed to another
process is not mistaken for the owner). :func:`sweep_orphans` removes the directories of a
prefix whose owner is gone; a Dask worker calls it before each shard it runs, so a worker
killed mid-shard has its data removed by the next shard run on that host.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("emulator.fleet.scratch")

OWNER_FILE = ".owner"


def scratch_base() -> Path | None:
    """Where scratch directories go: ``/dev/shm`` when it is writable, else None (the
    system's temporary directory)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


@dataclass(frozen=True, slots=True)
class Owner:
    """The process a scratch directory belongs to."""

    host: str
    pid: int
    started: str  # /proc/<pid>/stat's start time (clock ticks since boot); "" if unknown

    def text(self) -> str:
        return f"{self.host} {self.pid} {self.started}\n"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.split()
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "")


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux), "" where /proc cannot tell, None if
    there is no such process or it has ended (a zombie its parent has not reaped: a
    worker killed under a parent that has not noticed yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = fh.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):  # a zombie: ended, not yet reaped by its parent
            return None
        return fields[19]
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # /proc works: the process is gone
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, under another user
    return ""


def this_process() -> Owner:
    """This process, as an :class:`Owner`."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _start_time(pid) or "")


def alive(owner: Owner) -> bool:
    """Whether ``owner`` still runs. A process of another host counts as alive: this host
    cannot tell (a RAM disk shared between hosts or containers)."""
    if owner.host != socket.gethostname():
        return True
    started = _start_time(owner.pid)
    if started is None:
        return False
    return not (owner.started and started and started != owner.started)  # pid reused


def scratch_dir(prefix: str, *, owned: bool = False) -> Path:
    """A new temporary directory named ``prefix...``, on a RAM disk when there is one;
    ``owned``: marked with this process, for :func:`sweep_orphans` to remove should the
    process die without removing it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_base()))
    if owned:
        (path / OWNER_FILE).write_text(this_process().text(), encoding="ascii")
    return path


def owned(prefix: str, base: Path | None = None) -> list[tuple[Path, Owner]]:
    """The owned scratch directories named ``prefix...`` in ``base`` (default:
    :func:`scratch_base`), with their owners, in name order. A directory without a
    readable owner file (not owned, or its owner still writing it) is not listed."""
    root = base if base is not None else (scratch_base() or Path(tempfile.gettempdir()))
    found: list[tuple[Path, Owner]] = []
    try:
        candidates = sorted(root.glob(f"{prefix}*"))
    except OSError:
        return found
    for path in candidates:
        try:
            owner = Owner.parse((path / OWNER_FILE).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError):
            continue
        if owner is not None:
            found.append((path, owner))
    return found


def sweep_orphans(prefix: str, base: Path | None = None) -> list[Path]:
    """Remove the :func:`owned` directories named ``prefix...`` whose process is gone;
    the directories removed. Unowned ones are left alone."""
    removed: list[Path] = []
    for path, owner in owned(prefix, base):
        if alive(owner):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
            log.warning("removed %s, left by process %d on %s, which has ended", path,
                        owner.pid, owner.host)
    return removed
