"""The dashboard's managers and printers pages without a browser: login, the size of a
form, unknown names, a serial reported with two models, and the bound on the refusals
kept per manager.
(The pages with real data, in Chromium: test_dashboard_managers_browser.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from emulator.server import ReferenceServer
from emulator.server.dashboard.pages import FORM_LIMIT
from emulator.server.sources import REJECTIONS_KEPT, Sources
from tests.emulator.server.refserver_helpers import server_ctx

INFO = {"hostname": "pc-<i>1</i>", "ip": "10.0.0.5", "os": "Linux", "app_version": "1.0",
        "location": "hall", "contact_email": "it@example.com"}
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


async def _login(http: aiohttp.ClientSession, server: ReferenceServer) -> None:
    ctx = server_ctx(server)
    async with http.get(server.base_url + "/dashboard/login", ssl=ctx) as page:
        found = re.search(r'name="login_token" value="([^"]+)"', await page.text())
    assert found
    async with http.post(server.base_url + "/dashboard/login", ssl=ctx, data={
            "token": server.admin_token, "login_token": found.group(1),
            "next": "/dashboard/managers"}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/dashboard/managers"


async def test_pages_need_the_login_and_name_what_is_unknown(server: ReferenceServer
                                                             ) -> None:
    ctx = server_ctx(server)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for path in ("/dashboard/managers", "/dashboard/printers/S1?model=M"):
            async with http.get(server.base_url + path, ssl=ctx,
                                allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"].startswith("/dashboard/login?next=")
        await _login(http, server)
        async with http.get(server.base_url + "/dashboard/managers", ssl=ctx) as r:
            assert r.status == 200
            assert "No device manager has registered" in await r.text()
        for path, what in (("/dashboard/managers/mgr-nope", "no manager mgr-nope"),
                           ("/dashboard/printers/NOPE", "no printer NOPE")):
            async with http.get(server.base_url + path, ssl=ctx) as r:
                assert r.status == 404 and what in await r.text()


async def test_a_form_bigger_than_any_dashboard_form_is_refused_unread(
        server: ReferenceServer) -> None:
    # The login form needs no session, and was read whole into memory up to the
    # application's limit (512 MiB, for firmware images): 300 MiB posted to it took the
    # server from 79 to 679 MiB.
    body = b"token=" + b"a" * (FORM_LIMIT * 4)
    async with aiohttp.ClientSession() as http, http.post(
            server.base_url + "/dashboard/login", ssl=server_ctx(server), data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 413, await r.text()
        assert (await r.json())["error"] == "too_large"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, server)  # a real form still goes through


@pytest.mark.parametrize(("body", "content_type"), [
    (b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
    (b"token=a", "application/x-www-form-urlencoded; charset=bogus"),
    (b"--x\r\nnot a part", "multipart/form-data; boundary=y"),
])
async def test_a_form_that_cannot_be_decoded_is_a_400_not_a_500(
        server: ReferenceServer, body: bytes, content_type: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            server.base_url + "/dashboard/login", ssl=server_ctx(server), data=body,
            headers={"Content-Type": content_type}) as r:
        assert r.status == 400, await r.text()


async def test_a_serial_reported_with_two_models_asks_which(server: ReferenceServer) -> None:
    sources = Sources(server.storage.path)  # a second connection on the server's file
    try:
        sources.register_manager(manager_id="mgr-1", info=INFO, cert_serial="01", now=NOW)
        for n, model in enumerate(("Model <A>", "Model B")):
            assert sources.store_upload(
                "mgr-1", upload_id=f"00000000-0000-4000-8000-00000000000{n}", serial="S1",
                model=model, sequence=n, generated_at="2026-01-05T10:00:00Z",
                meters={"total-impressions": 10 + n}, body=b"zip", sha256="0" * 64, now=NOW)
    finally:
        sources.close()
    ctx = server_ctx(server)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, server)
        async with http.get(server.base_url + "/dashboard/printers/S1", ssl=ctx) as r:
            text = await r.text()
            assert r.status == 200 and "Several models" in text
            assert "Model &lt;A&gt;" in text and "?model=Model%20%3CA%3E" in text
        async with http.get(server.base_url + "/dashboard/printers/S1?model=Model%20B",
                            ssl=ctx) as r:
            text = await r.text()
            assert r.status == 200 and 'data-kind="manager"' in text
            assert "pc-&lt;i&gt;1&lt;/i&gt;" in text and "<i>" not in text
        async with http.get(server.base_url + "/dashboard/managers/mgr-1", ssl=ctx) as r:
            text = await r.text()
            assert r.status == 200 and text.count('class="printer"') == 2
            # registered by hand here, never heard from over the mTLS API
            assert "never heard from since it registered" in text
        uid = "00000000-0000-4000-8000-000000000001"
        async with http.get(f"{server.base_url}/dashboard/managers/mgr-1/uploads/{uid}.zip",
                            ssl=ctx) as r:
            assert r.status == 200 and await r.read() == b"zip"
        async with http.get(f"{server.base_url}/dashboard/managers/mgr-2/uploads/{uid}.zip",
                            ssl=ctx) as r:
            assert r.status == 404  # not that manager's upload


def test_the_newest_refusals_are_kept_per_manager(tmp_path: Path) -> None:
    sources = Sources(tmp_path / "server.db")
    try:
        for mid in ("mgr-1", "mgr-2"):
            sources.register_manager(manager_id=mid, info=INFO, cert_serial=mid, now=NOW)
        for i in range(REJECTIONS_KEPT + 5):
            sources.record_rejection("mgr-1", status=403, error="out_of_scope",
                                     detail=f"refusal {i}", now=NOW + timedelta(seconds=i))
        sources.record_rejection("mgr-2", status=422, error="bad_serial", detail="x", now=NOW)
        kept = sources.rejections("mgr-1", limit=10 * REJECTIONS_KEPT)
        assert len(kept) == REJECTIONS_KEPT
        assert kept[0]["detail"] == f"refusal {REJECTIONS_KEPT + 4}"  # newest first
        assert kept[-1]["detail"] == "refusal 5"
        counts = {m["manager_id"]: m["rejected_uploads"] for m in sources.managers()}
        assert counts == {"mgr-1": REJECTIONS_KEPT, "mgr-2": 1}  # the other one untouched
    finally:
        sources.close()
