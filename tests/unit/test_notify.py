"""Notifications, delivered for real: a local HTTP receiver (webhook and
Slack-compatible) and a local SMTP server with STARTTLS and authentication
(aiosmtpd), both started by these tests on 127.0.0.1. Secrets come from the
environment or files and never show in errors or logs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import TypeAdapter

from dbfleet.notify import Event, Notifier, build_channels, check_channels, deliver
from dbfleet.schedule.config import NotificationConfig

TOKEN = "tok-5f1e9a-never-logged"
SMTP_PASSWORD = "smtp-Pw-93ab17-never-logged"
HOOK_PATH = "/hooks/T000/B000/secret-path-c0ffee"


# -- a real HTTP receiver ----------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            box.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(box.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


# -- a real SMTP server with STARTTLS and AUTH ---------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbfleet test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[bytes, bool]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    box = Mailbox(port=_free_port(), ca_file=ca_file)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"backup-bot",
            SMTP_PASSWORD.encode(),
        )
        box.logins.append((data.login if isinstance(data, LoginPassword) else b"", ok))
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=box.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_exclude_mechanism=["LOGIN"],  # one mechanism: a wrong password is one attempt
        authenticator=authenticate,
    )
    controller.start()
    yield box
    controller.stop()


# -- helpers ---------------------------------------------------------------------


def ours(caplog: pytest.LogCaptureFixture) -> str:
    """What dbfleet logged (the test servers log their side of the wire)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dbfleet"))


adapter: TypeAdapter[Any] = TypeAdapter(list[NotificationConfig])


def channels(*configs: dict[str, Any]) -> list[Any]:
    return build_channels(adapter.validate_python(list(configs)))


def failed_event() -> Event:
    return Event(
        "job_failed",
        "backup of notes failed after 4 attempt(s): sqlite3 could not open notes.db",
        dt.datetime(2024, 1, 1, 2, 5, tzinfo=dt.UTC),
        "notes",
        job={
            "id": 7,
            "job": "backup:notes",
            "status": "failed",
            "attempt": 4,
            "error": "could not open notes.db",
        },
    )


def stale_event() -> Event:
    return Event(
        "database_stale",
        "notes: latest snapshot is 1d3h old, over its RPO of 1d2h",
        database="notes",
        freshness={"database": "notes", "state": "stale", "age": "1d3h", "rpo": "1d2h"},
    )


# -- webhook and Slack ---------------------------------------------------------------


