"""Realtime's servers: for each transport two `shipyard serve` processes on one database
(a subscriber on one, writes on the other), started once per module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import Server, fresh_pg_database, start_server, stop_server

# quick to see a closed stream in tests; everything else at its default
SETTINGS = {"SHIPYARD_REALTIME_POLL_INTERVAL": "0.02", "SHIPYARD_ACCESS_LOG": "false"}


# the second process is the one the bounds are tested on (test_bounds.py); subscribers of the
# other tests connect to the first
BOUNDED = {
    "SHIPYARD_REALTIME_MAX_CONNECTIONS": "5",
    "SHIPYARD_REALTIME_BUFFER": "16",
    "SHIPYARD_REALTIME_SEND_TIMEOUT": "1",
    "SHIPYARD_REALTIME_IDLE_TIMEOUT": "1.5",
    "SHIPYARD_MAX_IN_FLIGHT": "3",
}


class Pair:
    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b
        self.token = a.superuser_token()

    @property
    def su(self) -> dict[str, str]:
        return {"Authorization": self.token}

    def collection(self, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.a.url + "/api/collections", json=body, headers=self.su)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def create(self, collection: str, body: dict[str, Any], token: str = "") -> dict[str, Any]:
        """A record, written through the second process (subscribers are on the first)."""
        headers = {"Authorization": token or self.token}
        r = httpx.post(
            f"{self.b.url}/api/collections/{collection}/records", json=body, headers=headers
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def update(self, collection: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.patch(
            f"{self.b.url}/api/collections/{collection}/records/{rid}", json=body, headers=self.su
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def delete(self, collection: str, rid: str) -> None:
        r = httpx.delete(
            f"{self.b.url}/api/collections/{collection}/records/{rid}", headers=self.su
        )
        assert r.status_code == 204, r.text

    def impersonate(self, collection: str, rid: str) -> str:
        r = httpx.post(
            f"{self.a.url}/api/collections/{collection}/impersonate/{rid}",
            json={"duration": 3600},
            headers=self.su,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


def start_pair(kind: str, request: pytest.FixtureRequest) -> Iterator[Pair]:
    root = Path(tempfile.mkdtemp(prefix=f"shipyard-rt-{kind}-"))
    url = ""
    extra = dict(SETTINGS)
    if kind == "postgres":
        url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    if kind == "redis":
        extra["SHIPYARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        extra["SHIPYARD_REDIS_NAMESPACE"] = "rt" + root.name[-8:]
    if not url:  # both processes on one SQLite file (and its auxiliary file beside it)
        url = f"sqlite:///{root / 'shared' / 'data.db'}"
    a = start_server(root / "a", url, extra)
    try:
        b = start_server(root / "b", url, {**extra, **BOUNDED})
    except BaseException:
        stop_server(a)
        raise
    try:
        yield Pair(a, b)
    finally:
        stop_server(b)
        stop_server(a)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from start_pair(str(request.param), request)


@pytest.fixture(scope="session")
def redis_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from start_pair("redis", request)
