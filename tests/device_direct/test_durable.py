"""Where durable writes run: the storage thread, or the loop for data in RAM."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from device_direct import durable

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=10g
24 23 0:21 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
25 24 8:2 / /dev/shm/disk rw,relatime shared:4 - ext4 /dev/sdb1 rw
26 22 0:30 / /run/my\\040ram rw shared:5 - ramfs ramfs rw
27 22 0:31 / /tmpfsx rw shared:6 - ext4 /dev/sdc1 rw
garbage line without a separator
"""


def test_in_ram_takes_the_longest_mount_holding_the_path(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)

    def ram(path: str) -> bool:
        return durable.in_ram(path, mountinfo=str(info))

    assert ram("/dev/shm")
    assert ram("/dev/shm/fleet-1/devices")
    assert not ram("/dev/shm/disk/fleet")  # an ext4 mounted inside the tmpfs
    assert not ram("/dev/shmx")  # a prefix of the name is not the mount
    assert ram("/run/my ram/x")  # "\040" is a space in mountinfo
    assert not ram("/tmpfsx/a")  # the file system type counts, not the name
    assert not ram("/home/user")
    assert not durable.in_ram("/dev/shm", mountinfo=str(tmp_path / "missing"))


def test_this_machines_dev_shm_is_read_as_in_ram() -> None:
    # The fleet's default data directory is in /dev/shm where there is one (Linux).
    if Path("/dev/shm").is_dir():
        assert durable.in_ram("/dev/shm")


async def test_off_loop_uses_the_storage_thread_unless_writes_run_on_the_loop() -> None:
    here = threading.get_ident()
    assert await durable.off_loop(threading.get_ident) != here
    with durable.writes_on_loop():
        assert await durable.off_loop(threading.get_ident) == here
        with durable.writes_on_loop(False):  # nested: restored on the way out
            assert await durable.off_loop(threading.get_ident) != here
        assert await durable.off_loop(threading.get_ident) == here
    assert await durable.off_loop(threading.get_ident) != here


async def test_a_write_on_the_loop_is_the_same_durable_write(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    with durable.writes_on_loop():
        await durable.off_loop(durable.atomic_write, target, b"one")
    assert target.read_bytes() == b"one"
    assert not list(tmp_path.glob("*.tmp"))


def test_read_at_most_stops_at_the_limit_and_gathers_short_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "payload.zip"
    path.write_bytes(b"0123456789")
    assert durable.read_at_most(path, 4) == b"0123"
    assert durable.read_at_most(path, 11) == b"0123456789"  # shorter than asked
    (tmp_path / "empty").write_bytes(b"")
    assert durable.read_at_most(tmp_path / "empty", 5) == b""
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real(fd, min(n, 3)))  # short reads
    assert durable.read_at_most(path, 8) == b"01234567"
