"""E-mail alerts over SMTP: the printer tells its keyholders about toner, jams and service.

:class:`AlertMailer` watches ``model.alerts()`` and mails the configured recipients
when alerts of the chosen severities are raised; :class:`~device_direct.core.alerts.
AlertPlanner` decides what and when (rate limit, digest, retry). Two ways to drive it:

* ``await mailer.run()`` as its own task: it polls the model every ``poll_interval_s``
  of the injected clock and wakes up for retries. This is the way for the agent: a slow
  or dead mail server only ever delays this task, never an upload;
* ``await mailer.check()`` for a caller that owns the loop (tests, the fleet): one
  observation and at most one send attempt.

Sending uses stdlib :mod:`smtplib` in a worker thread (port 25 by default). STARTTLS:
``off`` never; ``opportunistic`` when the server offers it, encryption without a
certificate check (RFC 7435: better than plain text, and a mail relay on a LAN rarely
has a certificate the device could check); ``required`` refuses a server that does not
offer it and checks its certificate and host name against ``ca_bundle`` (or the system
store). Credentials are only ever sent over a verified channel: with a username
configured, ``opportunistic`` checks the certificate as ``required`` does (and sends
nothing to a server that offers no STARTTLS), and ``off`` is refused by the config.

The mail holds model, serial number and the alerts, and nothing personal: descriptions
are scrubbed of e-mail addresses, IP addresses and the user and job names in the job
log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import smtplib
import socket
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from device_direct.clock import Clock
from device_direct.config import AlertsConfig
from device_direct.core.alerts import AlertPlanner, AlertPolicy, MailPlan
from device_direct.core.privacy import PrivacyPolicy, TextScrubber
from device_direct.errors import NetworkError
from device_direct.model import Alert, DeviceModel, Identity, Severity

log = logging.getLogger(__name__)

DEFAULT_SENDER = "device-direct@localhost"
POLL_INTERVAL_S = 30.0
SMTP_TIMEOUT_S = 30.0
_SEVERITY_WORDS = {1: "OTHER", 3: "CRITICAL", 4: "WARNING", 5: "WARNING"}


class MailError(NetworkError):
    """An alert mail could not be sent; ``reason`` is connect, starttls, tls, auth or
    refused. The mail is retried later."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(f"alert mail {reason}: {message}")


# -- the message ---------------------------------------------------------------------------


