"""A real SMTP server (aiosmtpd) on a free localhost port that keeps what it receives, with
optional AUTH LOGIN for one user (the mailer tests and bench/mailer.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.helpers.servers import free_port

USER = "mailuser"
PASSWORD = "s3cret-Pa55word"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Collector:
    """aiosmtpd handler keeping every delivered message and every login attempt (mechanism,
    user)."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        """aiosmtpd authenticator: only USER with PASSWORD gets in."""
        login = data.login if isinstance(data, LoginPassword) else b""
        self.logins.append((mechanism, login.decode(errors="replace")))
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@dataclass
class SMTPServer:
    port: int
    handler: Collector


@contextmanager
def smtp_server(auth: bool = False) -> Iterator[SMTPServer]:
    """A running server; with `auth`, AUTH is required (over plain TCP: no certificates in
    tests) and only USER/PASSWORD may log in."""
    handler = Collector()
    kwargs: dict[str, Any] = {}
    if auth:
        kwargs = dict(
            authenticator=handler.authenticate, auth_require_tls=False, auth_required=True
        )
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SMTPServer(port, handler)
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP but never talks: the kernel completes the handshake and
    nobody calls accept(). Its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])
