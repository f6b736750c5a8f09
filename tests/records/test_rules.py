"""Rule features beyond plain filters: `:changed`, `@request.headers`, `manageRule` — on
SQLite and PostgreSQL, through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

H = dict[str, str]
PW = "secret-pass-1"


def _collection(client: TestClient, su: H, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/collections", json=body, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _user(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/api/collections/users/records",
        json={"email": f"{name}@example.com", "password": PW, "passwordConfirm": PW, **extra},
    )
    assert r.status_code == 200, r.text
    login = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": f"{name}@example.com", "password": PW},
    )
    assert login.status_code == 200, login.text
    return {"id": r.json()["id"], "h": {"Authorization": login.json()["token"]}}


@pytest.fixture
def world(client: TestClient, su: H) -> dict[str, Any]:
    users = _collection(
        client,
        su,
        {
            "name": "users",
            "type": "auth",
            "createRule": "",
            "listRule": "",
            "viewRule": "",
            "updateRule": "id = @request.auth.id || @request.auth.role = 'admin'",
            "manageRule": "@request.auth.role = 'admin'",
            "fields": [{"name": "role", "type": "text"}],
        },
    )
    _collection(
        client,
        su,
        {
            "name": "posts",
            "listRule": "",
            "viewRule": "@request.headers.x_api_key = 'let-me-in'",
            "createRule": "@request.auth.id != ''",
            # the owner may edit, but never hand the post to someone else or touch `status`
            "updateRule": "owner = @request.auth.id && @request.body.owner:changed = false"
            " && @request.body.status:changed = false",
            "fields": [
                {"name": "owner", "type": "relation", "collectionId": users["id"]},
                {"name": "title", "type": "text"},
                {"name": "status", "type": "select", "values": ["draft", "live"]},
                {"name": "tags", "type": "json"},
            ],
        },
    )
    admin = _user(client, "admin")
    r = client.patch(
        f"/api/collections/users/records/{admin['id']}", json={"role": "admin"}, headers=su
    )
    assert r.status_code == 200, r.text
    ann, bob = _user(client, "ann"), _user(client, "bob")
    r = client.post(
        "/api/collections/posts/records",
        json={"owner": ann["id"], "title": "t", "status": "draft"},
        headers=ann["h"],
    )
    assert r.status_code == 200, r.text
    return {"admin": admin, "ann": ann, "bob": bob, "post": r.json()["id"]}


def test_changed_allows_resending_the_same_value(client: TestClient, world: dict[str, Any]) -> None:
    ann, post = world["ann"], world["post"]
    url = f"/api/collections/posts/records/{post}"
    same = {"owner": ann["id"], "status": "draft", "title": "edited"}
    r = client.patch(url, json=same, headers=ann["h"])
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "edited"


@pytest.mark.parametrize(
    "change",
    [{"owner": "BOB"}, {"status": "live"}, {"owner": ""}],
    ids=["owner", "status", "clear"],
)
def test_changed_refuses_changing_guarded_fields(
    client: TestClient, world: dict[str, Any], change: dict[str, str]
) -> None:
    ann, post = world["ann"], world["post"]
    body = {k: (world["bob"]["id"] if v == "BOB" else v) for k, v in change.items()}
    url = f"/api/collections/posts/records/{post}"
    r = client.patch(url, json=body, headers=ann["h"])
    assert r.status_code == 404  # a failed update rule hides the record, as PocketBase
    got = client.get(url, headers={"X-Api-Key": "let-me-in"}).json()
    assert got["owner"] == ann["id"]
    assert got["status"] == "draft"


def test_headers_in_rules(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/api/collections/posts/records/{world['post']}"
    assert client.get(url).status_code == 404
    assert client.get(url, headers={"X-Api-Key": "wrong"}).status_code == 404
    r = client.get(url, headers={"x-api-key": "let-me-in"})
    assert r.status_code == 200
    assert r.json()["id"] == world["post"]


def test_manage_rule_lets_an_admin_change_protected_fields(
    client: TestClient, world: dict[str, Any]
) -> None:
    admin, ann = world["admin"], world["ann"]
    url = f"/api/collections/users/records/{ann['id']}"
    body = {
        "email": "ann2@example.com",
        "verified": True,
        "password": "new-pass-123",
        "passwordConfirm": "new-pass-123",
    }
    r = client.patch(url, json=body, headers=admin["h"])
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True
    assert r.json()["email"] == "ann2@example.com"
    login = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "ann2@example.com", "password": "new-pass-123"},
    )
    assert login.status_code == 200, login.text
    # the password change killed ann's old token
    assert client.post("/api/collections/users/auth-refresh", headers=ann["h"]).status_code == 401


def test_without_manage_access_protected_fields_stay(
    client: TestClient, world: dict[str, Any]
) -> None:
    ann, bob = world["ann"], world["bob"]
    own = f"/api/collections/users/records/{ann['id']}"
    r = client.patch(own, json={"verified": True}, headers=ann["h"])
    assert r.status_code == 400
    assert "verified" in r.json()["data"]
    r = client.patch(own, json={"email": "x@example.com"}, headers=ann["h"])
    assert r.status_code == 400
    assert "email" in r.json()["data"]
    r = client.patch(
        own,
        json={"password": "new-pass-123", "passwordConfirm": "new-pass-123"},
        headers=ann["h"],
    )
    assert r.status_code == 400
    assert "oldPassword" in r.json()["data"]
    # bob may not even update ann (updateRule), so he gets a 404 whatever he sends
    r = client.patch(own, json={"verified": True}, headers=bob["h"])
    assert r.status_code == 404
    got = client.get(own, headers=ann["h"]).json()
    assert got["verified"] is False
    assert got["email"] == "ann@example.com"


def test_manage_rule_on_create(client: TestClient, world: dict[str, Any]) -> None:
    body = {"email": "v@example.com", "password": PW, "passwordConfirm": PW, "verified": True}
    r = client.post("/api/collections/users/records", json=body, headers=world["ann"]["h"])
    assert r.status_code == 400
    assert "verified" in r.json()["data"]
    # nothing was created by the refused attempt
    r = client.post("/api/collections/users/records", json=body, headers=world["admin"]["h"])
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True


def test_an_email_change_by_a_manager_ends_the_users_sessions(
    client: TestClient, world: dict[str, Any]
) -> None:
    ann = world["ann"]
    r = client.patch(
        f"/api/collections/users/records/{ann['id']}",
        json={"email": "ann3@example.com"},
        headers=world["admin"]["h"],
    )
    assert r.status_code == 200, r.text
    assert client.post("/api/collections/users/auth-refresh", headers=ann["h"]).status_code == 401
