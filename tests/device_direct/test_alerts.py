"""Alert e-mails against a real SMTP server on loopback (aiosmtpd).

The server runs in the test's event loop on 127.0.0.1 port 0; the mailer sends with
smtplib in a worker thread, as it does on a device.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from proxyfixtures import refusing_socket
from tlsfixtures import TestCA, server_context

from device_direct.alerts import AlertMailer, MailError, SmtpSender
from device_direct.config import AlertsConfig
from device_direct.errors import ConfigError
from device_direct.model import Alert, DeviceSnapshot, Severity
from emulator.clock import VirtualClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RECIPIENTS = ("keyop@customer.example", "dealer@service.example")


def _payload_samples() -> ModuleType:
    path = Path(__file__).parent / "core" / "payload_samples.py"
    spec = importlib.util.spec_from_file_location("dd_payload_samples_alerts", path)
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAMPLES = _payload_samples()


def alert(code: int, description: str, severity: Severity = Severity.CRITICAL) -> Alert:
    return Alert(code, severity, code, 11, 1, 0, description, T0)


TONER_EMPTY = alert(1101, "Black toner empty")
TONER_LOW = alert(1104, "Cyan toner low", Severity.WARNING)
JAM = alert(
    8, f"Jam in job '{SAMPLES.JOB_NAME}' of {SAMPLES.USER} <{SAMPLES.JOB_EMAIL}> from 10.1.2.3"
)


class Model:
    """Just the part of DeviceModel the mailer reads; the test sets ``active``."""

    def __init__(self) -> None:
        self.active: list[Alert] = []
        self._snapshot: DeviceSnapshot = SAMPLES.make_snapshot()

    def alerts(self) -> tuple[Alert, ...]:
        return tuple(self.active)

    def snapshot(self) -> DeviceSnapshot:
        return replace(self._snapshot, alerts=tuple(self.active))


@dataclass
class Received:
    envelope: Envelope
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        raw = self.envelope.original_content or self.envelope.content
        assert isinstance(raw, bytes)
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Inbox:
    mail: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if session.authenticated else None  # type: ignore[union-attr]
        self.mail.append(Received(envelope, session.ssl is not None, login))
        return "250 OK"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"dd", b"pw")
    return AuthResult(success=ok, auth_data=data if ok else None)


@asynccontextmanager
async def smtp_server(
    inbox: Inbox, *, tls: ssl.SSLContext | None = None, sock: socket.socket | None = None
) -> AsyncIterator[int]:
    """aiosmtpd on 127.0.0.1; STARTTLS offered when ``tls`` is given; AUTH over TLS only.

    On a free port, or on ``sock`` (bound already: see ``refusing_socket``)."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(inbox, hostname="mail.test", tls_context=tls,
                    authenticator=authenticator, auth_require_tls=True)

    if sock is not None:
        server = await loop.create_server(protocol, sock=sock)
    else:
        server = await loop.create_server(protocol, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def config(port: int, **changes: Any) -> AlertsConfig:
    base: dict[str, Any] = {
        "recipients": RECIPIENTS,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "starttls": "off",
        "severities": ("critical",),
        "min_interval_s": 3600.0,
    }
    return AlertsConfig(**{**base, **changes})


def mailer(cfg: AlertsConfig, model: Model, clock: VirtualClock, **kwargs: Any) -> AlertMailer:
    return AlertMailer(
        cfg, model, clock, random.Random(5), sender_address="printer@customer.example", **kwargs
    )  # type: ignore[arg-type]


async def test_mail_content_recipients_and_no_personal_data() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    async with smtp_server(inbox) as port:
        m = mailer(config(port), model, clock)
        model.active = [TONER_LOW]
        assert not await m.check()  # a warning: not chosen
        model.active = [TONER_LOW, TONER_EMPTY]
        assert await m.check()
    [got] = inbox.mail
    assert sorted(got.envelope.rcpt_tos) == sorted(RECIPIENTS)
    assert got.envelope.mail_from == "printer@customer.example"
    msg = got.message
    assert (
        msg["Subject"]
        == "[Device Direct] CRITICAL: Black toner empty on ColorMFP 7855 (serial XRX123456)"
    )
    assert msg["To"] == ", ".join(RECIPIENTS)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"  # the injected clock
    body = msg.get_content()
    assert "code 1101" in body and "Cyan" not in body


async def test_personal_data_is_scrubbed_from_descriptions() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    async with smtp_server(inbox) as port:
        model.active = [JAM]
        assert await mailer(config(port), model, clock).check()
    raw = inbox.mail[0].envelope.content
    assert isinstance(raw, bytes)
    for secret in (SAMPLES.USER, SAMPLES.JOB_NAME, SAMPLES.JOB_EMAIL, "10.1.2.3"):
        assert secret.encode() not in raw
    assert b"Jam in job" in raw


async def test_starttls_required_verifies_the_server_and_logs_in(tmp_path: Path) -> None:
    ca = TestCA("Mail CA")
    tls = server_context(None, ca.issue_server_cert(tmp_path, ("localhost",)))
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    model.active = [TONER_EMPTY]
    async with smtp_server(inbox, tls=tls) as port:
        cfg = config(port, smtp_host="localhost", starttls="required", username="dd", password="pw")
        m = mailer(cfg, model, clock, ca_bundle=ca.write_cert(tmp_path / "mail-ca.pem"))
        assert await m.check(), m.last_error
        # The same server, but the device does not trust its CA: nothing is sent.
        wrong = mailer(cfg, model, clock, ca_bundle=TestCA("Other").write_cert(tmp_path / "o.pem"))
        assert not await wrong.check()
        assert wrong.last_error is not None and wrong.last_error.reason == "tls"
        # Opportunistic encrypts without checking the certificate.
        opp = mailer(config(port, smtp_host="localhost", starttls="opportunistic"), model, clock)
        assert await opp.check(), opp.last_error
    assert [(r.tls, r.login) for r in inbox.mail] == [(True, "dd"), (True, None)]


async def test_credentials_never_go_over_an_unverified_channel(tmp_path: Path) -> None:
    # Opportunistic STARTTLS to a server whose certificate the device cannot check:
    # without credentials the mail goes (encrypted); with them, nothing is sent.
    ca = TestCA("Mail CA")
    tls = server_context(None, ca.issue_server_cert(tmp_path, ("localhost",)))
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    model.active = [TONER_EMPTY]
    async with smtp_server(inbox, tls=tls) as port:
        cfg = config(port, smtp_host="localhost", starttls="opportunistic", username="dd",
                     password="pw")
        m = mailer(cfg, model, clock)  # the system trust store: this CA is not in it
        assert not await m.check()
        assert m.last_error is not None and m.last_error.reason == "tls"
        trusted = mailer(cfg, model, clock, ca_bundle=ca.write_cert(tmp_path / "ca.pem"))
        assert await trusted.check(), trusted.last_error
    assert [(r.tls, r.login) for r in inbox.mail] == [(True, "dd")]
    with pytest.raises(ConfigError, match=r"alerts\.username"):
        config(port, starttls="off", username="dd", password="pw")


async def test_required_starttls_that_is_not_offered_sends_nothing() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    model.active = [TONER_EMPTY]
    async with smtp_server(inbox) as port:
        required = mailer(config(port, starttls="required"), model, clock)
        assert not await required.check()
        assert required.last_error is not None and required.last_error.reason == "starttls"
        assert "does not offer STARTTLS" in str(required.last_error)
        # A password is not sent in clear text either, even in opportunistic mode.
        cfg = config(port, starttls="opportunistic", username="dd", password="pw")
        with pytest.raises(MailError, match="not sending the password without TLS"):
            await SmtpSender(cfg).send(EmailMessage())
    assert inbox.mail == []


async def test_rate_limit_and_digest() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    async with smtp_server(inbox) as port:
        m = mailer(config(port), model, clock, min_gap_s=60)
        model.active = [TONER_EMPTY]
        assert await m.check()
        for step in range(1, 6):  # a jam storm: the same jam five times in ten minutes
            clock.advance_to(T0 + timedelta(minutes=2 * step))
            model.active = [TONER_EMPTY, JAM] if step % 2 else [TONER_EMPTY]
            await m.check()
        assert len(inbox.mail) == 2  # the toner mail and one jam mail
        burst = [alert(2000 + i, f"Fault {i}") for i in range(4)]
        clock.advance_to(T0 + timedelta(minutes=11))
        model.active = [burst[0]]
        assert await m.check()
        clock.advance_to(T0 + timedelta(minutes=11, seconds=20))
        model.active = burst
        assert not await m.check()  # inside the gap: waits
        clock.advance_to(T0 + timedelta(minutes=12, seconds=1))
        assert await m.check()
    subjects = [r.message["Subject"] for r in inbox.mail]
    assert subjects[-1] == "[Device Direct] 3 alerts on ColorMFP 7855 (serial XRX123456)"
    assert len(subjects) == 4 and m.planner.suppressed >= 1


async def test_server_down_then_up_is_retried_after_a_backoff() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    with refusing_socket() as sock:  # the server closes it; a failure before, this block
        m = mailer(config(int(sock.getsockname()[1])), model, clock)
        model.active = [TONER_EMPTY]
        assert not await m.check()
        assert m.last_error is not None and m.last_error.reason == "connect"
        retry_at = m.planner.next_wakeup()
        assert retry_at is not None and retry_at > T0
        async with smtp_server(inbox, sock=sock):
            assert not await m.check()  # backing off: not yet
            assert inbox.mail == []
            clock.advance_to(retry_at)
            assert await m.check()
    assert len(inbox.mail) == 1 and m.last_error is None


async def test_a_stalled_mail_server_does_not_block_the_event_loop() -> None:
    release = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # never says 220
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    model, clock = Model(), VirtualClock(T0)
    model.active = [TONER_EMPTY]
    m = mailer(config(port), model, clock)
    sending = asyncio.create_task(m.check())
    # Other work (an upload, say) gets the loop while SMTP waits in its thread.
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await asyncio.sleep(0)
    assert not sending.done()
    release.set()
    assert await sending is False
    assert m.last_error is not None
    server.close()
    await server.wait_closed()


async def test_a_cancelled_send_ends_its_thread_at_once() -> None:
    # The agent stopping cancels the mailer; asyncio.run then waits for the SMTP thread.
    # A server that never says 220 must not hold it for the 30 s socket timeout.
    accepted = asyncio.Event()
    closed = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # b"" once the client shuts the connection
        closed.set()
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    sending = asyncio.create_task(SmtpSender(config(port), timeout_s=30.0).send(EmailMessage()))
    try:
        await asyncio.wait_for(accepted.wait(), 10)
        await asyncio.sleep(0.2)  # the thread is now waiting for the greeting
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_whose_reply_never_ends_is_refused_not_read_for_ever() -> None:
    # smtplib caps a reply's line, not its number of "250-" continuation lines.
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example ESMTP\r\n")
        await reader.readline()  # EHLO
        with suppress(ConnectionError):
            for _ in range(1_000_000):  # 16 MB of continuation lines if nobody stops
                writer.write(b"250-AUTH PLAIN\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        with pytest.raises(MailError, match="longer than 65536 bytes") as info:
            await asyncio.wait_for(SmtpSender(config(port), timeout_s=10.0).send(
                EmailMessage()), 10)
        assert info.value.reason == "connect"
    finally:
        server.close()
        await server.wait_closed()


async def test_run_loop_on_the_virtual_clock() -> None:
    inbox, model, clock = Inbox(), Model(), VirtualClock(T0)
    async with smtp_server(inbox) as port:
        m = mailer(config(port), model, clock, poll_interval_s=30, min_gap_s=60)
        clock.register()
        clock.register()

        async def run() -> None:
            try:
                await m.run()
            finally:
                clock.unregister()

        async def script() -> None:
            try:
                model.active = [TONER_EMPTY]
                await clock.sleep(45)
                model.active = [TONER_EMPTY, JAM, alert(1002, "Fuser over temperature")]
                await clock.sleep(300)
            finally:
                clock.unregister()

        runner = asyncio.create_task(run())
        await script()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    subjects = [r.message["Subject"] for r in inbox.mail]
    assert len(subjects) == 2 and subjects[1].startswith("[Device Direct] 2 alerts")


def test_no_recipients_means_disabled() -> None:
    m = AlertMailer(AlertsConfig(), Model(), VirtualClock(T0), random.Random(1))  # type: ignore[arg-type]
    assert not m.enabled