def test_webhook_posts_the_documented_json(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    hook = channels(
        {
            "type": "webhook",
            "url": receiver.url + "/dbfleet",
            "bearer_token_file": str(token_file),
            "headers": {"X-Team": "sre"},
        },
    )
    with caplog.at_level(logging.DEBUG):
        outcome = deliver(hook, failed_event())
    assert outcome == {"webhook#0": None}
    (request,) = receiver.requests
    assert request.path == "/dbfleet"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Team"] == "sre"
    body = request.body
    assert body["version"] == 1 and body["event"] == "job_failed"
    assert body["severity"] == "error" and body["database"] == "notes"
    assert body["summary"].startswith("backup of notes failed after 4 attempt(s)")
    assert body["title"].startswith("FAILED: backup of notes")
    assert body["time"] == "2024-01-01T02:05:00+00:00"
    assert body["job"]["id"] == 7 and body["freshness"] is None and body["reminder"] is False
    assert body["hostname"] == socket.gethostname()
    assert TOKEN not in ours(caplog)


def test_slack_compatible_text_with_url_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", receiver.url + HOOK_PATH)
    slack = channels({"type": "slack", "name": "ops-chat", "url_env": "TEST_SLACK_URL"})
    with caplog.at_level(logging.DEBUG):
        assert deliver(slack, stale_event()) == {"ops-chat": None}
        assert deliver(slack, Event("database_fresh", "notes: fresh again")) == {"ops-chat": None}
    stale, fresh = receiver.requests
    assert stale.path == HOOK_PATH
    assert set(stale.body) == {"text"}
    assert stale.body["text"].startswith(":red_circle: *dbfleet STALE: notes: latest snapshot")
    assert "rpo: 1d2h" in stale.body["text"]
    assert fresh.body["text"].startswith(":large_green_circle: *dbfleet FRESH: notes")
    assert HOOK_PATH not in ours(caplog)


def test_channels_get_only_their_events(receiver: Receiver) -> None:
    only_stale = channels(
        {"type": "webhook", "url": receiver.url + "/a", "events": ["database_stale"]},
        {"type": "webhook", "url": receiver.url + "/b"},
    )
    assert deliver(only_stale, failed_event()) == {"webhook#1": None}
    assert [r.path for r in receiver.requests] == ["/b"]


def test_a_failed_delivery_names_the_channel_never_the_secret(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    monkeypatch.setenv("TEST_SLACK_URL", receiver.url + HOOK_PATH)
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    broken = channels(
        {"type": "slack", "url_env": "TEST_SLACK_URL"},
        {"type": "webhook", "url": receiver.url + "/x", "bearer_token_env": "TEST_TOKEN"},
    )
    with caplog.at_level(logging.DEBUG):
        outcome = deliver(broken, failed_event(), attempts=2, delay=0.01)
    assert outcome == {
        "slack#0": "notification channel slack#0: HTTP 500 Internal Server Error",
        "webhook#1": "notification channel webhook#1: HTTP 500 Internal Server Error",
    }
    assert len(receiver.requests) == 4  # each tried twice
    assert HOOK_PATH not in ours(caplog) and TOKEN not in ours(caplog)
    assert "not delivered" in ours(caplog)


def test_unreachable_receiver() -> None:
    port = _free_port()
    (error,) = deliver(
        channels({"type": "webhook", "url": f"http://127.0.0.1:{port}/x", "timeout": "2s"}),
        failed_event(),
        attempts=1,
    ).values()
    assert error is not None and "cannot connect" in error


def test_missing_secrets_are_reported_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_URL_VAR", raising=False)
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    problems = check_channels(
        channels(
            {"type": "slack", "url_env": "NO_SUCH_URL_VAR"},
            {
                "type": "email",
                "host": "127.0.0.1",
                "from": "a@example.org",
                "to": ["b@example.org"],
                "username": "u",
                "password_env": "NO_SUCH_PASSWORD_VAR",
            },
        )
    )
    assert problems == [
        "notification channel slack#0: no URL in $NO_SUCH_URL_VAR",
        "notification channel email#1: no SMTP password in $NO_SUCH_PASSWORD_VAR",
    ]


# -- email -----------------------------------------------------------------------------


def email(mailbox: Mailbox, **extra: Any) -> list[Any]:
    config = {
        "type": "email",
        "host": "127.0.0.1",
        "port": mailbox.port,
        "security": "starttls",
        "ca_file": str(mailbox.ca_file),
        "username": "backup-bot",
        "password_env": "TEST_SMTP_PASSWORD",
        "from": "dbfleet@example.org",
        "to": ["ops@example.org", "dba@example.org"],
    }
    config.update(extra)
    return channels(config)


def test_email_over_starttls_with_login(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    with caplog.at_level(logging.DEBUG):
        assert deliver(email(mailbox), failed_event()) == {"email#0": None}
    assert mailbox.logins == [(b"backup-bot", True)]
    ((sender, recipients, raw),) = mailbox.messages
    assert sender == "dbfleet@example.org"
    assert recipients == ["ops@example.org", "dba@example.org"]
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == (
        "[dbfleet] FAILED: backup of notes failed after 4 attempt(s): "
        "sqlite3 could not open notes.db"
    )
    assert message["X-Dbfleet-Event"] == "job_failed"
    part = message.get_body()  # type: ignore[attr-defined]
    assert part is not None
    body = part.get_content()
    assert "job: backup:notes" in body and "attempt: 4" in body
    assert SMTP_PASSWORD not in ours(caplog)


def test_email_wrong_password_and_untrusted_certificate(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp-password"
    password_file.write_text("wrong-" + SMTP_PASSWORD)
    (error,) = deliver(
        email(mailbox, password_env=None, password_file=str(password_file)),
        failed_event(),
        attempts=1,
    ).values()
    assert error is not None and "SMTPAuthenticationError" in error
    assert SMTP_PASSWORD not in error
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    (error,) = deliver(email(mailbox, ca_file=None), failed_event(), attempts=1).values()
    assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error
    assert mailbox.messages == [] and mailbox.logins == [(b"backup-bot", False)]


def test_notifier_delivers_from_its_thread(receiver: Receiver) -> None:
    notifier = Notifier(channels({"type": "webhook", "url": receiver.url + "/n"}))
    notifier.notify(failed_event())
    notifier.notify(stale_event())
    notifier.close(timeout=10)
    assert [r.body["event"] for r in receiver.requests] == ["job_failed", "database_stale"]
    assert [outcome for _event, outcome in notifier.delivered] == [{"webhook#0": None}] * 2
