"""Brute-force protection of password logins on an auth collection (`users`).

Failures are counted per account (whichever spelling of its identity found it: e-mails
match regardless of case) and per client address, in the database, in a fixed window
(`auth_failure_window`, 300 s) that opens at the first failure. From the limit on
(`auth_max_failures_per_identity` 5, `auth_max_failures_per_ip` 20) the answer is 429 with
`Retry-After`, even for the right password; a successful login resets its account's count. Every test here gets an app of its own: the counters start at
zero. Time is moved forward by replacing the limiter's clock, never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import shipyard.tools.attempts as attempts_module
from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.security import PW
from tests.helpers.servers import SUPERUSER

H = dict[str, str]
USERS = {
    "name": "users",
    "type": "auth",
    "createRule": "",
    "listRule": "id = @request.auth.id",
    "viewRule": "id = @request.auth.id",
    "fields": [],
}


def _signup(c: TestClient, name: str) -> str:
    email = f"{name}@example.com"
    r = c.post(
        "/api/collections/users/records",
        json={"email": email, "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 200, r.text
    return email


def _login(c: TestClient, identity: str, password: str, coll: str = "users") -> Any:
    return c.post(
        f"/api/collections/{coll}/auth-with-password",
        json={"identity": identity, "password": password},
    )


def _assert_limited(r: Any, window: int = 300) -> int:
    assert r.status_code == 429, r.text
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= window
    assert r.json()["status"] == 429
    assert r.json()["data"]["retryAfter"] == wait
    assert "token" not in r.json()
    return wait


class _Clock:
    """The limiter's `time` module, running `offset` seconds ahead of the real clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def forward(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    def move(seconds: float) -> None:
        monkeypatch.setattr(attempts_module, "time", _Clock(seconds))

    return move


@pytest.fixture
def low(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """An app of its own with limits of 3 failures per identity and 6 per address."""
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        ratelimit_enabled=False,  # the brute-force counters under test, not the rate limits
        auth_max_failures_per_identity=3,
        auth_max_failures_per_ip=6,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        login = _login(c, SUPERUSER[0], SUPERUSER[1], "_superusers")
        assert login.status_code == 200, login.text
        r = c.post("/api/collections", json=USERS, headers={"Authorization": login.json()["token"]})
        assert r.status_code == 200, r.text
        yield c


def test_default_limit_per_identity(client: TestClient, su: H) -> None:
    r = client.post("/api/collections", json=USERS, headers=su)
    assert r.status_code == 200, r.text
    ann, bob = _signup(client, "ann"), _signup(client, "bob")
    session = {"Authorization": _login(client, ann, PW).json()["token"]}
    for _ in range(5):
        r = _login(client, ann, "wrong-password")
        assert r.status_code == 400, r.text
        assert r.json()["message"] == "Failed to authenticate.", r.text
    _assert_limited(_login(client, ann, "wrong-password"))
    # the right password is refused too, so a lock does not tell which guess was right
    _assert_limited(_login(client, ann, PW))
    _assert_limited(_login(client, "ANN@Example.com", PW))
    # another identity from the same address still gets its own answers (5 < 20)
    assert _login(client, bob, "wrong-password").status_code == 400
    assert _login(client, bob, PW).status_code == 200
    # a lock-out is not a log-out
    assert client.post("/api/collections/users/auth-refresh", headers=session).status_code == 200


def test_identity_variants_count_as_one(low: TestClient) -> None:
    ann = _signup(low, "ann")
    for variant in (ann, ann.upper(), ann.title()):
        assert _login(low, variant, "wrong-password").status_code == 400
    _assert_limited(_login(low, ann, PW))
    _assert_limited(_login(low, ann.upper(), PW))


def test_limit_per_address(low: TestClient, forward: Callable[[float], None]) -> None:
    ann, bob, carol = (_signup(low, n) for n in ("ann", "bob", "carol"))
    for _ in range(3):
        assert _login(low, ann, "wrong-password").status_code == 400
    _assert_limited(_login(low, ann, "wrong-password"))
    # bob is not locked by ann's failures, until the address reaches its limit (6)
    for _ in range(3):
        assert _login(low, bob, "wrong-password").status_code == 400
    _assert_limited(_login(low, carol, PW))
    _assert_limited(_login(low, "nobody@example.com", "whatever-1"))
    # once the window has passed, everyone may try again
    forward(301)
    assert _login(low, carol, PW).status_code == 200
    assert _login(low, ann, PW).status_code == 200


def test_window_passes(low: TestClient, forward: Callable[[float], None]) -> None:
    ann = _signup(low, "ann")
    for _ in range(3):
        assert _login(low, ann, "wrong-password").status_code == 400
    _assert_limited(_login(low, ann, PW))
    forward(100)
    wait = _assert_limited(_login(low, ann, PW))
    assert 150 <= wait <= 200  # what is left of the window (with slack for a slow machine)
    forward(290)  # 10 s before the end of the window
    _assert_limited(_login(low, ann, PW))
    forward(301)
    assert _login(low, ann, PW).status_code == 200


def test_success_resets_the_identity_count(low: TestClient) -> None:
    ann = _signup(low, "ann")
    for _ in range(2):
        assert _login(low, ann, "wrong-password").status_code == 400
    assert _login(low, ann, PW).status_code == 200
    for _ in range(2):
        assert _login(low, ann, "wrong-password").status_code == 400
    assert _login(low, ann, PW).status_code == 200


def test_unknown_identities_answer_and_lock_alike(low: TestClient) -> None:
    """No account enumeration: an unknown e-mail gets the same 400 as a wrong password, and
    is locked after the same number of tries."""
    ann = _signup(low, "ann")
    known = _login(low, ann, "wrong-password")
    unknown = _login(low, "nobody@example.com", "wrong-password")
    assert known.status_code == unknown.status_code == 400
    assert known.json() == unknown.json()
    for _ in range(2):
        assert _login(low, "nobody@example.com", "wrong-password").status_code == 400
    locked = _login(low, "nobody@example.com", "wrong-password")
    _assert_limited(locked)
    for _ in range(2):
        assert _login(low, ann, "wrong-password").status_code == 400
    other = _login(low, ann, "wrong-password")
    assert other.status_code == 429
    assert other.json()["message"] == locked.json()["message"]
