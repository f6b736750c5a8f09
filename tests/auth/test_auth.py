"""Superuser auth: auth-with-password, auth-refresh, token validity."""

from __future__ import annotations

import base64

import orjson
from starlette.testclient import TestClient

from tests.helpers.servers import SUPERUSER

URL = "/api/collections/_superusers"


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_auth_with_password_returns_pocketbase_shaped_token(client: TestClient) -> None:
    r = client.post(
        f"{URL}/auth-with-password", json={"identity": SUPERUSER[0], "password": SUPERUSER[1]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    claims = _claims(body["token"])
    assert claims["type"] == "auth"
    assert claims["collectionId"] == "pbc_3142635823"
    assert claims["id"] == body["record"]["id"]
    assert claims["exp"] > 0
    rec = body["record"]
    assert rec["email"] == SUPERUSER[0]
    assert rec["collectionName"] == "_superusers"
    assert "password" not in rec
    assert "tokenKey" not in rec


def test_wrong_password_and_missing_fields(client: TestClient) -> None:
    r = client.post(
        f"{URL}/auth-with-password", json={"identity": SUPERUSER[0], "password": "nope-nope"}
    )
    assert r.status_code == 400
    assert r.json()["message"] == "Failed to authenticate."
    r = client.post(
        f"{URL}/auth-with-password", json={"identity": "x@example.com", "password": "whatever1"}
    )
    assert r.status_code == 400
    r = client.post(f"{URL}/auth-with-password", json={})
    assert r.status_code == 400
    assert set(r.json()["data"]) == {"identity", "password"}


def test_refresh_and_password_change_invalidates(client: TestClient, su: dict[str, str]) -> None:
    r = client.post(f"{URL}/auth-refresh", headers=su)
    assert r.status_code == 200
    assert r.json()["token"]
    assert client.post(f"{URL}/auth-refresh").status_code == 401
    me = r.json()["record"]["id"]
    r = client.patch(
        f"{URL}/records/{me}",
        json={"password": "newpassword99", "passwordConfirm": "newpassword99"},
        headers=su,
    )
    assert r.status_code == 200, r.text
    assert client.post(f"{URL}/auth-refresh", headers=su).status_code == 401
    r = client.post(
        f"{URL}/auth-with-password", json={"identity": SUPERUSER[0], "password": "newpassword99"}
    )
    assert r.status_code == 200


def test_superusers_records_hide_secrets(client: TestClient, su: dict[str, str]) -> None:
    items = client.get(f"{URL}/records", headers=su).json()["items"]
    assert items
    assert all("password" not in i and "tokenKey" not in i for i in items)
    assert client.get(f"{URL}/records").status_code == 403


def test_health(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["message"] == "API is healthy."


def test_brute_force_is_limited_per_identity(client: TestClient) -> None:
    url = f"{URL}/auth-with-password"
    for _ in range(5):
        r = client.post(url, json={"identity": SUPERUSER[0], "password": "wrong-password"})
        assert r.status_code == 400
    r = client.post(url, json={"identity": SUPERUSER[0], "password": "wrong-password"})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 300
    assert r.json()["status"] == 429
    assert r.json()["data"]["retryAfter"] == int(r.headers["Retry-After"])
    # while locked, even the right password is refused: the lock does not leak which is right
    r = client.post(url, json={"identity": SUPERUSER[0].upper(), "password": SUPERUSER[1]})
    assert r.status_code == 429
    # another identity from the same address still gets its own answer
    r = client.post(url, json={"identity": "other@example.com", "password": "whatever1"})
    assert r.status_code == 400


def test_success_resets_identity_failures(client: TestClient) -> None:
    url = f"{URL}/auth-with-password"
    for _ in range(3):
        assert (
            client.post(url, json={"identity": SUPERUSER[0], "password": "bad-one"}).status_code
            == 400
        )
    assert (
        client.post(url, json={"identity": SUPERUSER[0], "password": SUPERUSER[1]}).status_code
        == 200
    )
    for _ in range(4):
        assert (
            client.post(url, json={"identity": SUPERUSER[0], "password": "bad-one"}).status_code
            == 400
        )
    assert (
        client.post(url, json={"identity": SUPERUSER[0], "password": SUPERUSER[1]}).status_code
        == 200
    )
