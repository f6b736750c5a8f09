"""One app per backend for the module (an app's start-up is most of a test's time): each
test makes collections of its own (`posts` gives a fresh name), so tests share nothing
else. Loopback webhooks are allowed; their deliveries are only counted, never run (no
worker). Writes to collections named `slow…` take 0.4 s (tests/helpers/slow_ext.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER, fresh_pg_database

H = dict[str, str]
_names = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, H]]:
    """The client and a superuser's headers; batches turned on through /api/settings."""
    url = ""
    if request.param == "postgres":
        url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    settings = load_settings(
        env={},
        data_dir=str(tmp_path_factory.mktemp("batch") / "data"),
        database_url=url,
        ratelimit_enabled=False,
        webhook_allow_private="127.0.0.1",
        jobs_worker=False,
        extensions="tests.helpers.slow_ext:extension",  # writes to `slow…` take 0.4 s
    )
    with TestClient(create_app(settings)) as client:
        client.portal.call(superusers.create, client.app.state.services, *SUPERUSER)  # type: ignore[attr-defined, union-attr]
        r = client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        yield client, su


def make_collection(client: TestClient, su: H, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/collections", json={"name": name, "type": "base", **extra}, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def posts(app: tuple[TestClient, H]) -> dict[str, str]:
    """Fresh collections: `posts` anyone may write (title required, a number, a relation
    to `authors`, files), `locked` with the same fields only superusers may write; their
    names, and `url`, the posts records URL."""
    client, su = app
    n = next(_names)
    on = {"enabled": True, "maxRequests": 50, "timeout": 3, "maxBodySize": 0}
    r = client.patch("/api/settings", json={"batch": on}, headers=su)
    assert r.status_code == 200, r.text
    anyone = {f"{a}Rule": "" for a in ("list", "view", "create", "update", "delete")}
    authors = make_collection(
        client, su, f"authors{n}", **anyone, fields=[{"name": "name", "type": "text"}]
    )
    fields = [
        {"name": "title", "type": "text", "required": True},
        {"name": "n", "type": "number"},
        {"name": "author", "type": "relation", "collectionId": authors["id"], "maxSelect": 1},
        {"name": "f", "type": "file", "maxSelect": 2, "maxSize": 100000},
    ]
    make_collection(client, su, f"posts{n}", **anyone, fields=fields)
    make_collection(client, su, f"locked{n}", fields=fields)
    return {
        "posts": f"posts{n}",
        "locked": f"locked{n}",
        "authors": f"authors{n}",
        "url": f"/api/collections/posts{n}/records",
    }
