"""Auth mail templates: built-ins, overrides, escaping, and a real send through aiosmtpd.

No database: these tests build `Settings` directly and never touch the DB fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from shipyard.auth.mails import (
    MAIL_KINDS,
    MailKind,
    load_template,
    render,
    send_auth_mail,
)
from shipyard.kernel.mail import mailer_from_settings
from shipyard.settings import Settings, SettingsError, load_settings
from shipyard.tools.mailer import MailError

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6InIxIn0.c2lnbmF0dXJl"
RECORD = {"id": "r1", "email": "alice@example.com", "name": "Alice", "verified": False}
ACTIONS = {
    "verification": "confirm-verification",
    "password-reset": "confirm-password-reset",
    "email-change": "confirm-email-change",
}


def _settings(**kwargs: Any) -> Settings:
    base: dict[str, Any] = dict(app_name="Acme", app_url="https://acme.test/")
    return Settings(**{**base, **kwargs})


@pytest.mark.parametrize("kind", MAIL_KINDS)
def test_builtin_templates(kind: MailKind) -> None:
    msg = render(kind, _settings(), "users", RECORD, TOKEN)
    assert msg.to == "alice@example.com"
    assert "Acme" in msg.subject
    assert "{" not in msg.subject
    link = f"https://acme.test/_/#/auth/{ACTIONS[kind]}/{TOKEN}"
    assert f'href="{link}"' in msg.html
    assert link in msg.text  # text-only clients can follow the link too
    assert msg.html.startswith("<!DOCTYPE html>")
    assert "Acme team" in msg.html
    assert "{APP_NAME}" not in msg.html


def test_email_change_goes_to_the_new_address() -> None:
    msg = render("email-change", _settings(), "users", RECORD, TOKEN, to="new@example.com")
    assert msg.to == "new@example.com"


def test_record_without_email_is_an_error() -> None:
    with pytest.raises(MailError, match="no email address"):
        render("verification", _settings(), "users", {"id": "r1"}, TOKEN)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown mail kind"):
        load_template(_settings(), "otp", "users")  # type: ignore[arg-type]


def _write(root: Path, directory: str, name: str, text: str) -> None:
    (root / directory).mkdir(parents=True, exist_ok=True)
    (root / directory / name).write_text(text, encoding="utf-8")


def test_override_lookup_order(tmp_path: Path) -> None:
    _write(tmp_path, "default", "verification.html", "<p>default {TOKEN}</p>")
    _write(tmp_path, "default", "verification.subject.txt", "Default subject {APP_NAME}\n")
    _write(tmp_path, "users", "verification.html", "<p>users {RECORD:name} {TOKEN}</p>")
    s = _settings(mail_templates_dir=str(tmp_path))

    users = render("verification", s, "users", RECORD, TOKEN)
    assert f"<p>users Alice {TOKEN}</p>" in users.html
    assert users.subject == "Default subject Acme"  # subject and body resolve independently

    members = render("verification", s, "members", RECORD, TOKEN)
    assert f"<p>default {TOKEN}</p>" in members.html

    reset = render("password-reset", s, "users", RECORD, TOKEN)  # no override: built-in
    assert reset.subject == "Reset your Acme password"
    assert "confirm-password-reset" in reset.html


def test_collection_name_cannot_escape_the_templates_dir(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    _write(templates, "default", "verification.html", "<p>default</p>")
    _write(tmp_path, "evil", "verification.html", "<p>evil</p>")
    s = _settings(mail_templates_dir=str(templates))
    assert "<p>default</p>" in render("verification", s, "../evil", RECORD, TOKEN).html


def test_empty_override_falls_back(tmp_path: Path) -> None:
    _write(tmp_path, "users", "verification.html", "  \n")
    s = _settings(mail_templates_dir=str(tmp_path))
    assert "confirm-verification" in render("verification", s, "users", RECORD, TOKEN).html


def test_full_html_document_override_is_not_wrapped(tmp_path: Path) -> None:
    doc = "<!DOCTYPE html><html><body><p>{TOKEN}</p></body></html>"
    _write(tmp_path, "default", "verification.html", doc)
    msg = render("verification", _settings(mail_templates_dir=str(tmp_path)), "u", RECORD, TOKEN)
    assert msg.html == doc.replace("{TOKEN}", TOKEN)


def test_placeholder_values_are_html_escaped_in_bodies(tmp_path: Path) -> None:
    _write(tmp_path, "default", "verification.html", '<p title="{RECORD:name}">{RECORD:email}</p>')
    _write(tmp_path, "default", "verification.subject.txt", "Hi {RECORD:name} at {APP_NAME}")
    s = _settings(mail_templates_dir=str(tmp_path), app_name="A<b>cme")
    record = {"email": "<script>alert(1)</script>@x.test", "name": '"><img src=x>'}
    msg = render("verification", s, "users", record, TOKEN, to="safe@example.com")
    assert "<script>" not in msg.html
    assert "<img" not in msg.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@x.test" in msg.html
    assert 'title="&quot;&gt;&lt;img src=x&gt;"' in msg.html
    assert msg.subject == 'Hi "><img src=x> at A<b>cme'  # the subject is plain text
    assert "<script>alert(1)</script>@x.test" in msg.text  # text shows the literal value

    builtin = render("verification", _settings(app_name="A<b>cme"), "users", RECORD, TOKEN)
    assert "A&lt;b&gt;cme team" in builtin.html


def render_body(template: str, record: dict[str, Any], token: str) -> str:
    """Render `template` as the verification body override; return just the content."""
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d), "default", "verification.html", template)
        msg = render("verification", _settings(mail_templates_dir=d), "users", record, token)
    return msg.html.split("<body>\n", 1)[1].split("\n</body>", 1)[0]


def test_values_are_not_expanded_twice() -> None:
    """A user-controlled value that looks like a placeholder stays literal."""
    record = {**RECORD, "name": "{TOKEN}"}
    assert render_body("<p>{RECORD:name}|{TOKEN}</p>", record, "tok") == "<p>{TOKEN}|tok</p>"


def test_secret_and_unknown_placeholders() -> None:
    record = {**RECORD, "password": "$argon2id$hash", "tokenKey": "tk", "tags": ["a", "b"]}
    body = render_body(
        "{RECORD:password}|{RECORD:tokenKey}|{RECORD:missing}|{RECORD:verified}|{RECORD:tags}|{X}",
        record,
        TOKEN,
    )
    assert body == (
        "{RECORD:password}|{RECORD:tokenKey}|{RECORD:missing}|false|"
        "[&quot;a&quot;, &quot;b&quot;]|{X}"
    )


def test_subject_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "default", "verification.subject.txt", "Hello {RECORD:name}\n")
    s = _settings(mail_templates_dir=str(tmp_path))
    record = {**RECORD, "name": "Eve\r\nBcc: victim@example.com"}
    assert render("verification", s, "users", record, TOKEN).subject == (
        "Hello Eve Bcc: victim@example.com"
    )


def test_mail_settings() -> None:
    assert mailer_from_settings(Settings()) is None  # no SMTP host: mail is off
    s = load_settings(
        env={
            "SHIPYARD_SMTP_HOST": "smtp.acme.test",
            "SHIPYARD_SMTP_PORT": "465",
            "SHIPYARD_SMTP_TLS": "implicit",
            "SHIPYARD_SMTP_USERNAME": "mailer",
            "SHIPYARD_SMTP_PASSWORD": "hunter2-secret",
            "SHIPYARD_SMTP_TIMEOUT": "3.5",
        },
    )
    assert "hunter2-secret" not in repr(s)
    mailer = mailer_from_settings(s)
    assert mailer is not None
    assert (mailer.host, mailer.port, mailer.tls, mailer.timeout) == (
        "smtp.acme.test",
        465,
        "implicit",
        3.5,
    )
    assert (mailer.sender_address, mailer.sender_name) == ("noreply@example.com", "Shipyard")
    assert "hunter2-secret" not in repr(mailer)
    with pytest.raises(SettingsError, match="SHIPYARD_SMTP_TLS"):
        load_settings(env={"SHIPYARD_SMTP_TLS": "ssl"})
    with pytest.raises(SettingsError, match="SHIPYARD_SMTP_PORT"):
        load_settings(env={"SHIPYARD_SMTP_PORT": "0"})
    with pytest.raises(SettingsError, match="SHIPYARD_SMTP_TIMEOUT"):
        load_settings(env={"SHIPYARD_SMTP_TIMEOUT": "0"})


class _Collector:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Collector]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handler = _Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


def test_send_auth_mail_through_smtp(smtp: tuple[int, _Collector]) -> None:
    port, handler = smtp
    s = _settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="off",
        smtp_timeout=2.0,
        mail_sender_address="auth@acme.test",
        mail_sender_name="Acme Accounts",
    )
    sent = asyncio.run(
        send_auth_mail(mailer_from_settings(s), "password-reset", s, "users", RECORD, TOKEN)
    )
    [(mail_from, rcpt_tos, msg)] = handler.received
    assert (mail_from, rcpt_tos) == ("auth@acme.test", ["alice@example.com"])
    assert str(msg["From"]) == "Acme Accounts <auth@acme.test>"
    assert msg["Subject"] == sent.subject == "Reset your Acme password"
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    assert html_part is not None
    assert text_part is not None
    link = f"https://acme.test/_/#/auth/confirm-password-reset/{TOKEN}"
    assert f'href="{link}"' in html_part.get_content()
    assert link in text_part.get_content()


def test_send_auth_mail_when_mail_is_off() -> None:
    s = _settings()
    with pytest.raises(MailError, match="SHIPYARD_SMTP_HOST"):
        asyncio.run(send_auth_mail(None, "verification", s, "users", RECORD, TOKEN))
