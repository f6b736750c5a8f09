"""Verification, password-reset and e-mail change mails end to end: the request queues the
mail, the app's job worker sends it to a real SMTP server (aiosmtpd), and the link in it
confirms the account — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from shipyard.tools.queue import FINAL
from tests.helpers.servers import SUPERUSER, free_port

PW = "first-pass-1"


class Inbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []
        self.read = 0  # mails token() has looked at

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def wait(self, count: int, budget: float = 20.0) -> list[Message]:
        """The mails once `count` arrived (the job worker sends them after the answer)."""
        deadline = time.monotonic() + budget
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} mails came"
            time.sleep(0.02)
        return self.messages

    def token(self, kind: str) -> str:
        """The link's token in the next mail that has one of this kind."""
        msg = self.wait(self.read + 1)[self.read]
        self.read += 1
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
        ratelimit_enabled=False,  # logins and mails in bursts: the limits are tested apart
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
        app_url="https://app.example.com",
        mail_templates_dir=str(tmp_path / "templates"),
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


def settled(c: TestClient) -> list[dict[str, Any]]:
    """The account mail jobs, once every one of them is finished."""
    deadline = time.monotonic() + 20
    while True:
        r = c.get("/api/jobs", params={"kind": "account_mail", "perPage": 500}, headers=_su(c))
        assert r.status_code == 200, r.text
        jobs: list[dict[str, Any]] = r.json()["items"]
        if all(j["state"] in FINAL for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.02)


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
    assert inbox.wait(1)[0]["To"] == "ann@example.com"
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
    assert [j["result"] for j in settled(c)] == [{"sent": False}] * 2 + [
        {"sent": True, "to": "ann@example.com"}
    ]
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
    assert login(c, "second-pass-2") == 200
    assert login(c, PW) == 400
    again = {**body, "password": "third-pass-33", "passwordConfirm": "third-pass-33"}
    assert c.post("/api/collections/users/confirm-password-reset", json=again).status_code == 400
    assert c.post("/api/collections/users/request-password-reset", json={}).status_code == 400


# ---------------------------------------------------------------------- e-mail change

CHANGE = "/api/collections/users/request-email-change"
CONFIRM = "/api/collections/users/confirm-email-change"
H = dict[str, str]


def user_login(c: TestClient, email: str, password: str = PW) -> Any:
    return c.post(
        "/api/collections/users/auth-with-password", json={"identity": email, "password": password}
    )


def user_headers(c: TestClient, email: str = "ann@example.com") -> H:
    r = user_login(c, email)
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


