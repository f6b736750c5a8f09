"""Request limits checked by Shipyard itself: the URL (414) and the headers (431) in the
documented error shape, on the read hot path and on every other route; the settings that
hold them, and the server options they become."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.http.server import granian_options
from shipyard.settings import SettingsError, load_settings


@pytest.fixture
def small(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), max_url_length=512, max_header_size=2048
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(
    "path", ["/api/collections/posts/records", "/api/collections/posts/records/abc", "/api/health"]
)
def test_a_long_url_gets_414(small: TestClient, path: str) -> None:
    r = small.get(path + "?filter=" + "a" * 600)
    assert r.status_code == 414
    assert r.json() == {
        "status": 414,
        "message": "The request URL is too long (the limit is 512 bytes).",
        "data": {},
    }
    assert r.headers["x-request-id"]


def test_large_headers_get_431(small: TestClient) -> None:
    r = small.get("/api/health", headers={"X-Big": "a" * 3000})
    assert r.status_code == 431
    assert r.json() == {
        "status": 431,
        "message": "The request headers are too large (the limit is 2048 bytes).",
        "data": {},
    }


def test_many_small_headers_count_together(small: TestClient) -> None:
    headers = [(f"x-h{i}", "v" * 40) for i in range(60)]  # ~2.8 KB in all
    assert small.get("/api/health", headers=headers).status_code == 431


def test_within_the_limits_requests_pass(small: TestClient) -> None:
    r = small.get("/api/collections/posts/records?filter=" + "a" * 300, headers={"X-A": "b" * 1000})
    assert r.status_code == 404  # reached the records API: no such collection


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_in_flight", "0", "SHIPYARD_MAX_IN_FLIGHT: must be greater than 0"),
        ("overload_retry_after", "0", "SHIPYARD_OVERLOAD_RETRY_AFTER: must be greater than 0"),
        ("max_url_length", "100", "SHIPYARD_MAX_URL_LENGTH: must be at least 256 bytes"),
        ("max_url_length", "70000", "SHIPYARD_MAX_URL_LENGTH: must be at most 65000 bytes"),
        ("max_header_size", "10", "SHIPYARD_MAX_HEADER_SIZE: must be at least 1024 bytes"),
        ("header_timeout", "0", "SHIPYARD_HEADER_TIMEOUT: must be between 0.001 and 60 seconds"),
        ("header_timeout", "61", "SHIPYARD_HEADER_TIMEOUT: must be between 0.001 and 60 seconds"),
        ("body_timeout", "0", "SHIPYARD_BODY_TIMEOUT: must be greater than 0"),
        ("keep_alive", "maybe", "SHIPYARD_KEEP_ALIVE: expected a boolean, got 'maybe'"),
    ],
)
def test_bad_limits_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(env={f"SHIPYARD_{name.upper()}": value})
    assert str(exc.value) == message


def test_the_server_options_follow_the_settings() -> None:
    s = load_settings(
        env={
            "SHIPYARD_HEADER_TIMEOUT": "2.5",
            "SHIPYARD_KEEP_ALIVE": "false",
            "SHIPYARD_MAX_IN_FLIGHT": "1000",
        }
    )
    opts = granian_options(s)
    h1 = opts["http1_settings"]
    assert (h1.header_read_timeout, h1.keep_alive) == (2500, False)
    # the server's own bound on a request head sits above Shipyard's exact limits
    assert h1.max_buffer_size > s.max_url_length + s.max_header_size
    assert opts["http2_settings"].max_headers_size == h1.max_buffer_size
    # requests past the admission bound still reach the process, to get their 503
    assert opts["backpressure"] > s.max_in_flight
