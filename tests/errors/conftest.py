"""One real `shipyard serve` per backend for the module, reported to by the real SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.errors import SERVER_SETTINGS, Api
from tests.helpers.servers import Server, fresh_pg_database, start_server, stop_server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def errors_db(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    return fresh_pg_database(request.getfixturevalue("pg_admin_url"))


@pytest.fixture(scope="module")
def errors_dir(tmp_path_factory: pytest.TempPathFactory, errors_db: str) -> Path:
    return tmp_path_factory.mktemp("errors-srv")


@pytest.fixture(scope="module")
def srv(errors_db: str, errors_dir: Path) -> Iterator[Server]:
    s = start_server(errors_dir, errors_db, SERVER_SETTINGS)
    try:
        yield s
    finally:
        stop_server(s)


@pytest.fixture(scope="module")
def api(srv: Server) -> Api:
    return Api(srv)
