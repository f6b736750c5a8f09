"""Account mails must not tell who has an account: `request-password-reset` and
`request-verification` answer the same for an existing, an unverified and an unknown
address, with or without a mail server, and before the mail server is even asked (the mail
goes through the job queue). Before, without SMTP an existing address got 400 and an
unknown one 204; with SMTP an existing address took as long as the mail server. PocketBase
0.40.6 answers 204 for known and unknown addresses alike. A mail that cannot be sent ends
as a dead-lettered job with a log line; limits per mail address and per client address
answer alike for every address. On SQLite and PostgreSQL, each test with an app of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

import shipyard.tools.attempts as attempts_module
from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from shipyard.tools.queue import FINAL
from tests.helpers.security import PW
from tests.helpers.servers import SUPERUSER, free_port

H = dict[str, str]
ASKS = ("request-password-reset", "request-verification")
KNOWN, UNVERIFIED, UNKNOWN = "ann@example.com", "bob@example.com", "nobody@example.com"


class GatedInbox:
    """An SMTP server that holds every DATA answer until the test opens the gate (at the
    latest after `hold` seconds, so a request that waits for the mail server ends, late)."""

    def __init__(self, hold: float = 30.0) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self.gate = threading.Event()
        self.entered = threading.Event()  # a mail is being sent and held
        self.hold = hold

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.entered.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, self.hold)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def wait(self, count: int) -> list[Message]:
        deadline = time.monotonic() + 20
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} mails came"
            time.sleep(0.02)
        return self.messages


@pytest.fixture
def inbox() -> Iterator[GatedInbox]:
    box = GatedInbox()
    ctl = Controller(box, hostname="127.0.0.1", port=box.port)
    ctl.start()
    try:
        yield box
    finally:
        box.gate.set()
        ctl.stop()


AppFactory = Callable[..., tuple[TestClient, H]]


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[AppFactory]:
    """Opens an app of its own with these settings, a `users` auth collection, a verified
    account (KNOWN) and an unverified one (UNVERIFIED); yields (client, superuser headers)."""
    opened: list[TestClient] = []

    def open_app(**overrides: Any) -> tuple[TestClient, H]:
        settings = load_settings(
            env={},
            data_dir=str(tmp_path / "data"),
            database_url=database_url,
            ratelimit_enabled=False,  # the per-address limits under test, not the rate limits
            **overrides,
        )
        c = TestClient(create_app(settings), raise_server_exceptions=False)
        c.__enter__()
        opened.append(c)
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        body = {"name": "users", "type": "auth", "createRule": ""}
        assert c.post("/api/collections", json=body, headers=su).status_code == 200
        for email, verified in ((KNOWN, True), (UNVERIFIED, False)):
            account = {"email": email, "password": PW, "passwordConfirm": PW, "verified": verified}
            r = c.post("/api/collections/users/records", json=account, headers=su)
            assert r.status_code == 200, r.text
        return c, su

    yield open_app
    for c in opened:
        c.__exit__(None, None, None)


def ask(c: TestClient, action: str, email: str) -> tuple[int, bytes, str | None]:
    r = c.post(f"/api/collections/users/{action}", json={"email": email})
    return r.status_code, r.content, r.headers.get("content-type")


def settled(c: TestClient, su: H) -> list[dict[str, Any]]:
    """The account mail jobs (newest first) once each is finished."""
    deadline = time.monotonic() + 20
    while True:
        params = {"kind": "account_mail", "perPage": 500}
        jobs: list[dict[str, Any]] = c.get("/api/jobs", params=params, headers=su).json()["items"]
        if all(j["state"] in FINAL for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.02)


def ann_headers(c: TestClient) -> H:
    r = c.post(
        "/api/collections/users/auth-with-password", json={"identity": KNOWN, "password": PW}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


NO_CONTENT = (204, b"", None)


def html_of(mail: Message) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    return str(part.get_payload(decode=True).decode())


def test_same_answer_without_smtp_and_the_mail_dead_letters(
    app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    c, su = app()
    with caplog.at_level(logging.INFO, logger="shipyard"):
        for action in ASKS:
            assert [ask(c, action, e) for e in (KNOWN, UNVERIFIED, UNKNOWN)] == [NO_CONTENT] * 3
        r = c.post(
            "/api/collections/users/request-email-change",
            json={"newEmail": "ann.new@example.com"},
            headers=ann_headers(c),
        )
        assert (r.status_code, r.content) == (204, b"")  # before: 400, mail is disabled
        jobs = settled(c, su)
    # the mails that had a recipient are dead letters, each with a log line
    sent = {
        (j["args"]["purpose"], j["args"]["email"]): j for j in jobs if j["state"] == "discarded"
    }
    assert sorted(sent) == [
        ("emailChange", "ann.new@example.com"),
        ("passwordReset", KNOWN),
        ("passwordReset", UNVERIFIED),
        ("verification", UNVERIFIED),
    ]
    reason = (
        "shipyard.tools.worker.Discard: "
        "mail is disabled: set SHIPYARD_SMTP_HOST to send account mails"
    )
    for job in sent.values():
        assert [e["error"].splitlines()[0] for e in job["errors"]] == [reason]
        line = f"job {job['id']} (account_mail) discarded after 1 attempt(s): {reason}"
        assert line in caplog.messages, caplog.messages
    # the others found nobody to write to (a verified account gets no verification mail)
    rest = [(j["args"]["purpose"], j["args"]["email"], j["result"]) for j in jobs]
    assert sorted(r for r in rest if r[2] is not None) == [
        ("passwordReset", UNKNOWN, {"sent": False}),
        ("verification", KNOWN, {"sent": False}),
        ("verification", UNKNOWN, {"sent": False}),
    ]


def test_answer_comes_before_the_mail_server_answers(app: AppFactory, inbox: GatedInbox) -> None:
    c, su = app(smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_tls="off", smtp_timeout=60)
    # the mail server holds its answer (until the gate opens, which only happens below):
    # the request is answered all the same, with no mail delivered yet
    assert ask(c, "request-password-reset", KNOWN) == NO_CONTENT
    assert inbox.messages == []
    assert inbox.entered.wait(20), "the job worker never reached the mail server"
    assert inbox.messages == []  # the worker is still waiting for the mail server
    inbox.gate.set()
    mail = inbox.wait(1)[0]
    assert mail["To"] == KNOWN
    assert "/auth/confirm-password-reset/" in html_of(mail)
    # the e-mail change request goes the same way
    inbox.gate.clear()
    inbox.entered.clear()
    r = c.post(
        "/api/collections/users/request-email-change",
        json={"newEmail": "ann.new@example.com"},
        headers=ann_headers(c),
    )
    assert (r.status_code, r.content) == (204, b"")
    assert len(inbox.messages) == 1
    assert inbox.entered.wait(20)
    assert len(inbox.messages) == 1
    inbox.gate.set()
    assert inbox.wait(2)[1]["To"] == "ann.new@example.com"
    # with a mail server, every address gets the same answer as well
    for action in ASKS:
        assert [ask(c, action, e) for e in (KNOWN, UNVERIFIED, UNKNOWN)] == [NO_CONTENT] * 3
    settled(c, su)
    # the mails went where accounts are: resets to both, verification to the unverified
    got = sorted((m["To"], m["Subject"]) for m in inbox.wait(5)[2:])
    assert got == [
        (KNOWN, "Reset your Shipyard password"),
        (UNVERIFIED, "Reset your Shipyard password"),
        (UNVERIFIED, "Verify your Shipyard email"),
    ]


def test_unsendable_mail_is_a_dead_letter_not_an_answer(
    app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()  # no mail server listens there
    c, su = app(smtp_host="127.0.0.1", smtp_port=closed, smtp_tls="off", jobs_max_attempts=1)
    with caplog.at_level(logging.INFO, logger="shipyard"):
        assert ask(c, "request-password-reset", KNOWN) == NO_CONTENT
        assert ask(c, "request-password-reset", UNKNOWN) == NO_CONTENT
        jobs = settled(c, su)
    by_address = {j["args"]["email"]: j for j in jobs}
    assert by_address[UNKNOWN]["state"] == "completed"
    dead = by_address[KNOWN]
    assert dead["state"] == "discarded"
    assert len(dead["errors"]) == 1
    reason = dead["errors"][0]["error"].splitlines()[0]
    expected = f"shipyard.tools.mailer.MailError: cannot connect to SMTP server 127.0.0.1:{closed}"
    assert reason.startswith(expected), reason
    line = f"job {dead['id']} (account_mail) discarded after 1 attempt(s): {reason}"
    assert line in caplog.messages, caplog.messages


class _Clock:
    """The limiter's `time` module, running `offset` seconds ahead of the real clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


