"""Each TLS failure leaves the payload queued, and the log line names the cause."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from device_direct.agent import Agent
from device_direct.config import load_config
from device_direct.identity import IdentityStore
from emulator.clock import VirtualClock
from tests.device_direct.agent_harness import make_device
from tests.device_direct.tlsfixtures import (
    AlertingTLSServer,
    TestCA,
    expired_window,
    future_window,
    serve,
    server_context,
)

CASES = ["unknown-ca", "expired", "not-yet-valid", "wrong-host", "tls-version"]


@asynccontextmanager
async def bad_server(case: str, trusted: TestCA, tmp: Path) -> AsyncIterator[int]:
    """A real TLS server on loopback that fails the device's checks in one way."""
    if case == "tls-version":
        legacy = server_context(
            None, trusted.issue_server_cert(tmp), max_version=ssl.TLSVersion.TLSv1_1
        )
        async with AlertingTLSServer(legacy) as srv:
            yield srv.port
        return
    if case == "unknown-ca":
        files = TestCA("Somebody Else's CA").issue_server_cert(tmp)
    elif case == "expired":
        nb, na = expired_window()
        files = trusted.issue_server_cert(tmp, not_before=nb, not_after=na)
    elif case == "not-yet-valid":
        nb, na = future_window()
        files = trusted.issue_server_cert(tmp, not_before=nb, not_after=na)
    else:
        files = trusted.issue_server_cert(tmp, names=("not-the-server.example",))
    app = web.Application()
    async with serve(app, server_context(None, files)) as running:
        yield running.port


@pytest.mark.parametrize("case", CASES)
async def test_tls_failure_keeps_payload_and_names_cause(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted = TestCA()
    ca_file = trusted.write_cert(tmp_path / "ca.pem")
    data_dir = tmp_path / "data"
    # Already registered (certificate from the trusted CA): the failure is on upload.
    identity = IdentityStore(data_dir / "identity")
    cert = trusted.sign_csr(identity.create_csr("TLS0001").encode())
    identity.store_registration("dev-tls0001", cert.decode(), trusted.cert_pem.decode())

    async with bad_server(case, trusted, tmp_path) as port:
        cfg = tmp_path / "agent.toml"
        cfg.write_text(
            f'[server]\nurl = "https://127.0.0.1:{port}/"\nca_bundle = "{ca_file}"\n'
            f'server_name = "localhost"\n[device]\ndata_dir = "{data_dir}"\n'
        )
        clock = VirtualClock()
        clock.register()  # this test: never parks, so virtual time stands still
        clock.register()  # the agent
        agent = Agent(load_config(cfg), make_device(clock, None, serial="TLS0001"),
                      clock=clock, rng=random.Random(3))
        agent.send_now()
        caplog.set_level(logging.WARNING, logger="device_direct.agent")
        task = asyncio.create_task(agent.run())
        try:
            for _ in range(1000):
                if agent.stats.send_failures:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert agent.stats.send_failures == 1
    assert agent.stats.uploads_stored == 0
    queued = agent.outbox.entries()
    assert len(queued) == 1 and queued[0].attempts == 1, "the payload must stay queued"
    lines = [r.getMessage() for r in caplog.records if r.name == "device_direct.agent"]
    assert any(f"(tls-{case})" in line for line in lines), lines
    # The next attempt waits out a backoff delay: no tight loop.
    assert queued[0].next_attempt_at > clock.now()
