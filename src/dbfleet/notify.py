"""Notifications: a job failed, a job recovered, a database's backups went
stale (older than its RPO), or became fresh again.

Channels (inventory ``notifications:``):

- ``webhook``: POST of a JSON document (:meth:`Event.payload`), optionally
  with ``Authorization: Bearer <token>`` from ``bearer_token_env``/``_file``;
- ``slack``: a Slack-compatible incoming webhook (Slack, Mattermost,
  Rocket.Chat, ...): POST ``{"text": ...}``; the URL is the secret, so it
  comes from ``url_env`` or ``url_file``;
- ``email``: a plain-text mail over SMTP, STARTTLS (default), implicit TLS or
  none; the password comes from ``password_env`` or ``password_file``.

Secrets are read when a message is sent (a rotated secret is picked up
without a restart) and never logged: error messages name the channel, never
its URL, token or password, and any secret that a library puts into an
error text is replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

from dbfleet import __version__
from dbfleet.errors import DbfleetError, OperationError, UsageError
from dbfleet.schedule.config import EmailChannel, NotificationConfig, SlackChannel, WebhookChannel
from dbfleet.secrets import secret_from

log = logging.getLogger("dbfleet.notify")

PAYLOAD_VERSION = 1
SEVERITY = {
    "job_failed": "error",
    "job_recovered": "ok",
    "database_stale": "error",
    "database_fresh": "ok",
    "health_alert": "warning",
    "health_cleared": "ok",
}
TITLES = {
    "job_failed": "FAILED",
    "job_recovered": "RECOVERED",
    "database_stale": "STALE",
    "database_fresh": "FRESH",
    "health_alert": "HEALTH",
    "health_cleared": "HEALTH OK",
}


class NotificationError(OperationError):
    """A notification could not be delivered."""


@dataclass
class Event:
    """Something to tell people about. ``job`` and ``freshness`` carry the
    details (a catalog run, a freshness result) as plain JSON values."""

    kind: str
    summary: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    database: str | None = None
    job: dict[str, Any] | None = None
    freshness: dict[str, Any] | None = None
    reminder: bool = False
    health: dict[str, Any] | None = None
    """``health_alert``/``health_cleared``: ``alert``, ``observed``, ``threshold``."""

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.kind, "info")

    @property
    def title(self) -> str:
        prefix = "still " if self.reminder else ""
        return f"{prefix}{TITLES.get(self.kind, self.kind)}: {self.summary}"

    def payload(self) -> dict[str, Any]:
        """The webhook document (``version`` 1; new keys may be added)."""
        return {
            "version": PAYLOAD_VERSION,
            "event": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "title": self.title,
            "reminder": self.reminder,
            "time": self.time.astimezone(UTC).isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
            "database": self.database,
            "job": self.job,
            "freshness": self.freshness,
            "health": self.health,
            "dbfleet_version": __version__,
        }

    def text(self) -> str:
        """Human text: the title, then the details that matter."""
        lines = [self.title]
        details: dict[str, Any] = {}
        keys: tuple[str, ...]
        if self.job:
            keys = ("job", "status", "attempt", "scheduled_at", "started_at", "duration_seconds",
                    "snapshot", "bytes", "error")  # fmt: skip
            details.update({k: self.job.get(k) for k in keys if self.job.get(k) is not None})
        if self.freshness:
            keys = ("repository", "latest_snapshot", "latest_time", "age", "rpo", "error")
            details.update(
                {k: self.freshness.get(k) for k in keys if self.freshness.get(k) is not None}
            )
        if self.health:
            details.update({k: v for k, v in self.health.items() if v is not None})
        lines += [f"{k}: {v}" for k, v in details.items()]
        lines.append(f"host: {socket.gethostname()}; time: {self.payload()['time']}")
        return "\n".join(lines)


class Channel(Protocol):
    name: str
    events: Sequence[str]

    def send(self, event: Event) -> None:
        """Deliver ``event`` or raise :class:`NotificationError`."""

    def check(self) -> None:
        """Raise :class:`UsageError` when a secret it needs is not available."""


def _scrub(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _post_json(url: str, document: dict[str, Any], headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"dbfleet/{__version__}",
            **headers,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        response.read()


def _http_error(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


class _UrlSender:
    def __init__(self, config: WebhookChannel | SlackChannel, name: str) -> None:
        self.config = config
        self.name = name
        self.events: Sequence[str] = list(config.events)

    def _url(self) -> str:
        c = self.config
        url = c.url or secret_from(c.url_env, c.url_file)
        if not url:
            where = f"${c.url_env}" if c.url_env else str(c.url_file)
            raise UsageError(f"notification channel {self.name}: no URL in {where}")
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"notification channel {self.name}: the URL must be http(s)")
        return url

    def _headers(self) -> tuple[dict[str, str], list[str | None]]:
        return {}, []

    def _document(self, event: Event) -> dict[str, Any]:
        raise NotImplementedError

    def check(self) -> None:
        self._url()
        self._headers()

    def send(self, event: Event) -> None:
        url = self._url()
        headers, secrets = self._headers()
        try:
            _post_json(url, self._document(event), headers, self.config.timeout.total_seconds())
        except (OSError, ValueError) as exc:
            message = _scrub(_http_error(exc), [url, *secrets])
            raise NotificationError(f"notification channel {self.name}: {message}") from None


class WebhookSender(_UrlSender):
    config: WebhookChannel

    def _headers(self) -> tuple[dict[str, str], list[str | None]]:
        c = self.config
        headers = dict(c.headers)
        token = None
        if c.bearer_token_env or c.bearer_token_file:
            token = secret_from(c.bearer_token_env, c.bearer_token_file)
            if not token:
                raise UsageError(
                    f"notification channel {self.name}: no token in "
                    f"{'$' + c.bearer_token_env if c.bearer_token_env else c.bearer_token_file}"
                )
            headers["Authorization"] = f"Bearer {token}"
        return headers, [token]

    def _document(self, event: Event) -> dict[str, Any]:
        return event.payload()


class SlackSender(_UrlSender):
    config: SlackChannel

    def _document(self, event: Event) -> dict[str, Any]:
        icon = ":red_circle:" if event.severity == "error" else ":large_green_circle:"
        title, _, rest = event.text().partition("\n")
        return {"text": f"{icon} *dbfleet {title}*\n{rest}"}


class EmailSender:
    def __init__(self, config: EmailChannel, name: str) -> None:
        self.config = config
        self.name = name
        self.events: Sequence[str] = list(config.events)

    def _password(self) -> str | None:
        c = self.config
        if c.password_env is None and c.password_file is None:
            return None
        password = secret_from(c.password_env, c.password_file)
        if not password:
            where = f"${c.password_env}" if c.password_env else str(c.password_file)
            raise UsageError(f"notification channel {self.name}: no SMTP password in {where}")
        return password

    def check(self) -> None:
        self._password()

    def message(self, event: Event) -> EmailMessage:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = f"{c.subject_prefix} {event.title}".strip()
        msg["From"] = c.sender
        msg["To"] = ", ".join(c.to)
        msg["Date"] = format_datetime(event.time.astimezone(UTC))
        msg["Message-ID"] = make_msgid(domain=socket.gethostname() or "dbfleet")
        msg["X-Dbfleet-Event"] = event.kind
        msg.set_content(event.text() + "\n")
        return msg

    def send(self, event: Event) -> None:
        c = self.config
        password = self._password()
        context = ssl.create_default_context(cafile=str(c.ca_file) if c.ca_file else None)
        timeout = c.timeout.total_seconds()
        try:
            smtp: smtplib.SMTP
            if c.security == "ssl":
                smtp = smtplib.SMTP_SSL(c.host, c.effective_port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(c.host, c.effective_port, timeout=timeout)
            with smtp:
                smtp.ehlo()
                if c.security == "starttls":
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if c.username and password is not None:
                    smtp.login(c.username, password)
                smtp.send_message(self.message(event))
        except (OSError, smtplib.SMTPException) as exc:
            message = _scrub(f"{type(exc).__name__}: {exc}", [password])
            raise NotificationError(f"notification channel {self.name}: {message}") from None


def build_channels(configs: Sequence[NotificationConfig]) -> list[Channel]:
    channels: list[Channel] = []
    for index, config in enumerate(configs):
        name = config.name or f"{config.type}#{index}"
        if isinstance(config, WebhookChannel):
            channels.append(WebhookSender(config, name))
        elif isinstance(config, SlackChannel):
            channels.append(SlackSender(config, name))
        else:
            channels.append(EmailSender(config, name))
    return channels


def check_channels(channels: Sequence[Channel]) -> list[str]:
    """Problems (missing secrets) with each channel, to report at start."""
    problems = []
    for channel in channels:
        try:
            channel.check()
        except DbfleetError as exc:
            problems.append(str(exc))
    return problems


def deliver(
    channels: Sequence[Channel], event: Event, *, attempts: int = 2, delay: float = 2.0
) -> dict[str, str | None]:
    """Send ``event`` to each channel that wants it; ``{name: error or None}``.
    A failed channel is tried ``attempts`` times; failures are logged, not raised."""
    outcome: dict[str, str | None] = {}
    for channel in channels:
        if event.kind not in channel.events:
            continue
        error: str | None = None
        for attempt in range(1, attempts + 1):
            try:
                channel.send(event)
                error = None
                break
            except DbfleetError as exc:
                error = str(exc)
                if attempt < attempts:
                    time.sleep(delay)
        outcome[channel.name] = error
        if error:
            log.warning("notification %s not delivered: %s", event.kind, error)
        else:
            log.info("notified %s via %s: %s", event.kind, channel.name, event.summary)
    return outcome


class Notifier:
    """Delivers events from a background thread, so a slow mail server never
    holds up the scheduler. ``close`` waits (bounded) for the queue to drain."""

    def __init__(self, channels: Sequence[Channel], *, attempts: int = 2) -> None:
        self.channels = list(channels)
        self.attempts = attempts
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dbfleet-notify", daemon=True)
        self.delivered: list[tuple[Event, dict[str, str | None]]] = []
        if self.channels:
            self._thread.start()

    def notify(self, event: Event) -> None:
        if not self.channels:
            log.info("%s (no notification channels configured)", event.title)
            return
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self.delivered.append(
                    (event, deliver(self.channels, event, attempts=self.attempts))
                )
            except Exception as exc:  # noqa: BLE001 - never let the sender thread die
                # the type only: a message might quote a URL with a token in it
                log.error("notification %s failed: %s", event.kind, type(exc).__name__)

    def close(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("gave up waiting for notifications to be delivered")