def build_message(
    plan: MailPlan,
    identity: Identity,
    *,
    sender: str,
    recipients: Sequence[str],
    now: datetime,
    scrubber: TextScrubber,
    message_id: str,
) -> EmailMessage:
    """The alert mail (plain text). One alert: its name in the subject; more: a digest."""
    device = f"{identity.model} (serial {identity.serial})"
    alerts = plan.alerts
    if plan.digest:
        count = len(alerts) + plan.left_out
        subject = f"[Device Direct] {count} alerts on {device}"
    else:
        only = alerts[0]
        subject = (
            f"[Device Direct] {_SEVERITY_WORDS.get(only.severity.value, 'ALERT')}: "
            f"{scrubber.scrub(only.description)} on {device}"
        )
    lines = [
        f"Device: {identity.manufacturer} {device}",
        f"Reported: {format_datetime(now)}",
        "",
    ]
    for alert in alerts:
        lines.append(
            f"- {_SEVERITY_WORDS.get(alert.severity.value, 'ALERT')} "
            f"{scrubber.scrub(alert.description)} "
            f"(code {alert.code}, group {alert.group}, raised {format_datetime(alert.raised_at)})"
        )
    if plan.left_out:
        lines.append(f"- and {plan.left_out} more alerts not listed (the queue was full)")
    lines += ["", "This message was sent by the printer's remote-services module."]
    msg = EmailMessage()
    msg["Subject"] = subject.replace("\n", " ")[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    msg.set_content("\n".join(lines) + "\n")
    return msg


# -- sending -------------------------------------------------------------------------------


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its To: recipients or raise :class:`MailError`."""
        ...


class SmtpSender:
    """Delivers mail with smtplib in a worker thread, per the ``[alerts]`` config."""

    def __init__(
        self,
        config: AlertsConfig,
        *,
        ca_bundle: Path | None = None,
        timeout_s: float = SMTP_TIMEOUT_S,
        local_hostname: str | None = None,
    ) -> None:
        if config.smtp_host is None:
            raise MailError("alerts.smtp_host is not configured", reason="connect")
        self._config = config
        self._host = config.smtp_host
        self._timeout_s = timeout_s
        self._local_hostname = local_hostname or "device-direct.invalid"
        self._ca_bundle = ca_bundle

    def _tls_context(self) -> ssl.SSLContext:
        # A password goes over a verified channel only: with credentials, the server's
        # certificate is checked whatever the mode; without, opportunistic encrypts
        # without a check (RFC 7435).
        if self._config.starttls == "required" or self._config.username is not None:
            ctx = ssl.create_default_context(
                cafile=str(self._ca_bundle) if self._ca_bundle is not None else None
            )
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def send(self, message: EmailMessage) -> None:
        """Send in a thread so the event loop (and the uploads) never wait on SMTP.

        Cancelled (the agent stopping), the connection is shut down so that the thread
        ends at once: ``asyncio.run`` waits for it, and a mail server that says nothing
        (or a byte every few seconds) would otherwise hold the agent's exit."""
        opened: list[smtplib.SMTP] = []
        try:
            await asyncio.to_thread(self._send_blocking, message, opened)
        except asyncio.CancelledError:
            for smtp in opened:
                _shut_down(smtp)
            raise

    def _send_blocking(self, message: EmailMessage, opened: list[smtplib.SMTP]) -> None:
        cfg = self._config
        where = f"{self._host}:{cfg.smtp_port}"
        try:
            with _Smtp(opened, self._host, cfg.smtp_port, self._local_hostname,
                       timeout=self._timeout_s) as smtp:
                smtp.ehlo()
                encrypted = False
                if cfg.starttls != "off":
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=self._tls_context())
                        smtp.ehlo()
                        encrypted = True
                    elif cfg.starttls == "required":
                        raise MailError(
                            f"{where} does not offer STARTTLS and alerts.starttls is required",
                            reason="starttls",
                        )
                if cfg.username is not None:
                    if not encrypted:
                        raise MailError(
                            f"{where}: not sending the password without TLS (the server "
                            "offers no STARTTLS)",
                            reason="starttls",
                        )
                    smtp.login(cfg.username, cfg.password or "")
                refused = smtp.send_message(message)
                if refused:
                    log.warning("alert mail refused for %d recipient(s)", len(refused))
        except MailError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"{where} refused the login ({exc.smtp_code})", reason="auth") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError(f"{where}: {exc}", reason="auth") from exc
        except ssl.SSLError as exc:
            raise MailError(f"{where}: STARTTLS handshake failed: {exc}", reason="tls") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"{where} refused every recipient", reason="refused") from exc
        except smtplib.SMTPResponseException as exc:
            raise MailError(
                f"{where} answered {exc.smtp_code} {exc.smtp_error!r}", reason="refused"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"cannot talk to {where}: {exc}", reason="connect") from exc


MAX_REPLY_BYTES = 64 * 1024  # an EHLO reply is a few hundred bytes


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP that is in ``opened`` before it connects, so that a cancelled send
    can reach its socket while the greeting is still awaited, and that reads at most
    :data:`MAX_REPLY_BYTES` of one reply: smtplib caps a line, not the number of
    continuation lines, so a server sending ``250-`` lines for ever would fill the
    device's memory."""

    def __init__(self, opened: list[smtplib.SMTP], host: str, port: int, local_hostname: str,
                 *, timeout: float) -> None:
        opened.append(self)
        super().__init__(host, port, local_hostname, timeout=timeout)

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:  # as smtplib does, but capped
            self.file = _CappedReader(self.sock.makefile("rb"))
        if isinstance(self.file, _CappedReader):
            self.file.left = MAX_REPLY_BYTES
        return super().getreply()


