"""The device's TLS on the OpenSSL that cryptography ships (``tls_library = "bundled"``)
does what it does on the system's.

The transport's and the connection's own tests (``test_transport.py``,
``test_http_connection.py``) run here once more, every ``Transport`` and every ``Route``
of theirs on the bundled library: mutual TLS with each device call, renewal, each
certificate problem with its own reason, the server name checked, an old-TLS server
refused, a strict server refusing a foreign client certificate (TLS 1.3: an alert after
the handshake), a server that never starts TLS, the proxy's CONNECT tunnel, kept and
dropped connections, chunked and broken-off bodies, downloads. Then what is the bundled
library's own: that it is the one in use, garbage instead of TLS, the config key.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from pathlib import Path

import pytest
import test_http_connection as connection_tests
import test_transport as transport_tests
from test_http_connection import (  # noqa: F401  (collected here, on the bundled library)
    test_a_chunked_answer_is_read_whole_and_the_connection_kept,
    test_a_device_day_is_three_requests_on_one_connection,
    test_a_download_broken_off_keeps_what_arrived,
    test_a_get_left_unanswered_on_a_kept_connection_is_sent_once_more,
    test_a_malformed_head_is_a_remote_protocol_error_naming_the_endpoint,
    test_a_post_left_unanswered_is_never_sent_twice,
    test_a_server_closing_mid_body_is_a_connect_error_and_a_new_connection_follows,
    test_an_idle_connection_the_server_dropped_is_replaced_before_sending,
    test_connection_close_means_a_new_connection_for_the_next_request,
    test_on_uvloop_a_tunnel_and_a_direct_connection_are_each_kept,
    test_proxy_credentials_go_on_the_connect_only_and_the_tunnel_is_kept,
    test_requests_made_at_once_get_connections_of_their_own_and_one_is_kept,
)
from test_transport import (  # noqa: F401  (collected here, on the bundled library)
    GOOD_KEY,
    SERIAL,
    test_a_huge_chunked_body_is_cut_off_at_the_limit,
    test_a_server_offering_only_tls_1_0_and_1_1_is_refused,
    test_a_server_that_never_answers_the_request_is_a_timeout,
    test_a_server_that_never_starts_tls_is_a_timeout,
    test_a_stored_identity_is_used_after_restart,
    test_a_tls_1_1_server_that_cuts_the_handshake_is_named_as_such,
    test_download_resumes_with_range,
    test_download_without_content_length_stops_at_max_bytes_plus_one,
    test_each_certificate_problem_has_its_own_reason,
    test_proxy_tunnel_with_credentials,
    test_register_then_every_device_call_over_mutual_tls,
    test_register_upload_actions_firmware_and_logs_against_the_reference_server,
    test_renewal_replaces_the_certificate_and_keeps_working,
    test_strict_mtls_server_refuses_a_foreign_certificate_and_accepts_ours,
    test_the_expected_name_not_the_url_host_is_verified,
)
from tlsfixtures import TestCA

from device_direct.config import ServerConfig
from device_direct.errors import AuthError, ConfigError, TLSError
from device_direct.identity import IdentityStore
from device_direct.tls_bundled import BundledContext, _TlsLink, available
from device_direct.transport import Timeouts, Transport, build_tls_context
from emulator.clock import VirtualClock
from emulator.server.app import ReferenceServer
from tests.device_direct.test_actions_rig import make_rig


@pytest.fixture(autouse=True)
def _on_the_bundled_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_tests, "Transport",
                        functools.partial(Transport, tls_library="bundled"))
    monkeypatch.setattr(connection_tests, "build_ssl_context", BundledContext)


def test_this_installation_can_run_the_device_tls_on_the_bundled_openssl() -> None:
    # Every test above would fall back to nothing: say so rather than skip them.
    version = available()
    assert version is not None and version.startswith("OpenSSL ")


async def test_a_registered_device_uses_the_bundled_library_for_its_own_certificate(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    async with transport_tests.fake_server(tmp_path, ca) as (server, url):
        transport = await transport_tests.registered(url, bundle, tmp_path / "id")
        async with transport:
            context = transport._build_context()
            assert isinstance(context, BundledContext) and context.has_client_cert
            await transport.poll_actions()  # the server saw our certificate (401 otherwise)
    assert server.requests[-1].endswith("/actions")


# Its two full collections walk the whole heap of a long test session from inside the
# loop (176 ms in a fresh clone's full run): that is the test's own doing, not a device's.
@pytest.mark.allow_loop_blocking
async def test_a_closed_connection_is_freed_at_once_not_by_the_garbage_collector(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    # A link and its application refer to each other. Once the connection has ended the
    # link lets go, so its SSL object and read buffer go with their last user: a fleet
    # closes thousands of connections a minute, and the collector would find each of
    # them only later, after walking everything younger.
    def links() -> list[object]:
        return [o for o in gc.get_objects() if isinstance(o, _TlsLink)]

    gc.collect()
    gc.disable()
    try:
        async with transport_tests.fake_server(tmp_path, ca) as (server, url):
            transport = await transport_tests.registered(url, bundle, tmp_path / "id")
            async with transport:
                await transport.poll_actions()
                assert links()  # the kept connection
            for _ in range(200):  # its end is heard a loop turn or two after the close
                if not links():
                    break
                await asyncio.sleep(0.01)
            left = links()
    finally:
        # What the test's servers left for the collector goes now, while the test
        # still runs (their finalizers may warn), not in some later test's teardown.
        gc.collect()
        gc.enable()
    assert left == []
    assert server.requests[-1].endswith("/actions")


async def test_the_handshake_s_last_flight_leaves_with_the_first_request(
    tmp_path: Path, ca: TestCA, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The device's Finished waits in the link for the request its opener writes next:
    # the server reads both in one wake-up. Each connection's writes to the socket:
    # the ClientHello, the Finished with the first request, the next requests, and the
    # close_notify.
    writes: list[list[bytes]] = []
    made = _TlsLink.connection_made

    def recording(link: _TlsLink, transport: asyncio.BaseTransport) -> None:
        sent: list[bytes] = []
        writes.append(sent)
        real = transport.write  # type: ignore[attr-defined]

        def write(data: bytes) -> None:
            sent.append(bytes(data))
            real(data)

        transport.write = write  # type: ignore[attr-defined]
        made(link, transport)

    monkeypatch.setattr(_TlsLink, "connection_made", recording)
    async with transport_tests.fake_server(tmp_path, ca) as (server, url):
        transport = await transport_tests.registered(url, bundle, tmp_path / "id")
        async with transport:
            await transport.poll_actions()
            await transport.poll_actions()
    assert [len(sent) for sent in writes] == [3, 4]  # registration; two polls
    # The device's certificate, its signature, the Finished and the request: each an
    # encrypted TLS 1.3 record (type 23), after the compatibility ChangeCipherSpec (20).
    together, types = writes[1][1], []
    while together:
        types.append(together[0])
        together = together[5 + int.from_bytes(together[3:5], "big"):]
    assert types == [20, 23, 23, 23, 23]
    assert server.requests[-2:] == [server.requests[-1]] * 2


@pytest.mark.parametrize("library", ["system", "bundled"])
async def test_garbage_instead_of_tls_is_a_tls_error_on_either_library(
    tmp_path: Path, bundle: Path, library: str
) -> None:
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport = Transport(f"https://127.0.0.1:{port}/", bundle, "localhost",
                              IdentityStore(tmp_path / "id"), VirtualClock(),
                              timeouts=Timeouts(connect=5, request=5, upload=5, read=5),
                              tls_library=library)  # type: ignore[arg-type]
        async with transport:
            with pytest.raises(TLSError) as info:
                await transport.register(SERIAL, "C8000", "00:11:22:33:44:55", {}, GOOD_KEY)
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.reason in ("tls-version", "handshake")
    assert "POST /dd/v1/register" in str(info.value)


def test_a_bad_bundle_or_key_is_named_as_on_the_system_library(
    tmp_path: Path, ca: TestCA, bundle: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for library in ("system", "bundled"):
        with pytest.raises(ConfigError, match="CA bundle file not found"):
            build_tls_context(library, tmp_path / "missing.pem")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="CA bundle cannot be loaded"):
            build_tls_context(library, junk)  # type: ignore[arg-type]
        with pytest.raises(AuthError, match="cannot load the client certificate and key"):
            build_tls_context(library, bundle, (bundle, junk))  # type: ignore[arg-type]


async def test_an_agent_configured_for_the_bundled_library_syncs_and_troubleshoots_on_it(
    tmp_path: Path, server: ReferenceServer, clock: VirtualClock
) -> None:
    rig = await make_rig(tmp_path, server, clock, tls_library="bundled")  # registered, synced
    assert rig.config.server.tls_library == "bundled"
    action = rig.enqueue("troubleshoot", {})
    meters = rig.enqueue("send_meters_now", {})
    assert await rig.agent.sync("on-demand")
    assert rig.results()[meters]["result_status"] == "succeeded"
    result = rig.results()[action]
    assert result["result_status"] == "succeeded", result
    steps = result["result_detail"]["steps"]
    assert steps["tls"]["ok"] is True and steps["tls"]["library"] == "bundled", steps["tls"]
    assert steps["tls"]["version"] == "TLSv1.3" and steps["tls"]["client_certificate"] is True
    assert steps["mtls_call"]["ok"] is True
    assert len(server.storage.uploads(rig.device_id)) == 1  # send_meters_now's, over it too


def test_the_config_key_names_its_choices() -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_library.*system, bundled"):
        ServerConfig(url="https://dd.example.com", tls_library="gnutls")  # type: ignore[arg-type]
