"""`passwordAuth.identityFields` names fields, never SQL.

Before, the names were pasted into the login query: `['email" IS NOT NULL OR "email']`
logged anyone in as the first user (with that user's password) and an unknown name made
every login a 500. Now, as in PocketBase, each identity field must be a field of the
collection with a UNIQUE index of its own (codes `validation_missing_field`,
`validation_missing_unique_constraint`, params `fieldName`); the query quotes the name and
compares as that index does. A definition stored before this check cannot do harm either:
its bad names find nobody.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.helpers.security import PW

H = dict[str, str]
INJECTION = 'email" IS NOT NULL OR "email'
USERS = {
    "name": "users",
    "type": "auth",
    "createRule": "",
    "fields": [{"name": "username", "type": "text"}, {"name": "nick", "type": "text"}],
    "indexes": ["CREATE UNIQUE INDEX idx_users_username ON users (username COLLATE NOCASE)"],
}


@pytest.fixture
def app(client: TestClient, su: H) -> tuple[TestClient, H, str, str]:
    """An app with `users` and two accounts (first: ann, then bob)."""
    r = client.post("/api/collections", json=USERS, headers=su)
    assert r.status_code == 200, r.text
    ids = []
    for name in ("ann", "bob"):
        r = client.post(
            "/api/collections/users/records",
            json={
                "email": f"{name}@example.com",
                "username": name,
                "password": PW + name,
                "passwordConfirm": PW + name,
            },
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return client, su, ids[0], ids[1]


def _login(c: TestClient, identity: str, password: str, **extra: Any) -> Any:
    return c.post(
        "/api/collections/users/auth-with-password",
        json={"identity": identity, "password": password, **extra},
    )


def _set(c: TestClient, su: H, body: dict[str, Any]) -> Any:
    return c.patch("/api/collections/users", json=body, headers=su)


def _refused(r: Any, code: str, field: str | None) -> None:
    assert r.status_code == 400, r.text
    problem = r.json()["data"]["passwordAuth"]["identityFields"]
    assert problem["code"] == code, r.text
    assert problem.get("params") == ({"fieldName": field} if field is not None else None)


@pytest.mark.parametrize(
    ("fields", "code", "name"),
    [
        ([INJECTION], "validation_missing_field", INJECTION),
        (["email", "nope"], "validation_missing_field", "nope"),
        (["nick"], "validation_missing_unique_constraint", "nick"),  # no index at all
        (["id"], "validation_missing_unique_constraint", "id"),  # as PocketBase
        ([], "validation_required", None),
    ],
)
def test_bad_identity_fields_are_refused(
    app: tuple[TestClient, H, str, str], fields: list[str], code: str, name: str | None
) -> None:
    c, su, _, _ = app
    _refused(_set(c, su, {"passwordAuth": {"identityFields": fields}}), code, name)
    stored = c.get("/api/collections/users", headers=su).json()["passwordAuth"]
    assert stored["identityFields"] == ["email"]
    # and nothing about logins changed
    assert _login(c, "x", PW + "ann").status_code == 400
    assert _login(c, "ann@example.com", PW + "ann").status_code == 200


def test_identity_needs_a_unique_index_of_its_own(app: tuple[TestClient, H, str, str]) -> None:
    c, su, _, _ = app
    indexes = c.get("/api/collections/users", headers=su).json()["indexes"]
    plain = [i for i in indexes if "idx_users_username" not in i]
    for index in (
        "CREATE INDEX idx_nick ON users (nick)",  # not UNIQUE
        "CREATE UNIQUE INDEX idx_nick ON users (nick, username)",  # not its own
    ):
        r = _set(
            c,
            su,
            {"indexes": [*plain, index], "passwordAuth": {"identityFields": ["email", "nick"]}},
        )
        _refused(r, "validation_missing_unique_constraint", "nick")
    # an identity field cannot lose its index or be removed while it is one
    r = _set(c, su, {"passwordAuth": {"identityFields": ["email", "username"]}})
    assert r.status_code == 200, r.text
    _refused(_set(c, su, {"indexes": plain}), "validation_missing_unique_constraint", "username")
    fields = c.get("/api/collections/users", headers=su).json()["fields"]
    kept = [f for f in fields if f["name"] != "username"]
    r = _set(c, su, {"fields": kept, "indexes": plain, "confirmDataLoss": True})
    _refused(r, "validation_missing_field", "username")
    # switched off, password login may list no identity field (PocketBase accepts it too)
    r = _set(c, su, {"passwordAuth": {"enabled": False, "identityFields": []}})
    assert r.status_code == 200, r.text


def test_valid_identity_field_logs_in_as_its_index_compares(
    app: tuple[TestClient, H, str, str],
) -> None:
    c, su, ann, bob = app
    r = _set(c, su, {"passwordAuth": {"identityFields": ["email", "username"]}})
    assert r.status_code == 200, r.text
    for identity in ("bob", "BOB", "bob@example.com"):
        r = _login(c, identity, PW + "bob")
        assert r.status_code == 200, r.text
        assert r.json()["record"]["id"] == bob
    # the injection as an identity value is just a value
    assert _login(c, INJECTION, PW + "ann").status_code == 400
    # identityField picks one of the listed fields, and only those
    r = _login(c, "ann", PW + "ann", identityField="username")
    assert r.status_code == 200
    assert r.json()["record"]["id"] == ann
    assert _login(c, "ann", PW + "ann", identityField="email").status_code == 400
    r = _login(c, "ann", PW + "ann", identityField="nick")
    assert r.status_code == 400
    assert r.json()["message"] == "Invalid identity field."


def test_stored_bad_identity_fields_find_nobody(app: tuple[TestClient, H, str, str]) -> None:
    """A definition saved before identity fields were checked (written straight into the
    database here) neither logs anyone in through the injection nor fails with a 500."""
    c, su, ann, _ = app
    svc = c.app.state.services  # type: ignore[attr-defined]
    coll = svc.store.require("users")

    async def store(fields: list[str]) -> None:
        row = await svc.db.fetchone('SELECT "data" FROM "_collections" WHERE "id" = ?', (coll.id,))
        data = orjson.loads(row[0])
        data["options"]["passwordAuth"]["identityFields"] = fields
        await svc.db.execute(
            'UPDATE "_collections" SET "data" = ? WHERE "id" = ?',
            (orjson.dumps(data).decode(), coll.id),
        )
        await svc.store.load()

    c.portal.call(store, [INJECTION])  # type: ignore[union-attr]
    for identity in ("anything", "bob@example.com", "ann@example.com"):
        r = _login(c, identity, PW + "ann")
        assert r.status_code == 400, r.text
        assert r.json()["message"] == "Failed to authenticate.", r.text
    r = _login(c, "anything", PW + "ann", identityField=INJECTION)
    assert r.status_code == 400
    assert r.json()["message"] == "Failed to authenticate."
    c.portal.call(store, ["nope", "nick", "email"])  # type: ignore[union-attr]
    assert _login(c, "x", "whatever-1").status_code == 400
    r = _login(c, "ann@example.com", PW + "ann")
    assert r.status_code == 200
    assert r.json()["record"]["id"] == ann
    # saving the collection now asks for the definition to be fixed
    _refused(_set(c, su, {"listRule": ""}), "validation_missing_field", "nope")
