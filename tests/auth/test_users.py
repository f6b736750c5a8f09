"""Auth collections: sign-up, login, token refresh, owner rules through `@request.auth`,
protected system fields and e-mail visibility — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

H = dict[str, str]
PW = "secret-pass-1"


@pytest.fixture
def app_users(client: TestClient, su: H) -> dict[str, Any]:
    r = client.post(
        "/api/collections",
        json={
            "name": "users",
            "type": "auth",
            "createRule": "",
            "listRule": "id = @request.auth.id",
            "viewRule": "id = @request.auth.id",
            "updateRule": "id = @request.auth.id",
            "fields": [{"name": "nick", "type": "text"}],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    users = r.json()
    r = client.post(
        "/api/collections",
        json={
            "name": "notes",
            "listRule": "owner = @request.auth.id",
            "viewRule": "owner = @request.auth.id",
            "createRule": "@request.auth.id != '' && @request.body.owner = @request.auth.id",
            "updateRule": "owner = @request.auth.id",
            "deleteRule": "owner = @request.auth.id",
            "fields": [
                {
                    "name": "owner",
                    "type": "relation",
                    "collectionId": users["id"],
                    "required": True,
                },
                {"name": "text", "type": "text"},
            ],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = {"collection": users}
    for name in ("ann", "bob"):
        r = client.post(
            "/api/collections/users/records",
            json={
                "email": f"{name}@example.com",
                "password": PW,
                "passwordConfirm": PW,
                "nick": name,
            },
        )
        assert r.status_code == 200, r.text
        login = client.post(
            "/api/collections/users/auth-with-password",
            json={"identity": f"{name}@example.com", "password": PW},
        )
        assert login.status_code == 200, login.text
        out[name] = {"id": r.json()["id"], "h": {"Authorization": login.json()["token"]}}
    return out


def test_auth_collection_shape(app_users: dict[str, Any]) -> None:
    c = app_users["collection"]
    names = [f["name"] for f in c["fields"]]
    assert names[:6] == ["id", "password", "tokenKey", "email", "emailVisibility", "verified"]
    assert c["type"] == "auth"
    assert c["passwordAuth"]["identityFields"] == ["email"]
    assert "secrets" not in c


def test_signup_login_refresh(client: TestClient, app_users: dict[str, Any]) -> None:
    me = client.post("/api/collections/users/auth-refresh", headers=app_users["ann"]["h"])
    assert me.status_code == 200
    assert me.json()["record"]["email"] == "ann@example.com"
    assert "password" not in me.json()["record"]
    assert "tokenKey" not in me.json()["record"]
    methods = client.get("/api/collections/users/auth-methods").json()
    assert methods["password"] == {"enabled": True, "identityFields": ["email"]}
    r = client.post(
        "/api/collections/users/records", json={"email": "c@example.com", "password": PW}
    )
    assert r.status_code == 400
    assert r.json()["data"]["passwordConfirm"]["code"] == "validation_required"
    r = client.post(
        "/api/collections/users/records",
        json={"email": "ann@example.com", "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 400
    assert r.json()["data"]["email"]["code"] == "validation_not_unique"
    # a user's token is not a superuser's
    assert client.get("/api/collections", headers=app_users["ann"]["h"]).status_code == 403


def test_owner_rules(client: TestClient, app_users: dict[str, Any]) -> None:
    ann, bob = app_users["ann"], app_users["bob"]
    url = "/api/collections/notes/records"
    r = client.post(url, json={"owner": ann["id"], "text": "mine"}, headers=ann["h"])
    assert r.status_code == 200, r.text
    note = r.json()["id"]
    # create for someone else fails the rule: 400; anonymous too
    assert (
        client.post(url, json={"owner": bob["id"], "text": "x"}, headers=ann["h"]).status_code
        == 400
    )
    assert client.post(url, json={"owner": ann["id"], "text": "x"}).status_code == 400
    assert client.get(url, headers=bob["h"]).json()["items"] == []
    assert [i["id"] for i in client.get(url, headers=ann["h"]).json()["items"]] == [note]
    assert client.get(url).json()["totalItems"] == 0
    assert client.get(f"{url}/{note}", headers=bob["h"]).status_code == 404
    assert (
        client.patch(f"{url}/{note}", json={"text": "hacked"}, headers=bob["h"]).status_code == 404
    )
    assert client.delete(f"{url}/{note}", headers=bob["h"]).status_code == 404
    assert (
        client.patch(f"{url}/{note}", json={"text": "edited"}, headers=ann["h"]).json()["text"]
        == "edited"
    )
    # users see only themselves
    users = client.get("/api/collections/users/records", headers=bob["h"]).json()["items"]
    assert [u["id"] for u in users] == [bob["id"]]
    assert client.delete(f"{url}/{note}", headers=ann["h"]).status_code == 204


def test_protected_fields_and_password_change(
    client: TestClient, su: H, app_users: dict[str, Any]
) -> None:
    ann = app_users["ann"]
    url = f"/api/collections/users/records/{ann['id']}"
    r = client.post(
        "/api/collections/users/records",
        json={"email": "v@example.com", "password": PW, "passwordConfirm": PW, "verified": True},
    )
    assert r.status_code == 400
    assert "verified" in r.json()["data"]
    assert client.patch(url, json={"verified": True}, headers=ann["h"]).status_code == 400
    assert client.patch(url, json={"email": "new@example.com"}, headers=ann["h"]).status_code == 400
    r = client.patch(
        url, json={"password": "new-pass-123", "passwordConfirm": "new-pass-123"}, headers=ann["h"]
    )
    assert r.status_code == 400
    assert r.json()["data"]["oldPassword"]["code"] == "validation_invalid_old_password"
    r = client.patch(
        url,
        json={"password": "new-pass-123", "passwordConfirm": "new-pass-123", "oldPassword": PW},
        headers=ann["h"],
    )
    assert r.status_code == 200, r.text
    # the old token died with the password change
    assert client.post("/api/collections/users/auth-refresh", headers=ann["h"]).status_code == 401
    # superusers may set verified
    assert client.patch(url, json={"verified": True}, headers=su).json()["verified"] is True


def test_email_visibility(client: TestClient, su: H, app_users: dict[str, Any]) -> None:
    ann, bob = app_users["ann"], app_users["bob"]
    # open the list so bob can see ann's record, then check her e-mail stays hidden
    coll = app_users["collection"]
    client.patch(
        f"/api/collections/{coll['id']}", json={"listRule": "", "viewRule": ""}, headers=su
    )
    seen = {
        u["id"]: u
        for u in client.get("/api/collections/users/records", headers=bob["h"]).json()["items"]
    }
    assert "email" not in seen[ann["id"]]
    assert seen[bob["id"]]["email"] == "bob@example.com"
    client.patch(
        f"/api/collections/users/records/{ann['id']}",
        json={"emailVisibility": True},
        headers=ann["h"],
    )
    seen = client.get(f"/api/collections/users/records/{ann['id']}", headers=bob["h"]).json()
    assert seen["email"] == "ann@example.com"
    # superusers always see it; filtering on a hidden email is not a side channel for others
    assert client.get(f"/api/collections/users/records/{bob['id']}", headers=su).json()["email"]
    probe = client.get("/api/collections/users/records", params={"filter": "email ~ 'bob'"})
    assert probe.status_code == 200
    assert probe.json()["totalItems"] == 0


def test_superuser_impersonates_for_support(
    client: TestClient, su: H, app_users: dict[str, Any]
) -> None:
    ann, bob = app_users["ann"], app_users["bob"]
    url = f"/api/collections/users/impersonate/{ann['id']}"
    assert client.post(url, json={}).status_code == 401
    assert client.post(url, json={}, headers=bob["h"]).status_code == 403
    assert client.post(url, json={"duration": "x"}, headers=su).status_code == 400
    assert (
        client.post(
            "/api/collections/users/impersonate/nobody000000000", json={}, headers=su
        ).status_code
        == 404
    )
    r = client.post(url, json={"duration": 60}, headers=su)
    assert r.status_code == 200, r.text
    as_ann = {"Authorization": r.json()["token"]}
    assert r.json()["record"]["id"] == ann["id"]
    client.post(
        "/api/collections/notes/records", json={"owner": ann["id"], "text": "t"}, headers=ann["h"]
    )
    assert client.get("/api/collections/notes/records", headers=as_ann).json()["totalItems"] == 1
    refused = client.post("/api/collections/users/auth-refresh", headers=as_ann)
    assert refused.status_code == 403
