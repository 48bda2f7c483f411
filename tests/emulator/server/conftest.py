from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.clock import VirtualClock
from emulator.server import ReferenceServer


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def server(tmp_path: Path, vclock: VirtualClock) -> AsyncIterator[ReferenceServer]:
    srv = ReferenceServer(tmp_path / "state", clock=vclock, max_upload_bytes=256 << 10)
    try:
        await srv.start()
    except Exception as exc:  # a test peer that cannot start is a failure, not a skip
        pytest.fail(f"reference server could not start: {exc}")
    yield srv
    await srv.stop()