def sign_up(c: TestClient, email: str) -> None:
    r = c.post(
        "/api/collections/users/records",
        json={"email": email, "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 200, r.text


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def field_error(r: Any, field: str) -> str:
    assert r.status_code == 400, r.text
    return str(r.json()["data"][field]["code"])


def test_email_change_end_to_end(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    ann = user_headers(c)
    me = c.post("/api/collections/users/auth-refresh", headers=ann).json()["record"]
    assert me["verified"] is False

    r = c.post(CHANGE, json={"newEmail": "ann.new@example.com"}, headers=ann)
    assert r.status_code == 204, r.text
    mail = inbox.wait(1)[0]
    assert mail["To"] == "ann.new@example.com"  # the new address proves it is reachable
    assert mail["Subject"] == "Confirm your Shipyard new email address"
    token = inbox.token("confirm-email-change")
    claims = claims_of(token)
    assert claims["type"] == "emailChange"
    assert claims["id"] == me["id"]
    assert claims["collectionId"] == me["collectionId"]
    assert claims["email"] == "ann@example.com"
    assert claims["newEmail"] == "ann.new@example.com"
    assert isinstance(claims["exp"], int)
    # the link uses SHIPYARD_APP_URL and PocketBase's default path
    assert "https://app.example.com/_/#/auth/confirm-email-change/" + token in (
        next(p for p in mail.walk() if p.get_content_type() == "text/html")
        .get_payload(decode=True)
        .decode()
    )

    # nothing changed yet: the old address still logs in
    assert user_login(c, "ann@example.com").status_code == 200
    # the current password is required
    r = c.post(CONFIRM, json={"token": token, "password": "not-her-password"})
    assert field_error(r, "password") == "validation_invalid_password"
    assert "token" not in r.json()["data"]
    r = c.post(CONFIRM, json={"token": token})
    assert field_error(r, "password") == "validation_required"
    r = c.post(CONFIRM, json={"token": token + "x", "password": PW})
    assert field_error(r, "token") == "validation_invalid_token"

    assert c.post(CONFIRM, json={"token": token, "password": PW}).status_code == 204
    # the new address logs in, is verified; the old one no longer logs in
    r = user_login(c, "ann.new@example.com")
    assert r.status_code == 200, r.text
    assert r.json()["record"]["email"] == "ann.new@example.com"
    assert r.json()["record"]["verified"] is True
    assert user_login(c, "ann@example.com").status_code == 400
    # the tokenKey rotated: the session from before the change is dead
    assert c.post("/api/collections/users/auth-refresh", headers=ann).status_code == 401
    assert c.post(CHANGE, json={"newEmail": "x@example.com"}, headers=ann).status_code == 401
    # and the link works once
    r = c.post(CONFIRM, json={"token": token, "password": PW})
    assert field_error(r, "token") == "validation_invalid_token"


def test_email_change_request_errors(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    sign_up(c, "bob@example.com")
    ann = user_headers(c)
    su_login = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    ).json()
    su = {"Authorization": su_login["token"]}

    # only the record itself, with its own token
    r = c.post(CHANGE, json={"newEmail": "x@example.com"})
    assert r.status_code == 401
    assert r.json()["data"] == {}
    r = c.post(CHANGE, json={"newEmail": "x@example.com"}, headers={"Authorization": "nonsense"})
    assert r.status_code == 401
    r = c.post(CHANGE, json={"newEmail": "x@example.com"}, headers=su)
    assert r.status_code == 403
    assert r.json()["message"] == "The request requires auth record from _superusers collection."
    r = c.post(
        "/api/collections/_superusers/request-email-change",
        json={"newEmail": "x@example.com"},
        headers=ann,
    )
    assert r.status_code == 403
    r = c.post(
        "/api/collections/_superusers/request-email-change",
        json={"newEmail": "x@example.com"},
        headers=su,
    )
    assert r.status_code == 400
    assert r.json()["message"] == "All superusers can change their emails directly."
    r = c.post("/api/collections/nope/request-email-change", json={}, headers=ann)
    assert r.status_code == 404

    # validation, with PocketBase's codes
    cases = {
        "": "validation_required",
        "not-an-address": "validation_is_email",
        "a" * 250 + "@example.com": "validation_length_out_of_range",
        "ann@example.com": "validation_not_in_invalid",  # the current address
        "bob@example.com": "validation_invalid_new_email",  # someone else's
    }
    for value, code in cases.items():
        r = c.post(CHANGE, json={"newEmail": value}, headers=ann)
        assert field_error(r, "newEmail") == code, value
        assert r.json()["message"] == "An error occurred while validating the submitted data."
    assert field_error(c.post(CHANGE, json={}, headers=ann), "newEmail") == "validation_required"
    r = c.post(CHANGE, json={"newEmail": 5}, headers=ann)
    assert r.status_code == 400
    assert r.json()["data"] == {}
    assert settled(c) == []
    assert inbox.messages == []
    # multipart works as well as JSON
    r = c.post(CHANGE, data={"newEmail": "ann.form@example.com"}, headers=ann)
    assert r.status_code == 204
    assert inbox.wait(1)[-1]["To"] == "ann.form@example.com"


def test_email_change_confirm_errors(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    ann = user_headers(c)
    assert c.post(CHANGE, json={"newEmail": "taken@example.com"}, headers=ann).status_code == 204
    token = inbox.token("confirm-email-change")

    r = c.post(CONFIRM, json={})
    assert field_error(r, "token") == "validation_required"
    assert r.json()["data"]["password"]["code"] == "validation_required"
    r = c.post(CONFIRM, json={"token": "abc", "password": PW})
    assert field_error(r, "token") == "validation_invalid_token_payload"
    assert r.json()["data"]["password"]["code"] == "validation_invalid_password"
    r = c.post(CONFIRM, json={"token": token, "password": "x" * 101})
    assert field_error(r, "password") == "validation_length_out_of_range"
    r = c.post(CONFIRM, json={"token": 1, "password": PW})
    assert r.status_code == 400
    assert r.json()["data"] == {}
    # a verification token is not an e-mail change token
    c.post("/api/collections/users/request-verification", json={"email": "ann@example.com"})
    verification = inbox.token("confirm-verification")
    r = c.post(CONFIRM, json={"token": verification, "password": PW})
    assert field_error(r, "token") == "validation_invalid_token_payload"
    # the token belongs to its collection
    r = c.post(
        "/api/collections/_superusers/confirm-email-change", json={"token": token, "password": PW}
    )
    assert r.status_code == 400
    assert r.json()["data"] == {}
    r = c.post("/api/collections", json={"name": "members", "type": "auth"}, headers=_su(c))
    assert r.status_code == 200, r.text
    r = c.post(
        "/api/collections/members/confirm-email-change", json={"token": token, "password": PW}
    )
    assert field_error(r, "token") == "validation_token_collection_mismatch"

    # the address is taken between the request and the confirmation
    sign_up(c, "taken@example.com")
    r = c.post(CONFIRM, json={"token": token, "password": PW})
    assert field_error(r, "token") == "validation_invalid_token_email"
    assert user_login(c, "ann@example.com").status_code == 200

    # a password change (which rotates the tokenKey) kills a pending link
    assert c.post(CHANGE, json={"newEmail": "ann2@example.com"}, headers=ann).status_code == 204
    token = inbox.token("confirm-email-change")
    me = c.post("/api/collections/users/auth-refresh", headers=ann).json()["record"]
    r = c.patch(
        f"/api/collections/users/records/{me['id']}",
        json={"password": "second-pass-2", "passwordConfirm": "second-pass-2"},
        headers=_su(c),
    )
    assert r.status_code == 200, r.text
    r = c.post(CONFIRM, json={"token": token, "password": "second-pass-2"})
    assert field_error(r, "token") == "validation_invalid_token"


def test_email_change_password_guessing_is_limited(mail_client: TestClient, inbox: Inbox) -> None:
    c = mail_client
    ann = user_headers(c)
    assert c.post(CHANGE, json={"newEmail": "ann3@example.com"}, headers=ann).status_code == 204
    token = inbox.token("confirm-email-change")
    limit = c.app.state.services.settings.auth_max_failures_per_identity  # type: ignore[attr-defined]
    for i in range(limit):
        r = c.post(CONFIRM, json={"token": token, "password": f"guess-{i}-wrong"})
        assert field_error(r, "password") == "validation_invalid_password"
    # blocked now, even with the right password; the failures count as failed logins
    r = c.post(CONFIRM, json={"token": token, "password": PW})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert user_login(c, "ann@example.com").status_code == 429
    assert user_login(c, "ann3@example.com").status_code == 400  # nothing changed


def test_email_change_template_override(
    mail_client: TestClient, inbox: Inbox, tmp_path: Path
) -> None:
    c = mail_client
    r = c.patch(
        "/api/collections/users",
        json={
            "fields": [
                *c.get("/api/collections/users", headers=_su(c)).json()["fields"],
                {"name": "name", "type": "text"},
                {"name": "secret", "type": "text", "hidden": True},
            ]
        },
        headers=_su(c),
    )
    assert r.status_code == 200, r.text
    users = tmp_path / "templates" / "users"
    users.mkdir(parents=True)
    (users / "email-change.subject.txt").write_text("{APP_NAME}: confirm {RECORD:email}\n")
    (users / "email-change.html").write_text(
        '<p>Hi {RECORD:name}, secret "{RECORD:secret}".</p>'
        '<a href="{APP_URL}/account/email/{TOKEN}">Confirm</a>'
    )
    ann = user_headers(c)
    me = c.post("/api/collections/users/auth-refresh", headers=ann).json()["record"]
    r = c.patch(
        f"/api/collections/users/records/{me['id']}",
        json={"name": "Ann <b>", "secret": "s3cr3t"},
        headers=_su(c),
    )
    assert r.status_code == 200, r.text
    assert c.post(CHANGE, json={"newEmail": "ann4@example.com"}, headers=ann).status_code == 204
    mail = inbox.wait(1)[-1]
    assert mail["Subject"] == "Shipyard: confirm ann@example.com"
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    body = html.get_payload(decode=True).decode()
    assert "Hi Ann &lt;b&gt;" in body
    assert "s3cr3t" not in body  # hidden fields stay out
    assert "{RECORD:secret}" in body
    m = re.search(r"https://app\.example\.com/account/email/([A-Za-z0-9._-]+)", body)
    assert m, body
    assert c.post(CONFIRM, json={"token": m.group(1), "password": PW}).status_code == 204
    assert user_login(c, "ann4@example.com").status_code == 200


def _su(c: TestClient) -> H:
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    return {"Authorization": r.json()["token"]}


def test_request_bodies_are_checked_as_pocketbase_does(
    mail_client: TestClient, inbox: Inbox
) -> None:
    """PocketBase 0.40.6's answers to a bad `email` (none depends on who has an account)."""
    c = mail_client
    cases: list[tuple[Any, dict[str, Any]]] = [
        ("", {"code": "validation_required", "message": "Cannot be blank."}),
        (
            "not-an-email",
            {"code": "validation_is_email", "message": "Must be a valid email address."},
        ),
        (
            "a" * 250 + "@example.com",
            {
                "code": "validation_length_out_of_range",
                "message": "The length must be between 1 and 255.",
                "params": {"max": 255, "min": 1},
            },
        ),
    ]
    for action in ("request-verification", "request-password-reset"):
        for value, error in cases:
            r = c.post(f"/api/collections/users/{action}", json={"email": value})
            assert r.json() == {
                "status": 400,
                "message": "An error occurred while validating the submitted data.",
                "data": {"email": error},
            }, (action, value)
        r = c.post(f"/api/collections/users/{action}", json={"email": 5})
        assert r.json() == {
            "status": 400,
            "message": "An error occurred while loading the submitted data.",
            "data": {},
        }
    assert settled(c) == []
    assert inbox.messages == []
