"""Security headers on every kind of response: the read hot path (misses, hits, errors), the
Starlette routes, preflights; HTML pages keep their own CSP and get the rest; HSTS only for
requests that arrived over HTTPS (directly, or through a trusted proxy); every header a
setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import pages as account_pages
from shipyard.http import openapi
from shipyard.settings import SettingsError, load_settings

API = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
NAMES = [*API, "strict-transport-security"]


def security_of(r: httpx.Response) -> dict[str, str]:
    """The security headers of a response; each must be there at most once."""
    out = {}
    for name in NAMES:
        values = r.headers.get_list(name)
        assert len(values) <= 1, (name, values)
        if values:
            out[name] = values[0]
    return out


@pytest.fixture
def posts(client: TestClient, su: dict[str, str]) -> str:
    body = {
        "name": "posts",
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "fields": [{"name": "title", "type": "text"}],
    }
    assert client.post("/api/collections", json=body, headers=su).status_code == 200
    r = client.post("/api/collections/posts/records", json={"title": "hello"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _requests(posts: str) -> list[tuple[str, str, int]]:
    return [
        ("GET", "/api/collections/posts/records", 200),  # hot path: a miss
        ("GET", "/api/collections/posts/records", 200),  # … then a hit (SQLite)
        ("GET", f"/api/collections/posts/records/{posts}", 200),
        ("GET", "/api/collections/posts/records/nosuchrecord123", 404),
        ("GET", "/api/collections/posts/records?filter=(((", 400),
        ("GET", "/api/collections/nosuch/records", 404),
        ("POST", "/api/collections/posts/records", 200),  # Starlette routes
        ("GET", "/api/collections", 401),
        ("GET", "/api/health", 200),
        ("GET", "/api/no/such/route", 404),
        ("PUT", "/api/health", 405),
        ("GET", "/api/openapi.json", 200),
        ("OPTIONS", "/api/collections/posts/records", 204),  # a preflight
        ("GET", "/api/docs/app/docs.js", 200),  # a static file
    ]


def test_every_api_response_carries_the_defaults_and_no_hsts_over_http(
    client: TestClient, posts: str
) -> None:
    for method, path, status in _requests(posts):
        json = {"title": "x"} if method == "POST" else None
        headers = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"}
        r = client.request(method, path, json=json, headers=headers)
        assert r.status_code == status, (method, path, r.text)
        assert security_of(r) == API, (method, path)


def test_https_requests_get_hsts(settings: Any, posts: str) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        for method, path, status in _requests(posts)[:10]:
            r = c.request(method, path, json={"title": "x"} if method == "POST" else None)
            assert r.status_code == status, (method, path)
            assert security_of(r) == {**API, "strict-transport-security": HSTS}, (method, path)


def test_hsts_through_a_trusted_proxy_only(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        trusted_proxies="10.0.0.0/8",
    )
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    app = create_app(settings)
    with TestClient(app, client=("10.0.0.2", 4711)) as proxied:
        r = proxied.get("/api/health", headers=forwarded)
        assert r.headers["strict-transport-security"] == HSTS
        r = proxied.get("/api/health")  # the proxy says nothing: plain HTTP
        assert "strict-transport-security" not in r.headers
    with TestClient(create_app(settings), client=("203.0.113.9", 4711)) as stranger:
        r = stranger.get("/api/health", headers=forwarded)  # anyone may write the header
        assert "strict-transport-security" not in r.headers


def test_html_pages_keep_their_own_csp_and_get_the_rest(client: TestClient) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200
    got = security_of(r)
    csp = openapi.DOCS_HEADERS["Content-Security-Policy"]
    assert got == {**API, "content-security-policy": csp}
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "style-src 'self' 'sha256-" in csp  # Swagger UI's one inline <style>, by its hash
    r = client.get("/_/")
    assert r.status_code == 200
    assert security_of(r) == {
        **API,
        "content-security-policy": account_pages.HEADERS["Content-Security-Policy"],
    }


def _app(database_url: str, tmp_path: Path, **overrides: Any) -> TestClient:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, **overrides
    )
    return TestClient(create_app(settings), base_url="https://testserver")


@pytest.mark.parametrize("backend", ["sqlite"])  # settings only: the same code on both
def test_each_header_is_a_setting(database_url: str, tmp_path: Path) -> None:
    custom = {
        "content_security_policy": "default-src 'self'",
        "referrer_policy": "strict-origin-when-cross-origin",
        "frame_options": "SAMEORIGIN",
        "cross_origin_resource_policy": "cross-origin",
        "cross_origin_opener_policy": "",
        "hsts_max_age": 63072000,
        "hsts_include_subdomains": False,
        "hsts_preload": True,
    }
    with _app(database_url, tmp_path, **custom) as c:
        r = c.get("/api/health")
        assert security_of(r) == {
            "content-security-policy": "default-src 'self'",
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
            "x-frame-options": "SAMEORIGIN",
            "cross-origin-resource-policy": "cross-origin",
            "strict-transport-security": "max-age=63072000; preload",
        }
    with _app(database_url, tmp_path, hsts_max_age=0) as c:
        assert "strict-transport-security" not in c.get("/api/health").headers
    with _app(database_url, tmp_path, security_headers=False) as c:
        assert security_of(c.get("/api/health")) == {}
        assert security_of(c.get("/api/collections/nosuch/records")) == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"referrer_policy": "sometimes"}, "SHIPYARD_REFERRER_POLICY: must be one of"),
        ({"frame_options": "ALLOW-FROM x"}, "SHIPYARD_FRAME_OPTIONS: must be one of"),
        ({"cross_origin_resource_policy": "x"}, "SHIPYARD_CROSS_ORIGIN_RESOURCE_POLICY"),
        ({"content_security_policy": "a\r\nX-Evil: 1"}, "printable ASCII, one line"),
        ({"hsts_max_age": -1}, "SHIPYARD_HSTS_MAX_AGE: must be 0"),
        ({"tls_min_version": "1.1"}, "SHIPYARD_TLS_MIN_VERSION: must be one of 1.2, 1.3"),
        ({"tls_cert": "/nonexistent.pem"}, "set both or neither"),
        ({"redirect_http_port": 8080}, "needs SHIPYARD_TLS_CERT or _SELF_SIGNED"),
        ({"redirect_http_port": 8090, "tls_self_signed": True}, "a port other than SHIPYARD_PORT"),
        (
            {"cors_credentials": True},
            "SHIPYARD_CORS_CREDENTIALS: needs listed SHIPYARD_CORS_ORIGINS",
        ),
        ({"cors_methods": "GET;POST"}, "SHIPYARD_CORS_METHODS: expected comma-separated"),
        ({"cors_max_age": -5}, "SHIPYARD_CORS_MAX_AGE: must be 0"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(env={}, **overrides)


@pytest.mark.parametrize("backend", ["sqlite"])  # the gateway's answer: the same on both
def test_a_rate_limited_answer_carries_them_too(database_url: str, tmp_path: Path) -> None:
    rules = '[{"label": "GET /api/health", "duration": 60, "maxRequests": 1}]'
    with _app(database_url, tmp_path, ratelimit_rules=rules) as c:
        assert c.get("/api/health").status_code == 200
        r = c.get("/api/health")
        assert r.status_code == 429
        assert security_of(r) == {**API, "strict-transport-security": HSTS}
