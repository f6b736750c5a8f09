"""The HTTP→HTTPS listener's answers (the application itself; tests/e2e/test_https.py runs
it as `shipyard serve --redirect-http` does)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from shipyard.http.redirect import Redirect


@pytest.fixture
def to_8443() -> TestClient:
    return TestClient(Redirect(8443), follow_redirects=False)


def test_same_host_path_and_query_on_https(to_8443: TestClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        r = to_8443.request(
            method,
            "/api/collections/posts/records?filter=a%3D1&page=2",
            headers={"Host": "api.example.com:8080"},
        )
        assert r.status_code == 308, method  # keeps the method and the body
        location = "https://api.example.com:8443/api/collections/posts/records?filter=a%3D1&page=2"
        assert r.headers["location"] == location
        assert r.headers["cache-control"] == "no-store"
    r = to_8443.get("/a%20b//c", headers={"Host": "[::1]:80"})
    assert r.headers["location"] == "https://[::1]:8443/a%20b//c"


def test_the_default_port_is_left_out() -> None:
    c = TestClient(Redirect(443), follow_redirects=False)
    r = c.get("/api/health", headers={"Host": "api.example.com"})
    assert r.headers["location"] == "https://api.example.com/api/health"


@pytest.mark.parametrize("host", ["", "evil.com/x", "a b", "user@evil.com", "evil.com:80:80"])
def test_a_host_that_is_no_plain_name_gets_400(to_8443: TestClient, host: str) -> None:
    r = to_8443.get("/", headers={"Host": host})
    assert r.status_code == 400
    assert "location" not in r.headers
