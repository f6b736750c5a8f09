"""Rate limits through HTTP, on SQLite and PostgreSQL: the headers on admitted and refused
requests (the hot read path and Starlette routes alike), guests counted per address and
users per record (an office NAT), superusers exempt, and `/api/settings` round trips.

Clients are told apart by X-Forwarded-For from a trusted proxy (127.0.0.1), the way a
deployment behind a proxy tells them apart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.ratelimit.rules import DEFAULT_RULES
from shipyard.settings import SettingsError, load_settings
from tests.helpers.servers import SUPERUSER

H = dict[str, str]
RULES = [
    {"label": "posts:list", "audience": "", "duration": 3600, "maxRequests": 3},
    {"label": "*:create", "audience": "", "duration": 3600, "maxRequests": 2},
]
TOO_MANY = {"status": 429, "message": "Too Many Requests.", "data": {}}


def open_client(tmp_path: Path, database_url: str, **overrides: Any) -> TestClient:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        trusted_proxies="127.0.0.1",
        **overrides,
    )
    return TestClient(create_app(settings), client=("127.0.0.1", 50000))


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    """Rules of this module (left on: the default), a public `posts` and `tags`, a `users`
    auth collection anyone may sign up to; the superuser's headers."""
    with open_client(tmp_path, database_url, ratelimit_rules=json.dumps(RULES)) as c:
        yield c, setup(c)


def setup(c: TestClient) -> H:
    c.portal.call(superusers.create, c.app.state.services, *SUPERUSER)  # type: ignore[attr-defined, union-attr]
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    su = {"Authorization": r.json()["token"]}
    for name in ("posts", "tags"):
        body = {"name": name, "listRule": "", "viewRule": "", "createRule": "",
                "fields": [{"name": "title", "type": "text"}]}  # fmt: skip
        assert c.post("/api/collections", json=body, headers=su).status_code == 200
    users = {"name": "users", "type": "auth", "createRule": "", "listRule": "", "viewRule": ""}
    assert c.post("/api/collections", json=users, headers=su).status_code == 200
    return su


def at(ip: str, **headers: str) -> H:
    return {"X-Forwarded-For": ip, **headers}


def user(c: TestClient, email: str) -> H:
    body = {"email": email, "password": "password-123", "passwordConfirm": "password-123"}
    assert (
        c.post("/api/collections/users/records", json=body, headers=at("198.51.100.1")).status_code
        == 200
    )
    r = c.post(
        "/api/collections/users/auth-with-password",
        json={"identity": email, "password": "password-123"},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["token"]}


def reads(c: TestClient, n: int, headers: H) -> list[int]:
    return [c.get("/api/collections/posts/records", headers=headers).status_code for _ in range(n)]


def test_headers_on_the_hot_read_path(app: tuple[TestClient, H]) -> None:
    c, _ = app
    browser = at("203.0.113.5", Origin="https://app.example.com")
    got = [c.get("/api/collections/posts/records", headers=browser) for _ in range(4)]
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    for r, left in zip(got, (2, 1, 0, 0), strict=True):
        assert r.headers["ratelimit-policy"] == '"posts:list";q=3;w=3600'
        assert r.headers["ratelimit"] == f'"posts:list";r={left};t=1200'
        assert r.headers["x-request-id"]  # the gateway's own headers stay
        assert r.headers["access-control-allow-origin"]
    assert "retry-after" not in got[0].headers
    assert got[3].json() == TOO_MANY
    assert got[3].headers["retry-after"] == "1200"
    assert got[3].headers["content-type"] == "application/json"
    # another address has its own budget
    assert c.get("/api/collections/posts/records", headers=at("203.0.113.6")).status_code == 200
    # a record of the collection is `posts:view`: no rule, no headers
    r = c.get("/api/collections/posts/records/nosuchrecord", headers=at("203.0.113.5"))
    assert r.status_code == 404
    assert "ratelimit" not in r.headers
    assert "ratelimit" not in c.get("/api/health").headers


