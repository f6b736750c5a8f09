"""CORS: a browser app on another origin can call every route, the read hot path included,
and can read error responses; preflights get 204. The exact headers are PocketBase 0.40's
(recorded from the binary, and compared with it in tests/e2e/test_cors_pocketbase.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings

ORIGIN = "http://localhost:5173"
METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"


def cors_of(r: httpx.Response) -> dict[str, str]:
    """The CORS headers of a response, repeated ones (Vary) joined in order."""
    out: dict[str, list[str]] = {}
    for key, value in r.headers.multi_items():
        if key.startswith("access-control-") or key == "vary":
            out.setdefault(key, []).append(value)
    return {k: ", ".join(v) for k, v in out.items()}


@pytest.fixture
def posts(client: TestClient, su: dict[str, str]) -> str:
    r = client.post(
        "/api/collections",
        json={
            "name": "posts",
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "fields": [{"name": "title", "type": "text", "required": True}],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/collections/posts/records", json={"title": "hello"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


PATHS = [
    "/api/collections/posts/records",
    "/api/collections/posts/records/abc",
    "/api/collections/users/auth-with-password",
    "/api/collections",
    "/api/health",
    "/api/no/such/route",
    "/not-api",
]


@pytest.mark.parametrize("path", PATHS)
def test_preflight_is_answered_on_every_path(client: TestClient, path: str) -> None:
    r = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code == 204
    assert r.content == b""
    assert cors_of(r) == {
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "access-control-allow-origin": "*",
        "access-control-allow-methods": METHODS,
        "access-control-allow-headers": "content-type,authorization",
    }
    assert "access-control-allow-credentials" not in r.headers
    assert "access-control-max-age" not in r.headers


def test_preflight_without_requested_headers_and_options_without_origin(
    client: TestClient,
) -> None:
    r = client.options(
        "/api/collections/posts/records",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 204
    assert cors_of(r) == {
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "access-control-allow-origin": "*",
        "access-control-allow-methods": METHODS,
    }
    r = client.options("/api/collections/posts/records")
    assert r.status_code == 204
    assert cors_of(r) == {"vary": "Origin"}


def test_hot_read_path_carries_cors_on_success_errors_and_cache_hits(
    client: TestClient, posts: str, backend: str
) -> None:
    h = {"Origin": ORIGIN}
    expected = {"vary": "Origin, Authorization", "access-control-allow-origin": "*"}
    for _ in range(2):  # a miss, then a cache hit
        r = client.get("/api/collections/posts/records", headers=h)
        assert r.status_code == 200
        assert r.json()["totalItems"] == 1
        assert cors_of(r) == expected
    # PostgreSQL caches only with Redis (caching.md); the headers come from the same code
    assert r.headers["x-shipyard-cache"] == ("hit" if backend == "sqlite" else "bypass")
    r = client.get(f"/api/collections/posts/records/{posts}", headers=h)
    assert r.status_code == 200
    assert cors_of(r) == expected
    # errors: a browser app must be able to read them
    r = client.get("/api/collections/posts/records/nosuchrecord123", headers=h)
    assert r.status_code == 404
    assert cors_of(r) == {
        "vary": "Origin",
        "access-control-allow-origin": "*",
    }
    r = client.get("/api/collections/posts/records?filter=(((", headers=h)
    assert r.status_code == 400
    assert r.json()["status"] == 400
    assert cors_of(r)["access-control-allow-origin"] == "*"
    r = client.get("/api/collections/nosuch/records", headers=h)
    assert r.status_code == 404
    assert cors_of(r)["access-control-allow-origin"] == "*"


def test_starlette_routes_carry_cors_on_success_and_errors(
    client: TestClient, su: dict[str, str], posts: str
) -> None:
    h = {"Origin": ORIGIN}
    cases = [
        ("POST", "/api/collections/posts/records", {"title": "x"}, {}, 200),
        ("POST", "/api/collections/posts/records", {}, {}, 400),  # title is required
        ("PATCH", f"/api/collections/posts/records/{posts}", {"title": "y"}, {}, 403),
        ("DELETE", f"/api/collections/posts/records/{posts}", None, {}, 403),
        ("GET", "/api/collections", None, {}, 401),
        ("GET", "/api/collections", None, su, 200),
        ("GET", "/api/health", None, {}, 200),
        ("GET", "/api/no/such/route", None, {}, 404),
        ("PUT", "/api/health", None, {}, 405),
        (
            "POST",
            "/api/collections/_superusers/auth-with-password",
            {"identity": "a@b.co", "password": "wrong-password"},
            {},
            400,
        ),
    ]
    for method, path, body, auth, status in cases:
        r = client.request(method, path, json=body, headers={**h, **auth})
        assert r.status_code == status, (method, path, r.text)
        assert r.headers.get_list("access-control-allow-origin") == ["*"], (method, path)
        assert "Origin" in r.headers.get_list("vary"), (method, path)
        assert "access-control-allow-credentials" not in r.headers


def test_without_origin_only_vary_is_added(client: TestClient, posts: str) -> None:
    for path in ("/api/collections/posts/records", "/api/health"):
        r = client.get(path)
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert "Origin" in r.headers.get_list("vary")


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        cors_origins="https://app.example.com, http://localhost:5173",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_allowed_origins_are_a_setting(limited: TestClient) -> None:
    for origin in ("https://app.example.com", "http://localhost:5173"):
        r = limited.get("/api/health", headers={"Origin": origin})
        assert cors_of(r) == {"vary": "Origin", "access-control-allow-origin": origin}
        r = limited.get("/api/collections/nosuch/records", headers={"Origin": origin})
        assert r.status_code == 404
        assert cors_of(r) == {"vary": "Origin", "access-control-allow-origin": origin}
        r = limited.options(
            "/api/health",
            headers={"Origin": origin, "Access-Control-Request-Method": "PATCH"},
        )
        assert r.status_code == 204
        assert cors_of(r) == {
            "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            "access-control-allow-origin": origin,
            "access-control-allow-methods": METHODS,
        }
    # another origin (matching is exact, as PocketBase's): no grant, the preflight still 204
    for origin in ("https://evil.example.com", "https://APP.example.com"):
        r = limited.get("/api/health", headers={"Origin": origin})
        assert r.status_code == 200
        assert cors_of(r) == {"vary": "Origin"}
        r = limited.get("/api/collections/nosuch/records", headers={"Origin": origin})
        assert cors_of(r) == {"vary": "Origin"}
        r = limited.options(
            "/api/health",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        )
        assert r.status_code == 204
        assert cors_of(r) == {"vary": "Origin"}


def test_no_origins_turns_cross_origin_access_off(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, cors_origins=""
    )
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/health", headers={"Origin": ORIGIN})
        assert r.status_code == 200
        assert cors_of(r) == {"vary": "Origin"}


@pytest.fixture
def configured(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        cors_origins="https://app.example.com",
        cors_methods="GET, POST",
        cors_headers="Authorization, Content-Type",
        cors_expose_headers="X-Request-Id, ETag",
        cors_credentials=True,
        cors_max_age=600,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_methods_headers_credentials_max_age_and_exposed_headers_are_settings(
    configured: TestClient,
) -> None:
    app = {"Origin": "https://app.example.com"}
    r = configured.options(
        "/api/collections/posts/records",
        headers={
            **app,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-anything",
        },
    )
    assert r.status_code == 204
    assert cors_of(r) == {
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-methods": "GET,POST",
        "access-control-allow-credentials": "true",
        "access-control-max-age": "600",
        # the configured list, not what the preflight asked for
        "access-control-allow-headers": "Authorization,Content-Type",
    }
    # answers: the origin itself (never `*` with credentials), credentials, exposed headers
    granted = {
        "vary": "Origin",
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Request-Id,ETag",
    }
    for path in ("/api/health", "/api/collections/nosuch/records"):
        assert cors_of(configured.get(path, headers=app)) == granted
    # another origin gets nothing, credentials least of all
    other = {"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
    assert cors_of(configured.options("/api/health", headers=other)) == {"vary": "Origin"}
    assert cors_of(configured.get("/api/health", headers=other)) == {"vary": "Origin"}
