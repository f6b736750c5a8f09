"""Shared fixtures: every backend test runs on SQLite and on PostgreSQL.

PostgreSQL comes from SHIPYARD_TEST_PG_URL when set, else from a throwaway server started
with PyPI `pgserver` for the session. Each test gets its own fresh database. The servers and
helpers behind these fixtures live in tests/helpers/.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import Settings, load_settings
from tests.helpers.servers import (
    SUPERUSER,
    RedisServer,
    Server,
    free_port,
    fresh_pg_database,
    start_server,
    stop_server,
)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("SHIPYARD_TEST_PG_URL")
    if url:
        yield url
        return
    import pgserver

    tmp = tempfile.mkdtemp(prefix="shipyard-pg-")
    srv = pgserver.get_server(tmp, cleanup_mode="stop")
    try:
        yield srv.get_uri()
    finally:
        srv.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return ""
    admin = request.getfixturevalue("pg_admin_url")
    return fresh_pg_database(admin)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # rate limits are on by default; tests of other things send bursts from one client
    # (tests/ratelimit turns them on)
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, ratelimit_enabled=False
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        from shipyard.auth import superusers

        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        yield c


@pytest.fixture
def su_token(client: TestClient) -> str:
    r = client.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@pytest.fixture
def su(su_token: str) -> dict[str, str]:
    """Headers of a superuser request."""
    return {"Authorization": su_token}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "srv", database_url)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """SHIPYARD_TEST_REDIS_URL when set, else a throwaway server for the session."""
    url = os.environ.get("SHIPYARD_TEST_REDIS_URL")
    if url:
        yield url
        return
    srv = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="shipyard-redis-")))
    srv.start()
    try:
        yield srv.url
    finally:
        srv.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, for tests that stop it."""
    srv = RedisServer(free_port(), tmp_path / "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
