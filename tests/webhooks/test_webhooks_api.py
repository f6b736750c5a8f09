"""`/api/webhooks`: subscriptions over HTTP — superusers only, PocketBase-shaped 400s, the
secret shown once, and destinations that could reach internal services refused (SSRF).
On SQLite and PostgreSQL. Deliveries themselves are in tests/webhooks/test_webhooks.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from starlette.testclient import TestClient

from shipyard.kernel.errors import ApiError
from shipyard.settings import Settings, load_settings

H = dict[str, str]
GOOD_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, base64


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # loopback by address only: `localhost` and 127.0.0.1 pass, every other private range not
    return load_settings(
        env={"SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1"},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
    )


@pytest.fixture
def posts(client: TestClient, su: H) -> dict[str, Any]:
    r = client.post(
        "/api/collections",
        json={"name": "posts", "fields": [{"name": "title", "type": "text"}]},
        headers=su,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _hook(**over: Any) -> dict[str, Any]:
    return {"name": "h1", "collection": "posts", "url": "http://127.0.0.1:9/hook", **over}


def _user_headers(client: TestClient, su: H) -> H:
    r = client.post(
        "/api/collections",
        json={"name": "users", "type": "auth", "createRule": "", "fields": []},
        headers=su,
    )
    assert r.status_code == 200, r.text
    pw = "user-pass-123"
    r = client.post(
        "/api/collections/users/records",
        json={"email": "u@example.com", "password": pw, "passwordConfirm": pw},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "u@example.com", "password": pw},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


def _assert_field_error(r: Any, field: str, case: str) -> dict[str, Any]:
    assert r.status_code == 400, f"{case}: {r.status_code} {r.text}"
    body = r.json()
    assert set(body) == {"status", "message", "data"}, case
    assert body["status"] == 400, case
    assert body["message"], case
    assert field in body["data"], f"{case}: {body}"
    assert body["data"][field]["code"].startswith("validation_"), case
    assert body["data"][field]["message"], case
    return dict(body)


def test_crud_as_superuser(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    r = client.post("/api/webhooks", json=_hook(events=["update", "create"]), headers=su)
    assert r.status_code == 200, r.text
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    StandardWebhook(secret)  # a key the independent library accepts
    assert created["events"] == ["create", "update"]  # normalised order
    assert created["collection"] == "posts"
    assert created["active"] is True
    assert created["secretHint"]
    assert created["secretHint"].endswith(secret[-4:])
    assert secret not in created["secretHint"]
    wid = created["id"]

    listing = client.get("/api/webhooks", headers=su)
    assert listing.status_code == 200
    assert listing.json()["totalItems"] == 1
    assert [w["id"] for w in listing.json()["items"]] == [wid]
    one = client.get(f"/api/webhooks/{wid}", headers=su)
    assert one.status_code == 200
    for shown in (listing.json()["items"][0], one.json()):
        assert "secret" not in shown
        assert secret not in str(shown)
        assert shown["secretHint"] == created["secretHint"]

    # the collection may be given by id; it is stored by name
    r = client.patch(
        f"/api/webhooks/{wid}",
        json={"name": "renamed", "collection": posts["id"], "active": False},
        headers=su,
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert "secret" not in patched
    assert (patched["name"], patched["collection"], patched["active"]) == (
        "renamed", "posts", False,
    )  # fmt: skip
    assert patched["events"] == ["create", "update"]
    assert patched["url"] == created["url"]

    # setting the secret answers it once; an empty secret generates a new one
    r = client.patch(f"/api/webhooks/{wid}", json={"secret": GOOD_SECRET}, headers=su)
    assert r.status_code == 200
    assert r.json()["secret"] == GOOD_SECRET
    r = client.patch(f"/api/webhooks/{wid}", json={"secret": ""}, headers=su)
    assert r.status_code == 200
    regenerated = r.json()["secret"]
    assert regenerated.startswith("whsec_")
    assert regenerated not in (GOOD_SECRET, secret)
    assert "secret" not in client.get(f"/api/webhooks/{wid}", headers=su).json()

    r = client.post("/api/webhooks", json=_hook(name="all", collection="*"), headers=su)
    assert r.status_code == 200
    assert r.json()["collection"] == "*"
    assert r.json()["events"] == ["create", "update", "delete"]  # all by default

    assert client.delete(f"/api/webhooks/{wid}", headers=su).status_code == 204
    assert client.get(f"/api/webhooks/{wid}", headers=su).status_code == 404
    assert client.delete(f"/api/webhooks/{wid}", headers=su).status_code == 404
    assert [w["name"] for w in client.get("/api/webhooks", headers=su).json()["items"]] == ["all"]


def test_superusers_only(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    r = client.post("/api/webhooks", json=_hook(), headers=su)
    assert r.status_code == 200
    wid = r.json()["id"]
    user = _user_headers(client, su)
    calls = [
        ("GET", "/api/webhooks", None),
        ("POST", "/api/webhooks", _hook(name="other")),
        ("GET", f"/api/webhooks/{wid}", None),
        ("PATCH", f"/api/webhooks/{wid}", {"active": False}),
        ("DELETE", f"/api/webhooks/{wid}", None),
        ("GET", f"/api/webhooks/{wid}/deliveries", None),
    ]
    for method, url, body in calls:
        anon = client.request(method, url, json=body)
        assert anon.status_code == 401, (method, url, anon.text)
        assert set(anon.json()) == {"status", "message", "data"}
        bad = client.request(method, url, json=body, headers={"Authorization": "nope"})
        assert bad.status_code == 401, (method, url)
        normal = client.request(method, url, json=body, headers=user)
        assert normal.status_code == 403, (method, url, normal.text)
        assert "secret" not in normal.text
    # nothing changed
    items = client.get("/api/webhooks", headers=su).json()["items"]
    assert [(w["id"], w["active"]) for w in items] == [(wid, True)]


def test_validation_400s(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("ftp scheme", _hook(url="ftp://127.0.0.1/x"), "url"),
        ("javascript scheme", _hook(url="javascript:alert(1)"), "url"),
        ("no scheme", _hook(url="127.0.0.1:8080/hook"), "url"),
        ("no host", _hook(url="http:///hook"), "url"),
        ("bad port", _hook(url="http://127.0.0.1:99999/"), "url"),
        ("url not a string", _hook(url=["http://127.0.0.1/"]), "url"),
        ("url missing", {"name": "x", "collection": "posts"}, "url"),
        ("unresolvable host", _hook(url="http://no-such-host.invalid/"), "url"),
        ("unknown collection", _hook(collection="nope"), "collection"),
        ("collection missing", {"name": "x", "url": "http://127.0.0.1/"}, "collection"),
        ("empty events", _hook(events=[]), "events"),
        ("unknown event", _hook(events=["create", "publish"]), "events"),
        ("events not a list", _hook(events="create"), "events"),
        ("name missing", {"collection": "posts", "url": "http://127.0.0.1/"}, "name"),
        ("name blank", _hook(name="   "), "name"),
        ("name too long", _hook(name="n" * 101), "name"),
        ("active not a bool", _hook(active="yes"), "active"),
        ("unknown field", _hook(owner="me"), "owner"),
        ("secretEnv over HTTP", _hook(secretEnv="X"), "secretEnv"),
    ]
    for case, body, field in cases:
        r = client.post("/api/webhooks", json=body, headers=su)
        _assert_field_error(r, field, case)
    assert client.get("/api/webhooks", headers=su).json()["totalItems"] == 0

    r = client.post("/api/webhooks", json=_hook(), headers=su)
    assert r.status_code == 200
    wid = r.json()["id"]
    for case, body, field in cases:
        if case.endswith("missing"):
            continue  # a PATCH keeps what it does not name
        r = client.patch(f"/api/webhooks/{wid}", json=body, headers=su)
        _assert_field_error(r, field, "PATCH " + case)
    assert client.get(f"/api/webhooks/{wid}", headers=su).json()["name"] == "h1"


def test_name_taken(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    assert client.post("/api/webhooks", json=_hook(), headers=su).status_code == 200
    r = client.post("/api/webhooks", json=_hook(), headers=su)
    assert _assert_field_error(r, "name", "taken")["data"]["name"]["code"] == (
        "validation_not_unique"
    )
    r = client.post("/api/webhooks", json=_hook(name="h2"), headers=su)
    assert r.status_code == 200
    r = client.patch(f"/api/webhooks/{r.json()['id']}", json={"name": " h1 "}, headers=su)
    _assert_field_error(r, "name", "taken by PATCH")
    assert client.get("/api/webhooks", headers=su).json()["totalItems"] == 2


def test_concurrent_creates_with_one_name(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    """Both pass the name check, one insert loses: a 400, not a 500."""
    svc = client.app.state.services  # type: ignore[attr-defined]

    async def both() -> tuple[Any, ...]:
        return await asyncio.gather(
            svc.webhooks.create(_hook(name="same")),
            svc.webhooks.create(_hook(name="same", url="http://localhost:9/")),
            return_exceptions=True,
        )

    results = client.portal.call(both)  # type: ignore[union-attr]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], ApiError), repr(errors[0])
    assert errors[0].status == 400, repr(errors[0])
    assert "name" in (errors[0].data or {})
    assert client.get("/api/webhooks", headers=su).json()["totalItems"] == 1


def test_body_not_an_object(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    r = client.post("/api/webhooks", json=_hook(), headers=su)
    wid = r.json()["id"]
    for raw in (b"[1, 2]", b'"text"', b"42", b"{not json", b"null"):
        for method, url in (("POST", "/api/webhooks"), ("PATCH", f"/api/webhooks/{wid}")):
            r = client.request(
                method, url, content=raw, headers={**su, "content-type": "application/json"}
            )
            assert r.status_code == 400, (method, raw, r.text)
            body = r.json()
            assert set(body) == {"status", "message", "data"}
            assert body["status"] == 400


def test_secret_rules(
    client: TestClient, su: H, posts: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.post("/api/webhooks", json=_hook(secret=GOOD_SECRET), headers=su)
    assert r.status_code == 200
    assert r.json()["secret"] == GOOD_SECRET
    bad = [
        ("not a string", 12345678901234567890),
        ("too short", "whsec_" + "c2hvcnQ="),  # 5 bytes
        ("too long", "whsec_" + "QUFB" * 30),  # 90 bytes
        ("no whsec_ prefix", "a-password-like-secret-of-some-length"),
        ("not base64", "whsec_" + "not*base64*at*all*not*base64*at*all"),
        ("truncated base64", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwQ"),
    ]
    for i, (case, secret) in enumerate(bad):
        r = client.post("/api/webhooks", json=_hook(name=f"s{i}", secret=secret), headers=su)
        _assert_field_error(r, "secret", case)
    # generated secrets differ and are never logged, listed or shown again
    made = [
        client.post("/api/webhooks", json=_hook(name=f"g{i}"), headers=su).json()["secret"]
        for i in range(3)
    ]
    assert len(set(made)) == 3
    listing = client.get("/api/webhooks", headers=su).text
    for s in [*made, GOOD_SECRET]:
        assert s not in listing
        assert s not in caplog.text
        assert s.removeprefix("whsec_") not in caplog.text


SSRF_URLS = [
    ("private 10/8", "http://10.0.0.1/hook"),
    ("private 192.168/16", "http://192.168.1.20:8080/"),
    ("private 172.16/12", "https://172.16.5.4/"),
    ("loopback not on the list", "http://127.0.0.2/"),
    ("loopback in decimal", "http://2130706434/"),
    ("loopback in hex", "http://0x7f.0.0.2/"),
    ("link-local", "http://169.254.10.10/"),
    ("cloud metadata", "http://169.254.169.254/latest/meta-data/"),
    ("unspecified 0.0.0.0", "http://0.0.0.0:8080/"),
    ("CGNAT", "http://100.64.0.1/"),
    ("IPv6 loopback", "http://[::1]:8080/"),
    ("IPv6 unspecified", "http://[::]/"),
    ("IPv6 unique local", "http://[fd00::1]/"),
    ("IPv6 link-local", "http://[fe80::1]/"),
    ("IPv4-mapped loopback", "http://[::ffff:127.0.0.2]/"),
    ("IPv4-mapped metadata", "http://[::ffff:169.254.169.254]/"),
    ("IPv4-mapped private", "http://[::ffff:10.0.0.1]/"),
    ("IPv4-compatible loopback", "http://[::7f00:1]/"),
    ("NAT64 of metadata", "http://[64:ff9b::a9fe:a9fe]/"),
    ("NAT64 of private", "http://[64:ff9b::a00:1]/"),
    ("6to4 of loopback", "http://[2002:7f00:1::1]/"),
    ("IPv6 site-local", "http://[fec0::1]/"),
    ("multicast", "http://224.0.0.1/"),
    ("broadcast", "http://255.255.255.255/"),
]


def test_ssrf_refused_at_create(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    for case, url in SSRF_URLS:
        r = client.post("/api/webhooks", json=_hook(url=url), headers=su)
        body = _assert_field_error(r, "url", case)
        assert body["data"]["url"]["code"] == "validation_url_refused", case
    for case, url in [
        ("credentials", "http://user:pw@127.0.0.1/hook"),
        ("user only", "https://token@127.0.0.1/hook"),
    ]:
        r = client.post("/api/webhooks", json=_hook(url=url), headers=su)
        body = _assert_field_error(r, "url", case)
        assert "credentials" in body["data"]["url"]["message"], case
        assert "pw" not in r.text.replace("password", "")
    assert client.get("/api/webhooks", headers=su).json()["totalItems"] == 0
    # the allow-list names 127.0.0.1: that address, and a host resolving only to it, pass
    for i, url in enumerate(["http://127.0.0.1:8080/h", "http://localhost:8080/h"]):
        r = client.post("/api/webhooks", json=_hook(name=f"ok{i}", url=url), headers=su)
        assert r.status_code == 200, (url, r.text)
    # and a PATCH cannot move a subscription somewhere refused
    wid = r.json()["id"]
    r = client.patch(f"/api/webhooks/{wid}", json={"url": "http://169.254.169.254/"}, headers=su)
    _assert_field_error(r, "url", "PATCH to metadata")
    assert client.get(f"/api/webhooks/{wid}", headers=su).json()["url"] == url


def test_deliveries_endpoint_inputs(client: TestClient, su: H, posts: dict[str, Any]) -> None:
    r = client.post("/api/webhooks", json=_hook(), headers=su)
    wid = r.json()["id"]
    empty = client.get(f"/api/webhooks/{wid}/deliveries", headers=su)
    assert empty.status_code == 200
    assert empty.json() == {"page": 1, "perPage": 30, "totalItems": 0, "totalPages": 0, "items": []}
    for q in ("perPage=0", "perPage=501", "page=0", "page=x", "perPage=1.5"):
        r = client.get(f"/api/webhooks/{wid}/deliveries?{q}", headers=su)
        assert r.status_code == 400, (q, r.text)
        assert set(r.json()) == {"status", "message", "data"}
    assert client.get("/api/webhooks/nope/deliveries", headers=su).status_code == 404
    assert client.get("/api/webhooks/nope", headers=su).status_code == 404
    assert client.patch("/api/webhooks/nope", json={}, headers=su).status_code == 404
