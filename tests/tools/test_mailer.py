"""The SMTP mailer against a real SMTP server (aiosmtpd) on a free localhost port.

These tests check what happens, never how long it takes: how fast failures come back is
measured by bench/mailer.py (a hang still fails here, through the suite's timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.tools.mailer import Mailer, MailError, Message, html_to_text
from tests.helpers.servers import free_port
from tests.helpers.smtp import PASSWORD, USER, SMTPServer, silent_server, smtp_server

# the test server accepts AUTH over plain TCP on purpose (no certificates in tests)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with smtp_server() as srv:
        yield srv


@pytest.fixture
def smtp_auth() -> Iterator[SMTPServer]:
    with smtp_server(auth=True) as srv:
        yield srv


def _mailer(port: int, **kwargs: Any) -> Mailer:
    base: dict[str, Any] = dict(
        host="127.0.0.1",
        port=port,
        tls="off",
        sender_address="noreply@shipyard.test",
        sender_name="Shipyard Café",
        timeout=2.0,
    )
    return Mailer(**{**base, **kwargs})


def _lf(text: str) -> str:
    """SMTP carries CRLF line ends; compare content, not the wire format."""
    return text.replace("\r\n", "\n")


HTML = '<p>Hello <b>you</b>,</p><p><a href="https://app.test/x?a=1&amp;b=2">Verify</a></p>'


def test_send_delivers_multipart_alternative(smtp: SMTPServer) -> None:
    msg = Message(to="alice@example.com", subject="Welcome — héllo", html=HTML, text="Hi alice\n")
    asyncio.run(_mailer(smtp.port).send(msg))

    [got] = smtp.handler.received
    assert got.mail_from == "noreply@shipyard.test"
    assert got.rcpt_tos == ["alice@example.com"]
    m = got.message
    assert m["Subject"] == "Welcome — héllo"
    assert m["From"].addresses[0].display_name == "Shipyard Café"
    assert m["From"].addresses[0].addr_spec == "noreply@shipyard.test"
    assert str(m["To"]) == "alice@example.com"
    assert m["Date"]
    assert m["Message-ID"].endswith("@shipyard.test>")
    assert m.get_content_type() == "multipart/alternative"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert _lf(parts[0].get_content()) == "Hi alice\n"
    assert _lf(parts[1].get_content()).strip() == HTML


def test_text_part_is_derived_from_html_when_missing(smtp: SMTPServer) -> None:
    asyncio.run(_mailer(smtp.port).send(Message(to="bob@example.com", subject="s", html=HTML)))
    [got] = smtp.handler.received
    body = got.message.get_body(preferencelist=("plain",))
    assert body is not None
    assert _lf(body.get_content()) == "Hello you,\n\nVerify (https://app.test/x?a=1&b=2)\n"


def test_login_succeeds(smtp_auth: SMTPServer) -> None:
    mailer = _mailer(smtp_auth.port, username=USER, password=PASSWORD)
    asyncio.run(mailer.send(Message(to="carol@example.com", subject="s", html="<p>x</p>")))
    assert [r.rcpt_tos for r in smtp_auth.handler.received] == [["carol@example.com"]]
    assert [user for _, user in smtp_auth.handler.logins] == [USER]  # in at the first try


def _send_failure(mailer: Mailer) -> MailError:
    with pytest.raises(MailError) as info:
        asyncio.run(mailer.send(Message(to="dave@example.com", subject="s", html="<p>x</p>")))
    return info.value


def _assert_no_password(err: MailError) -> None:
    assert PASSWORD not in str(err)
    assert PASSWORD not in repr(err)
    assert err.__cause__ is None
    assert err.__suppress_context__


def test_wrong_password_raises_clear_error(smtp_auth: SMTPServer) -> None:
    mailer = _mailer(smtp_auth.port, username=USER, password=PASSWORD + "x")
    err = _send_failure(mailer)
    assert f"SMTP server 127.0.0.1:{smtp_auth.port} rejected the login of user 'mailuser'" in str(
        err
    )
    assert "535" in str(err)
    _assert_no_password(err)
    assert not smtp_auth.handler.received
    # one try per mechanism the server offers (aiosmtplib's login), none retried
    tried = smtp_auth.handler.logins
    assert tried
    assert len(set(tried)) == len(tried)
    assert {user for _, user in tried} == {USER}


def test_refused_connection_raises_clear_error() -> None:
    port = free_port()  # nothing listens there
    err = _send_failure(_mailer(port, username=USER, password=PASSWORD))
    assert str(err).startswith(f"cannot connect to SMTP server 127.0.0.1:{port}")
    _assert_no_password(err)


def test_silent_server_times_out() -> None:
    """A server that accepts TCP but never greets must not hang the request: the mailer's
    own timeout ends it, and says so."""
    with silent_server() as port:
        err = _send_failure(_mailer(port, username=USER, password=PASSWORD, timeout=0.5))
    assert str(err) == f"SMTP server 127.0.0.1:{port} did not answer within 0.5 s"
    _assert_no_password(err)


def test_starttls_required_but_unsupported(smtp: SMTPServer) -> None:
    err = _send_failure(_mailer(smtp.port, tls="starttls"))
    assert f"SMTP server 127.0.0.1:{smtp.port}" in str(err)
    assert "STARTTLS" in str(err).upper()


def test_header_injection_is_rejected_before_connecting() -> None:
    mailer = _mailer(free_port())
    with pytest.raises(MailError, match="linefeed or carriage return"):
        mailer.build(Message(to="a@example.com", subject="hi\r\nBcc: x@evil.test", html="x"))
    with pytest.raises(MailError, match="cannot build mail"):
        mailer.build(Message(to="a@example.com, b@evil.test", subject="hi", html="x"))


def test_repr_masks_secrets() -> None:
    mailer = _mailer(25, username=USER, password=PASSWORD)
    assert PASSWORD not in repr(mailer)
    assert "password='********'" in repr(mailer)
    assert "password=''" in repr(_mailer(25))
    msg = Message(to="a@example.com", subject="s", html="<a href='/t/TOKEN123'>x</a>", text="t")
    assert "TOKEN123" not in repr(msg)


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        Mailer(host="h", tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        Mailer(host="h", timeout=0)


def test_html_to_text() -> None:
    markup = (
        "<html><head><style>p{color:red}</style></head><body>\n"
        "<p>Line   one<br/>line two &amp; more</p>\n"
        '<p><a href="https://x.test/a">https://x.test/a</a> <a href="/b"></a></p>'
        "<script>alert(1)</script></body></html>"
    )
    assert html_to_text(markup) == "Line one\nline two & more\n\nhttps://x.test/a /b\n"