def test_limits_answer_alike_for_every_address(
    app: AppFactory, inbox: GatedInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox.gate.set()
    c, su = app(
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
        account_mail_max_per_address=2,
        account_mail_max_per_ip=6,
        account_mail_window=600,
    )
    # an address's share: past it the answer is unchanged and nothing more is sent
    answers = [ask(c, "request-password-reset", e) for e in (KNOWN, UNKNOWN) * 3]
    assert answers == [NO_CONTENT] * 6
    jobs = settled(c, su)
    assert sorted(j["args"]["email"] for j in jobs) == [KNOWN, KNOWN, UNKNOWN, UNKNOWN]
    assert [m["To"] for m in inbox.wait(2)] == [KNOWN, KNOWN]
    # the client address's share: 429 for every address and every account mail request
    limited = [ask(c, "request-password-reset", e) for e in (KNOWN, UNVERIFIED, UNKNOWN)]
    limited.append(ask(c, "request-verification", UNVERIFIED))
    body = b'{"status":429,"message":"Too Many Requests.","data":{}}'
    assert [(s, b) for s, b, _ in limited] == [(429, body)] * 4
    r = c.post(
        "/api/collections/users/request-email-change",
        json={"newEmail": "ann.new@example.com"},
        headers=ann_headers(c),
    )
    assert (r.status_code, r.content) == (429, body)
    assert 1 <= int(r.headers["Retry-After"]) <= 600
    assert len(settled(c, su)) == 4
    assert len(inbox.messages) == 2
    # once the window has passed, mails go out again
    monkeypatch.setattr(attempts_module, "time", _Clock(601))
    assert ask(c, "request-password-reset", KNOWN) == NO_CONTENT
    assert inbox.wait(3)[2]["To"] == KNOWN
