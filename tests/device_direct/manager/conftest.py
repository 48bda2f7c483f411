"""Peers for the manager's tests: snmpsim serving the vendor recordings in snmprec/
(snmpsim_peer.py: how it is started, on a port nobody else can take)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from snmpsim_peer import Snmpsim, running_snmpsim


@pytest.fixture(scope="module")
def snmpsim() -> Iterator[Snmpsim]:
    """snmpsim serving every vendor recording (community = vendor) on 127.0.0.1."""
    with running_snmpsim() as agent:
        yield agent


@pytest.fixture(scope="module")
def snmpsim_port(snmpsim: Snmpsim) -> int:
    """udp port on 127.0.0.1 where snmpsim serves every vendor recording."""
    return snmpsim.port
