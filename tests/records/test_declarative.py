"""The declarative file gives exactly the collections `POST /api/collections` gives for the
same bodies — auth system fields and their protections included — whether it is applied at
start-up (SHIPYARD_SCHEMA_FILE) or by `shipyard migrate --schema-file`; and the auth
collection it creates behaves: a password change ends sessions, a reset link works once,
a second sign-up works. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import Settings, load_settings
from tests.helpers.servers import SUPERUSER, fresh_pg_database
from tests.helpers.smtp import SMTPServer, smtp_server
from tests.helpers.wait import wait_until

H = dict[str, str]
PW = "first-pass-1"

MEMBERS_RULES = {
    "createRule": "",
    "listRule": "id = @request.auth.id",
    "viewRule": "id = @request.auth.id",
    "updateRule": "id = @request.auth.id",
}
NOTES = {
    "name": "notes",
    "listRule": "owner = @request.auth.id",
    "fields": [
        {"name": "owner", "type": "relation", "collectionId": "members", "required": True},
        {"name": "text", "type": "text"},
    ],
    "indexes": ["CREATE INDEX idx_notes_owner ON notes (owner)"],
}
SYSTEM_BY_NAME = [
    {"name": "email", "type": "email"},
    {"name": "password", "type": "password"},
    {"name": "tokenKey", "type": "text"},
    {"name": "emailVisibility", "type": "bool"},
    {"name": "verified", "type": "bool"},
]
BODIES = {
    "custom-fields-only": [
        {
            "name": "members",
            "type": "auth",
            **MEMBERS_RULES,
            "fields": [{"name": "nick", "type": "text"}],
        },
        NOTES,
    ],
    "system-fields-by-name": [
        {
            "name": "members",
            "type": "auth",
            **MEMBERS_RULES,
            "fields": [*SYSTEM_BY_NAME, {"name": "nick", "type": "text"}],
        },
        NOTES,
    ],
    "system-fields-with-options": [
        {
            "name": "members",
            "type": "auth",
            **MEMBERS_RULES,
            "fields": [
                {"name": "nick", "type": "text"},
                # what may change is kept, what protects the accounts is not given away
                {"name": "password", "type": "password", "min": 12, "hidden": False},
                {"name": "tokenKey", "type": "text", "hidden": False, "required": False},
                {"name": "email", "type": "email", "onlyDomains": ["example.com"]},
            ],
        },
        NOTES,
    ],
}


def _settings(database_url: str, data_dir: Path, **extra: Any) -> Settings:
    # logins in bursts: rate limits are tested apart (tests/ratelimit)
    extra.setdefault("ratelimit_enabled", False)
    return load_settings(env={}, data_dir=str(data_dir), database_url=database_url, **extra)


def _db(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return ""
    return fresh_pg_database(request.getfixturevalue("pg_admin_url"))


def _su(c: TestClient) -> H:
    svc = c.app.state.services  # type: ignore[attr-defined]
    c.portal.call(superusers.upsert, svc, *SUPERUSER)  # type: ignore[union-attr]
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    return {"Authorization": r.json()["token"]}


def _shapes(c: TestClient, su: H) -> dict[str, Any]:
    """members and notes as GET /api/collections/{name} gives them, with what differs by
    nature between two databases — the random collection ids and the timestamps — named."""
    got = {n: c.get(f"/api/collections/{n}", headers=su).json() for n in ("members", "notes")}
    text = json.dumps(got, sort_keys=True)
    for name, coll in got.items():
        text = text.replace(coll["id"], f"<id of {name}>")
    out: dict[str, Any] = json.loads(text)
    for coll in out.values():
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", coll.pop("created"))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", coll.pop("updated"))
    return out


def _through_api(settings: Settings, body: list[dict[str, Any]]) -> dict[str, Any]:
    with TestClient(create_app(settings)) as c:
        su = _su(c)
        for coll in body:
            r = c.post("/api/collections", json=coll, headers=su)
            assert r.status_code == 200, r.text
        return _shapes(c, su)


def _read(settings: Settings) -> dict[str, Any]:
    with TestClient(create_app(settings)) as c:
        return _shapes(c, _su(c))


@pytest.mark.parametrize("case", sorted(BODIES))
def test_file_gives_exactly_what_the_api_gives(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, case: str
) -> None:
    body = BODIES[case]
    schema = tmp_path / "collections.json"
    schema.write_text(json.dumps({"collections": body}))
    api = _through_api(_settings(_db(backend, request), tmp_path / "api"), body)

    # SHIPYARD_SCHEMA_FILE at start-up (applied twice: a restart changes nothing)
    boot = _settings(_db(backend, request), tmp_path / "boot", schema_file=str(schema))
    assert _read(boot) == api
    assert _read(boot) == api

    # shipyard migrate --schema-file
    url = _db(backend, request)
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "cli"),
        "SHIPYARD_DATABASE_URL": url,
    }
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "migrate", "--schema-file", str(schema)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert _read(_settings(url, tmp_path / "cli")) == api

    members = {f["name"]: f for f in api["members"]["fields"]}
    assert list(members)[:6] == [
        "id",
        "password",
        "tokenKey",
        "email",
        "emailVisibility",
        "verified",
    ]
    for name in ("password", "tokenKey"):
        assert members[name]["system"]
        assert members[name]["hidden"]
        assert members[name]["required"]
    assert members["email"]["system"]
    assert not members["email"]["hidden"]
    assert members["tokenKey"]["autogeneratePattern"] == "[a-zA-Z0-9]{50}"
    assert (
        "CREATE UNIQUE INDEX `idx_tokenKey_<id of members>` ON `members` (`tokenKey`)"
        in (api["members"]["indexes"])
    )
    if case == "system-fields-with-options":
        assert members["password"]["min"] == 12
        assert members["email"]["onlyDomains"] == ["example.com"]
    else:
        assert members["password"]["min"] == 8
        assert members["email"]["required"] is True


# --------------------------------------------------------------- the accounts it creates


@pytest.fixture
def inbox() -> Iterator[SMTPServer]:
    with smtp_server() as server:
        yield server


def _mailed_token(inbox: SMTPServer, count: int, kind: str) -> str:
    """The token in mail number `count` (sending may go through the job queue)."""
    got = wait_until(lambda: len(inbox.handler.received) >= count, 30, what=f"mail {count}")
    assert got
    msg = inbox.handler.received[count - 1].message
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    payload = html.get_payload(decode=True)
    assert isinstance(payload, bytes)
    m = re.search(rf"/auth/{kind}/([A-Za-z0-9._-]+)", payload.decode())
    assert m
    return m.group(1)


@pytest.mark.parametrize("case", sorted(BODIES))
def test_accounts_of_a_declared_auth_collection_are_protected(
    database_url: str, tmp_path: Path, inbox: SMTPServer, case: str
) -> None:
    schema = tmp_path / "collections.json"
    schema.write_text(json.dumps(BODIES[case]))
    settings = _settings(
        database_url,
        tmp_path / "data",
        schema_file=str(schema),
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
    )
    with TestClient(create_app(settings)) as c:
        users = "/api/collections/members"
        for name in ("ann", "bob"):  # the second sign-up works (a fresh tokenKey each)
            r = c.post(
                f"{users}/records",
                json={"email": f"{name}@example.com", "password": PW, "passwordConfirm": PW},
            )
            assert r.status_code == 200, r.text
            assert "password" not in r.json()
            assert "tokenKey" not in r.json()

        def login(password: str) -> Any:
            return c.post(
                f"{users}/auth-with-password",
                json={"identity": "ann@example.com", "password": password},
            )

        first = login(PW).json()
        old = {"Authorization": first["token"]}
        assert c.post(f"{users}/auth-refresh", headers=old).status_code == 200
        # a password change ends the sessions it had
        second = "second-pass-22"
        r = c.patch(
            f"{users}/records/{first['record']['id']}",
            json={"oldPassword": PW, "password": second, "passwordConfirm": second},
            headers=old,
        )
        assert r.status_code == 200, r.text
        assert c.post(f"{users}/auth-refresh", headers=old).status_code == 401
        assert login(second).status_code == 200
        # a reset link works once
        r = c.post(f"{users}/request-password-reset", json={"email": "ann@example.com"})
        assert r.status_code == 204
        token = _mailed_token(inbox, 1, "confirm-password-reset")
        third = "third-pass-333"
        body = {"token": token, "password": third, "passwordConfirm": third}
        assert c.post(f"{users}/confirm-password-reset", json=body).status_code == 204
        assert login(third).status_code == 200
        assert login(second).status_code == 400
        again = {**body, "password": "fourth-pass-4444", "passwordConfirm": "fourth-pass-4444"}
        r = c.post(f"{users}/confirm-password-reset", json=again)
        assert r.status_code == 400
        assert login(third).status_code == 200
