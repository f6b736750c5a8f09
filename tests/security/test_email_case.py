"""E-mail addresses are unique regardless of letter case, and logins find them that way.

Before, `VICTIM@example.com` could sign up beside `victim@example.com`; both spellings
shared one failure counter, so the twin could clear the victim's lock-out by logging in.
Now the email index of every auth collection is COLLATE NOCASE (lower(email) on
PostgreSQL), identity lookups compare as their UNIQUE index does, and failures count per
account, so no two accounts share a counter whatever their identities look like. Auth
collections from before are migrated at start-up; one whose stored addresses already
clash in case keeps working case-sensitively, with a warning, until they are made distinct.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import Settings, load_settings
from tests.helpers.security import PW
from tests.helpers.servers import SUPERUSER

H = dict[str, str]
USERS = {
    "name": "users",
    "type": "auth",
    "createRule": "",
    "fields": [{"name": "username", "type": "text"}],
    "indexes": ["CREATE UNIQUE INDEX idx_users_username ON users (username)"],
}


def _app(settings: Settings, first: bool = False) -> TestClient:
    """A started app (stopped with _stop); the database outlives it, as across restarts."""
    c = TestClient(create_app(settings), raise_server_exceptions=False)
    c.__enter__()
    if first:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
    return c


def _stop(c: TestClient) -> None:
    c.__exit__(None, None, None)  # closing twice is harmless


def _su(c: TestClient, identity: str = SUPERUSER[0]) -> H:
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": identity, "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


def _signup(c: TestClient, email: str, **extra: Any) -> Any:
    body = {"email": email, "username": email, "password": PW, "passwordConfirm": PW}
    return c.post("/api/collections/users/records", json={**body, **extra})


def _login(c: TestClient, identity: str, password: str = PW, **extra: Any) -> Any:
    return c.post(
        "/api/collections/users/auth-with-password",
        json={"identity": identity, "password": password, **extra},
    )


def _not_unique(r: Any, field: str = "email") -> None:
    assert r.status_code == 400, r.text
    assert r.json()["data"][field]["code"] == "validation_not_unique", r.text


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # logins in bursts: rate limits are tested apart (tests/ratelimit)
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, ratelimit_enabled=False
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[TestClient]:
    c = _app(settings, first=True)
    try:
        r = c.post("/api/collections", json=USERS, headers=_su(c))
        assert r.status_code == 200, r.text
        yield c
    finally:
        _stop(c)


def test_case_twin_cannot_sign_up(app: TestClient) -> None:
    victim = _signup(app, "victim@example.com")
    assert victim.status_code == 200, victim.text
    for twin in ("VICTIM@example.com", "Victim@Example.COM", "victim@EXAMPLE.com"):
        _not_unique(_signup(app, twin))
    # nor can a superuser create or rename a record into the twin
    su = _su(app)
    r = app.post(
        "/api/collections/users/records",
        json={"email": "VICTIM@EXAMPLE.COM", "password": PW, "passwordConfirm": PW},
        headers=su,
    )
    _not_unique(r)
    other = _signup(app, "other@example.com")
    assert other.status_code == 200, other.text
    r = app.patch(
        f"/api/collections/users/records/{other.json()['id']}",
        json={"email": "Victim@example.com"},
        headers=su,
    )
    _not_unique(r)
    r = app.get("/api/collections/users/records", headers=su, params={"perPage": 50})
    assert sorted(i["email"] for i in r.json()["items"]) == [
        "other@example.com",
        "victim@example.com",
    ]
    # the collection says so in PocketBase's own index syntax
    coll = app.get("/api/collections/users", headers=su).json()
    assert any("(`email` COLLATE NOCASE)" in i and "UNIQUE" in i for i in coll["indexes"])


def test_login_finds_the_account_in_any_case(app: TestClient) -> None:
    rid = _signup(app, "ann@example.com").json()["id"]
    for spelling in ("ann@example.com", "ANN@EXAMPLE.COM", "Ann@Example.Com"):
        r = _login(app, spelling)
        assert r.status_code == 200, r.text
        assert r.json()["record"]["id"] == rid
    # superusers too
    assert _su(app, SUPERUSER[0].upper())


def test_failures_under_any_spelling_lock_the_one_account(app: TestClient) -> None:
    _signup(app, "ann@example.com")
    spellings = ["ann@example.com", "ANN@example.com", "Ann@example.com", "aNN@example.com"]
    for spelling in [*spellings, "ann@EXAMPLE.com"]:
        assert _login(app, spelling, "wrong-password").status_code == 400
    for spelling in spellings:
        r = _login(app, spelling)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1, r.text


def test_email_change_to_a_case_twin_is_refused(app: TestClient) -> None:
    _signup(app, "victim@example.com")
    _signup(app, "mallory@example.com")
    token = _login(app, "mallory@example.com").json()["token"]
    r = app.post(
        "/api/collections/users/request-email-change",
        json={"newEmail": "VICTIM@example.com"},
        headers={"Authorization": token},
    )
    assert r.status_code == 400, r.text
    assert r.json()["data"]["newEmail"]["code"] == "validation_invalid_new_email"


def test_accounts_with_case_twins_in_another_identity_keep_separate_counts(
    app: TestClient,
) -> None:
    """The class, not the example: a username whose UNIQUE index is case-sensitive lets
    `Bob` and `bob` be two accounts. Each has its own failure count, so `Bob` logging in
    does not clear the lock-out of `bob`."""
    su = _su(app)
    r = app.patch(
        "/api/collections/users",
        json={"passwordAuth": {"identityFields": ["email", "username"]}},
        headers=su,
    )
    assert r.status_code == 200, r.text
    bob = _signup(app, "bob@example.com", username="bob").json()["id"]
    big = _signup(app, "big-bob@example.com", username="Bob").json()["id"]
    assert bob != big
    for _ in range(4):
        assert _login(app, "bob", "wrong-password").status_code == 400
    r = _login(app, "Bob")
    assert r.status_code == 200
    assert r.json()["record"]["id"] == big
    assert _login(app, "bob", "wrong-password").status_code == 400  # the 5th
    assert _login(app, "bob").status_code == 429
    # one account's identities share its count: the e-mail of bob is locked too
    assert _login(app, "BOB@example.com").status_code == 429
    assert _login(app, "Bob").status_code == 200


# ---------------------------------------------------------------- existing databases


def _make_legacy(c: TestClient, coll_name: str, dropped: bool = False) -> None:
    """Turn a collection's email index back into the case-sensitive one older versions made
    (index and stored definition), or drop it (which they allowed), as a database from
    before this change has it."""
    svc = c.app.state.services  # type: ignore[attr-defined]
    coll = svc.store.require(coll_name)
    name = f"idx_email_{coll.id}"
    legacy = f"CREATE UNIQUE INDEX `{name}` ON `{coll.table}` (`email`)"

    async def go() -> None:
        async with svc.db.transaction() as tx:
            await tx.execute(f'DROP INDEX "{name}"')
            if not dropped:
                await tx.execute(f'CREATE UNIQUE INDEX "{name}" ON "{coll.table}" ("email")')
            row = await tx.fetchone('SELECT "data" FROM "_collections" WHERE "id" = ?', (coll.id,))
            data = orjson.loads(row[0])
            data["indexes"] = [
                legacy if name in i else i for i in data["indexes"] if not (dropped and name in i)
            ]
            await tx.execute(
                'UPDATE "_collections" SET "data" = ? WHERE "id" = ?',
                (orjson.dumps(data).decode(), coll.id),
            )

    c.portal.call(go)  # type: ignore[union-attr]


def _email_index(c: TestClient, su: H, coll: str = "users") -> str:
    indexes = c.get(f"/api/collections/{coll}", headers=su).json()["indexes"]
    return next(i for i in indexes if "idx_email_" in i)


def test_startup_migrates_the_email_index(settings: Settings, app: TestClient) -> None:
    ann = _signup(app, "ann@example.com").json()["id"]
    r = app.post(
        "/api/collections", json={**USERS, "name": "members", "indexes": []}, headers=_su(app)
    )
    assert r.status_code == 200, r.text
    r = app.post(
        "/api/collections/members/records",
        json={"email": "bob@example.com", "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 200, r.text
    _make_legacy(app, "users")
    _make_legacy(app, "_superusers")
    _make_legacy(app, "members", dropped=True)
    _stop(app)
    c = _app(settings)
    try:
        su = _su(c, SUPERUSER[0].upper())
        for coll in ("users", "_superusers", "members"):
            assert _email_index(c, su, coll).endswith("(`email` COLLATE NOCASE)"), coll
        _not_unique(_signup(c, "ANN@example.com"))
        r = _login(c, "ANN@EXAMPLE.COM")
        assert r.status_code == 200
        assert r.json()["record"]["id"] == ann
        r = c.post(
            "/api/collections/members/records",
            json={"email": "BOB@example.com", "password": PW, "passwordConfirm": PW},
        )
        _not_unique(r)
    finally:
        _stop(c)


def test_startup_with_case_twins_keeps_them_working(
    settings: Settings, app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Addresses that already differ only in case cannot get a case-insensitive index: the
    collection keeps its old one and case-sensitive logins (both accounts still work),
    a warning names the records, and once they are made distinct the next start migrates."""
    ann = _signup(app, "ann@example.com").json()["id"]
    _make_legacy(app, "users")
    twin = _signup(app, "ANN@example.com")  # what an older version allowed
    assert twin.status_code == 200, twin.text
    _stop(app)
    with caplog.at_level(logging.WARNING, logger="shipyard.schema"):
        c = _app(settings)
    try:
        warned = [r.getMessage() for r in caplog.records if r.name == "shipyard.schema"]
        assert len(warned) == 1
        assert ann in warned[0]
        assert twin.json()["id"] in warned[0]
        assert "ann@example.com" not in warned[0].lower()  # ids, never the addresses
        su = _su(c)
        assert _email_index(c, su).endswith("(`email`)")
        assert _login(c, "ann@example.com").json()["record"]["id"] == ann
        assert _login(c, "ANN@example.com").json()["record"]["id"] == twin.json()["id"]
        assert _login(c, "Ann@example.com").status_code == 400
        # saving the collection keeps its index as it is (a NOCASE one could not be built)
        r = c.patch("/api/collections/users", json={"listRule": ""}, headers=su)
        assert r.status_code == 200, r.text
        assert _email_index(c, su).endswith("(`email`)")
        r = c.delete(f"/api/collections/users/records/{twin.json()['id']}", headers=su)
        assert r.status_code == 204, r.text
    finally:
        _stop(c)
    c = _app(settings)
    try:
        su = _su(c)
        assert _email_index(c, su).endswith("(`email` COLLATE NOCASE)")
        assert _login(c, "Ann@example.com").json()["record"]["id"] == ann
    finally:
        _stop(c)
