"""Verification and password-reset mails end to end: a real SMTP server (aiosmtpd) receives
the mail, and the link in it confirms the account — on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.core import superusers
from shipyard.settings import load_settings
from tests.conftest import SUPERUSER, free_port

PW = "first-pass-1"


class Inbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def token(self, kind: str) -> str:
        msg = self.messages[-1]
        html = next(p for p in msg.walk() if p.get_content_type() == "text/html")
        body = html.get_payload(decode=True).decode()
        m = re.search(rf"/auth/{kind}/([A-Za-z0-9._-]+)", body)
        assert m, body
        return m.group(1)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox(free_port())
    ctl = Controller(box, hostname="127.0.0.1", port=box.port)
    ctl.start()
    try:
        yield box
    finally:
        ctl.stop()


@pytest.fixture
def mail_client(inbox: Inbox, database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
        app_url="https://app.example.com",
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        token = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        ).json()["token"]
        r = c.post(
            "/api/collections",
            json={"name": "users", "type": "auth", "createRule": ""},
            headers={"Authorization": token},
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/api/collections/users/records",
            json={"email": "ann@example.com", "password": PW, "passwordConfirm": PW},
        )
        assert r.status_code == 200, r.text
        yield c


def login(c: TestClient, password: str) -> int:
    return c.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "ann@example.com", "password": password},
    ).status_code


def test_verification_link_confirms_the_account(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    assert (
        c.post(
            "/api/collections/users/request-verification", json={"email": "ann@example.com"}
        ).status_code
        == 204
    )
    assert len(inbox.messages) == 1 and inbox.messages[0]["To"] == "ann@example.com"
    token = inbox.token("confirm-verification")
    assert (
        c.post(
            "/api/collections/users/confirm-verification", json={"token": token + "x"}
        ).status_code
        == 400
    )
    assert (
        c.post("/api/collections/users/confirm-verification", json={"token": token}).status_code
        == 204
    )
    me = c.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "ann@example.com", "password": PW},
    ).json()["record"]
    assert me["verified"] is True
    # no account: same answer, no mail; verified accounts get no new mail
    assert (
        c.post(
            "/api/collections/users/request-verification", json={"email": "nobody@example.com"}
        ).status_code
        == 204
    )
    assert (
        c.post(
            "/api/collections/users/request-verification", json={"email": "ann@example.com"}
        ).status_code
        == 204
    )
    assert len(inbox.messages) == 1


def test_password_reset_link_works_once(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    assert (
        c.post(
            "/api/collections/users/request-password-reset", json={"email": "ann@example.com"}
        ).status_code
        == 204
    )
    token = inbox.token("confirm-password-reset")
    body = {"token": token, "password": "second-pass-2", "passwordConfirm": "second-pass-2"}
    assert c.post("/api/collections/users/confirm-password-reset", json=body).status_code == 204
    assert login(c, "second-pass-2") == 200 and login(c, PW) == 400
    again = {**body, "password": "third-pass-33", "passwordConfirm": "third-pass-33"}
    assert c.post("/api/collections/users/confirm-password-reset", json=again).status_code == 400
    assert c.post("/api/collections/users/request-password-reset", json={}).status_code == 400
