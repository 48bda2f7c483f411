"""The agent with its proxy and alert layers wired in, against real peers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device
from tests.device_direct.proxyfixtures import tinyproxy
from tests.device_direct.test_alerts import Inbox, smtp_server


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_manual_proxy_route_is_used_and_reported_in_the_payload(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server, \
            tinyproxy(tmp_path / "proxy") as proxy:
        model = make_device(clock, None)
        agent, _ = make_agent(
            tmp_path, server, model, clock,
            extra=f'[proxy]\nmode = "manual"\nhost = "127.0.0.1"\nport = {proxy.port}\n',
        )
        clock.register()  # the test: time stands still
        clock.register()
        task = asyncio.create_task(agent.run())
        try:
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 1)
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored == 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert proxy.connects(), "nothing went through the proxy"
        assert agent.proxy_route is not None
        assert agent.proxy_route.route == f"PROXY 127.0.0.1:{proxy.port}"
        assert agent.proxy_info()["mode"] == "manual"
        uploads = server.storage.uploads(agent.identity.device_id or "")
        second = server.storage.upload_zip(uploads[-1]["upload_id"])
        assert second is not None
        xml = zipfile.ZipFile(io.BytesIO(second)).read("device-data.xml").decode()
        assert f'route="PROXY 127.0.0.1:{proxy.port}"' in xml and 'source="manual"' in xml


async def test_a_jam_is_mailed_while_uploads_go_on(tmp_path: Path) -> None:
    clock = VirtualClock()
    inbox = Inbox()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server, \
            smtp_server(inbox) as smtp_port:
        model = make_device(clock, None)
        agent, _ = make_agent(
            tmp_path, server, model, clock,
            extra=(f'[alerts]\nrecipients = ["ops@example.com"]\nsmtp_host = "127.0.0.1"\n'
                   f'smtp_port = {smtp_port}\nstarttls = "off"\nseverities = ["critical"]\n'),
        )
        assert agent.mailer is not None
        model.jam()
        clock.register()  # the test: time stands still
        clock.register()  # the agent (the mailer beside it sleeps in the background)
        task = asyncio.create_task(agent.run())
        try:
            await _until(lambda: len(inbox.mail) >= 1)
            agent.send_now()
            await _until(lambda: agent.stats.uploads_stored >= 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        mail = inbox.mail[0]
        assert mail.envelope.rcpt_tos == ["ops@example.com"]
        body = mail.message.get_body(preferencelist=("plain",))
        assert body is not None and "jam" in body.get_content().lower()
        assert model.serial in str(mail.message["Subject"]) + body.get_content()
