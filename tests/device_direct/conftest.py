"""Fixtures shared by the device tests: a virtual clock, the reference server on it, and a
test CA with its bundle (tlsfixtures.py) for the transport's own TLS peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tlsfixtures import TestCA

from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.test_actions_rig import START


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
async def server(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[ReferenceServer]:
    srv = ReferenceServer(tmp_path / "server", clock=clock)
    try:
        await srv.start()
    except Exception as exc:  # a peer that cannot start is a failure, not a skip
        pytest.fail(f"reference server could not start: {exc}")
    yield srv
    await srv.stop()


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def bundle(tmp_path: Path, ca: TestCA) -> Path:
    return ca.write_cert(tmp_path / "bundle.pem")