class _CappedReader:
    """The reply stream smtplib reads lines from, with a byte budget per reply."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.left = MAX_REPLY_BYTES

    def readline(self, limit: int = -1) -> bytes:
        if self.left <= 0:  # an OSError: smtplib closes and says the server went away
            raise smtplib.SMTPResponseException(
                500, f"reply longer than {MAX_REPLY_BYTES} bytes".encode())
        line: bytes = self._raw.readline(limit)
        self.left -= len(line)
        return line

    def close(self) -> None:
        self._raw.close()


def _shut_down(smtp: smtplib.SMTP) -> None:
    """Wake the worker thread blocked on ``smtp``'s socket: its read returns, it ends."""
    sock = smtp.sock
    if sock is None:
        return
    # On a duplicate of the descriptor: the same connection, but not the (TLS) socket
    # object the worker is using.
    with contextlib.suppress(OSError), socket.fromfd(
            sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
        dup.shutdown(socket.SHUT_RDWR)


# -- the mailer ----------------------------------------------------------------------------


class AlertMailer:
    """Watches the model's alerts and mails them (see the module text for how to run it)."""

    def __init__(
        self,
        config: AlertsConfig,
        model: DeviceModel,
        clock: Clock,
        rng: random.Random,
        *,
        sender: MailSender | None = None,
        ca_bundle: Path | None = None,
        sender_address: str = DEFAULT_SENDER,
        poll_interval_s: float = POLL_INTERVAL_S,
        min_gap_s: float = 60.0,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._config = config
        self._model = model
        self._clock = clock
        self._rng = rng
        self._sender_address = sender_address
        self._poll = timedelta(seconds=poll_interval_s)
        self.planner = AlertPlanner(
            AlertPolicy.from_names(
                config.severities, config.min_interval_s, min_gap=timedelta(seconds=min_gap_s)
            ),
            rng,
        )
        self._sender = sender
        if sender is None and self.enabled:
            self._sender = SmtpSender(config, ca_bundle=ca_bundle)
        self.sent = 0
        self.last_error: MailError | None = None
        self._agent_alerts: list[Alert] = []

    def agent_alert(self, description: str) -> None:
        """Raise an alert of the agent itself (not of the printer), mailed as critical
        with the printer's own alerts; it stays raised until the agent restarts."""
        alert = Alert(index=10_000 + len(self._agent_alerts), severity=Severity.CRITICAL,
                      code=1, group=1, group_index=0, location=len(self._agent_alerts),
                      description=description, raised_at=self._clock.now())
        self._agent_alerts.append(alert)

    @property
    def enabled(self) -> bool:
        """Whether there is anyone to mail."""
        return bool(self._config.recipients) and self._config.smtp_host is not None

    async def check(self) -> bool:
        """Observe the model's alerts now and send the mail that is due, if any.

        Returns True when a mail went out. A failed send is kept and retried later (see
        :attr:`last_error`); it never raises for SMTP trouble.
        """
        if not self.enabled or self._sender is None:
            return False
        now = self._clock.now()
        self.planner.observe(now, [*self._model.alerts(), *self._agent_alerts])
        plan = self.planner.due(now)
        if plan is None:
            return False
        message = self._message(plan, now)
        try:
            await self._sender.send(message)
        except MailError as exc:
            delay = self.planner.failed(self._clock.now(), plan)
            self.last_error = exc
            log.warning("%s; retrying in %.0f s", exc, delay.total_seconds())
            return False
        self.planner.sent(self._clock.now(), plan)
        self.sent += 1
        self.last_error = None
        log.info(
            "alert mail sent: %d alert(s) to %d recipient(s)",
            len(plan.alerts),
            len(self._config.recipients),
        )
        return True

    async def run(self) -> None:
        """Check, then sleep on the clock until the next poll or retry; for ever."""
        while True:
            await self.check()
            now = self._clock.now()
            wake = now + self._poll
            retry = self.planner.next_wakeup()
            if retry is not None and retry < wake:
                wake = max(retry, now)
            await self._clock.sleep_until(wake)

    def _message(self, plan: MailPlan, now: datetime) -> EmailMessage:
        snapshot = self._model.snapshot()
        scrubber = TextScrubber(PrivacyPolicy(locked_down=True), snapshot.jobs)
        token = f"{self._rng.getrandbits(64):016x}"
        return build_message(
            plan,
            snapshot.identity,
            sender=self._sender_address,
            recipients=self._config.recipients,
            now=now,
            scrubber=scrubber,
            message_id=f"<{int(now.timestamp())}.{token}@device-direct.invalid>",
        )