def test_headers_on_starlette_routes_and_per_collection_wildcards(
    app: tuple[TestClient, H],
) -> None:
    c, _ = app
    guest = at("203.0.113.7")

    def create(collection: str) -> Any:
        return c.post(f"/api/collections/{collection}/records", json={"title": "x"}, headers=guest)

    got = [create("posts") for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert got[0].headers["ratelimit"] == '"*:create";r=1;t=1800'
    assert got[2].json() == TOO_MANY
    assert got[2].headers["retry-after"] == "1800"
    # `*:create` counts each collection apart, as PocketBase does
    assert [create("tags").status_code for _ in range(3)] == [200, 200, 429]
    # the refused creates wrote nothing
    assert (
        c.get("/api/collections/posts/records", headers=at("203.0.113.8")).json()["totalItems"] == 2
    )
    metrics = c.get("/metrics").text
    assert 'shipyard_ratelimit_rejections_total{label="*:create"} 2' in metrics


def test_users_behind_one_address_are_counted_apart(app: tuple[TestClient, H]) -> None:
    c, _ = app
    ann, bob = user(c, "ann@example.com"), user(c, "bob@example.com")
    office = "192.0.2.10"
    assert reads(c, 4, at(office, **ann)) == [200, 200, 200, 429]
    assert reads(c, 4, at(office, **bob)) == [200, 200, 200, 429]
    assert reads(c, 4, at(office)) == [200, 200, 200, 429]  # the office's guests
    # a user is the same user from anywhere: a new address gives no new budget
    assert reads(c, 1, at("192.0.2.99", **ann)) == [429]
    # an invalid token is a guest (as in PocketBase), counted by its address
    assert reads(c, 1, at(office, Authorization="Bearer nope")) == [429]
    assert reads(c, 1, at("192.0.2.11", Authorization="Bearer nope")) == [200]


def test_superusers_are_exempt_unless_settings_say_otherwise(app: tuple[TestClient, H]) -> None:
    c, su = app
    got = [
        c.get("/api/collections/posts/records", headers=at("192.0.2.20", **su)) for _ in range(5)
    ]
    assert {r.status_code for r in got} == {200}
    assert "ratelimit" not in got[0].headers
    r = c.patch("/api/settings", json={"rateLimits": {"exemptSuperusers": False}}, headers=su)
    assert r.status_code == 200, r.text
    assert reads(c, 4, at("192.0.2.20", **su)) == [200, 200, 200, 429]
    # they can still turn it back (settings are not under a rule here)
    r = c.patch("/api/settings", json={"rateLimits": {"exemptSuperusers": True}}, headers=su)
    assert r.status_code == 200


def test_settings_round_trip(tmp_path: Path, database_url: str) -> None:
    with open_client(tmp_path, database_url) as c:
        su = setup(c)
        doc = c.get("/api/settings", headers=su).json()
        # on by default, with the default rules
        assert doc["rateLimits"] == {
            "rules": DEFAULT_RULES,
            "excludedIPs": [],
            "enabled": True,
            "exemptSuperusers": True,
        }
        assert not any(k.startswith("rateLimits.") for k in doc["readOnly"])
        assert c.get("/api/health", headers=at("192.0.2.1")).headers["ratelimit-policy"] == (
            '"/api/";q=300;w=10'
        )
        rules = [{"label": "GET /api/health", "maxRequests": 1, "duration": 60}]
        r = c.patch("/api/settings", json={"rateLimits": {"rules": rules}}, headers=su)
        assert r.status_code == 200, r.text
        assert r.json()["rateLimits"]["rules"] == [
            {"label": "GET /api/health", "audience": "", "duration": 60, "maxRequests": 1}
        ]
        # in effect at once, and sent back whole it changes nothing
        assert [c.get("/api/health", headers=at("192.0.2.2")).status_code for _ in range(2)] == [
            200,
            429,
        ]
        whole = c.get("/api/settings", headers=su).json()
        assert c.patch("/api/settings", json=whole, headers=su).json() == whole
        # excluded addresses are never limited
        r = c.patch(
            "/api/settings", json={"rateLimits": {"excludedIPs": ["192.0.2.0/28"]}}, headers=su
        )
        assert r.status_code == 200, r.text
        assert c.get("/api/health", headers=at("192.0.2.2")).status_code == 200
        assert "ratelimit" not in c.get("/api/health", headers=at("192.0.2.2")).headers
        assert c.get("/api/health", headers=at("192.0.2.200")).status_code == 200
        assert c.get("/api/health", headers=at("192.0.2.200")).status_code == 429
        # off: no rule applies, no headers
        r = c.patch("/api/settings", json={"rateLimits": {"enabled": False}}, headers=su)
        assert r.status_code == 200
        assert "ratelimit" not in c.get("/api/health", headers=at("192.0.2.200")).headers
        # PocketBase's checks: rules are required while enabled
        r = c.patch(
            "/api/settings", json={"rateLimits": {"enabled": True, "rules": []}}, headers=su
        )
        assert r.status_code == 400
        assert r.json()["data"] == {
            "rateLimits": {"rules": {"code": "validation_required", "message": "Cannot be blank."}}
        }
        r = c.patch("/api/settings", json={"rateLimits": {"excludedIPs": ["x", ""]}}, headers=su)
        assert r.json()["data"] == {
            "rateLimits": {
                "excludedIPs": {
                    "0": {
                        "code": "validation_invlaid_ip_or_subnet",
                        "message": "Invalid IP or CIDR subnet.",
                    },
                    "1": {"code": "validation_required", "message": "Cannot be blank."},
                }
            }
        }
        # forgetting the stored value goes back to the defaults (and the stored state stays)
        r = c.patch("/api/settings", json={"rateLimits": None}, headers=su)
        assert r.json()["rateLimits"]["rules"] == DEFAULT_RULES
        assert r.json()["rateLimits"]["enabled"] is True


def test_start_up_settings_give_the_defaults_and_lock_fields(
    tmp_path: Path, database_url: str
) -> None:
    toml = tmp_path / "shipyard.toml"
    toml.write_text(
        'ratelimit_rules = [{label = "GET /api/health", duration = 60, maxRequests = 1}]\n'
        'ratelimit_excluded_ips = "10.0.0.0/8"\n'
    )
    settings = load_settings(
        env={"SHIPYARD_RATELIMIT_EXEMPT_SUPERUSERS": "false"},
        toml_path=toml,
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
    )
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as c:
        su = setup(c)
        doc = c.get("/api/settings", headers=su).json()
        assert doc["rateLimits"] == {
            "rules": [
                {"label": "GET /api/health", "audience": "", "duration": 60, "maxRequests": 1}
            ],
            "excludedIPs": ["10.0.0.0/8"],
            "enabled": True,
            "exemptSuperusers": False,
        }
        assert doc["readOnly"]["rateLimits.rules"] == f"ratelimit_rules in {toml}"
        assert (
            doc["readOnly"]["rateLimits.exemptSuperusers"] == "SHIPYARD_RATELIMIT_EXEMPT_SUPERUSERS"
        )
        r = c.patch("/api/settings", json={"rateLimits": {"rules": RULES}}, headers=su)
        assert r.status_code == 400
        assert r.json()["data"]["rateLimits"]["rules"]["code"] == "validation_read_only"
        assert [c.get("/api/health").status_code for _ in range(2)] == [200, 429]


def test_bad_start_up_rules_stop_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SHIPYARD_RATELIMIT_EXCLUDED_IPS"):
        load_settings(env={"SHIPYARD_RATELIMIT_EXCLUDED_IPS": "nope"})
    bad = load_settings(
        env={"SHIPYARD_RATELIMIT_RULES": '[{"label": "/api/", "duration": 0, "maxRequests": 1}]'},
        data_dir=str(tmp_path / "data"),
    )
    refused = pytest.raises(SettingsError, match=r"SHIPYARD_RATELIMIT_RULES: .*validation_required")
    with refused, TestClient(create_app(bad)):  # start-up (entering the client) raises
        pass
