"""Only the server's own JSON error is a final rejection (issue 16, item 2).

A load balancer terminating TLS with the site's certificate answers in the server's
place for a while (nginx's HTML 404 and 413, a captive portal's 403): the payloads must
stay queued, be retried with backoff and reach the server once it is back in the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from device_direct.agent import Agent
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.agent_harness import make_agent, make_device
from tests.device_direct.tlsfixtures import serve

NGINX_404 = "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def pointed_at(agent: Agent, url: str) -> None:
    agent.config = dataclasses.replace(
        agent.config, server=dataclasses.replace(agent.config.server, url=url))


async def test_a_load_balancers_4xx_pages_are_retried_never_final(tmp_path: Path) -> None:
    answers: list[Callable[[], web.Response]] = [
        lambda: web.Response(status=404, text=NGINX_404, content_type="text/html"),
        lambda: web.Response(status=413, text="<html>413 Request Entity Too Large</html>",
                             content_type="text/html"),
        lambda: web.Response(status=403, text="<html>Please log in to the guest network</html>",
                             content_type="text/html"),
        # JSON, but not the contract's error object.
        lambda: web.json_response({"message": "no route"}, status=404),
    ]
    seen: list[int] = []

    async def balancer(request: web.Request) -> web.Response:
        await request.read()
        answer = answers[len(seen) % len(answers)]()
        seen.append(answer.status)
        return answer

    clock = VirtualClock()
    async with ReferenceServer(tmp_path / "server", clock=clock) as server:
        agent, config = make_agent(tmp_path, server, make_device(clock, None), clock)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", balancer)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server.pki.server_cert_path, server.pki.server_key_path)
        async with serve(app, ctx) as lb:
            # Time stands still while the test polls: the test (never parked) and the
            # agent are both participants. Counted alone, the test let the agent's
            # parking run virtual time on, to daily syncs it did not ask for.
            clock.register()
            clock.register()
            task = asyncio.create_task(agent.run())
            try:
                agent.send_now()
                await _until(lambda: agent.stats.uploads_stored == 1)
                pointed_at(agent, f"https://127.0.0.1:{lb.port}/")
                clock.unregister()  # a few days in the wrong path
                await _until(lambda: len(seen) >= 8 and len(agent.outbox.entries()) >= 2,
                             timeout=60)
                clock.register()
                assert agent.stats.uploads_rejected == 0
                assert not [r for r in agent.outbox.history() if r.result == "rejected"]
                assert "ForeignAnswer" in agent.stats.last_error or any(
                    "ForeignAnswer" in r.detail for r in agent.outbox.history())
                pointed_at(agent, config.server.url)
                clock.unregister()
                await _until(lambda: not agent.outbox.entries(), timeout=60)
                clock.register()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert set(seen) == {404, 413, 403}
        device_id = agent.identity.device_id
        assert device_id is not None
        stored = sorted(u["sequence"] for u in server.storage.uploads(device_id))
        assert stored == list(range(len(stored))) and len(stored) >= 3
        assert server.storage.sequence_gaps(device_id) == []
