"""An unexpected exception answers the documented 500 and nothing about its cause: no
exception type, message, stack trace or path reaches the client (the error tracker and the
log get them, tests/errors/test_ingest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings


@pytest.fixture
def boom(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        env={"SHIPYARD_EXTENSIONS": "tests.helpers.boom_ext:extension"},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_a_500_says_nothing_about_its_cause(boom: TestClient) -> None:
    r = boom.get("/api/test-boom/1")
    assert r.status_code == 500
    assert r.json() == {
        "status": 500,
        "message": "Something went wrong while processing your request.",
        "data": {},
    }
    for leak in ("ZeroDivisionError", "division", "Traceback", "boom_ext", ".py"):
        assert leak not in r.text
