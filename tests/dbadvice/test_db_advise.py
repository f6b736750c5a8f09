"""`/api/db/…` and `shipyard db advise`, on SQLite and PostgreSQL: superusers only, slow shapes
with plans and proposals, applying indexes through the collection, never a parameter value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from starlette.testclient import TestClient

from shipyard.dbadvice import routes as db_api
from shipyard.settings import Settings, load_settings

H = dict[str, str]
SECRET = "sk_live_TOPSECRET_4242"
STATUS_INDEX = "CREATE INDEX `idx_posts_status` ON `posts` (`status`)"
CLI = [sys.executable, "-m", "shipyard.cli"]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Every statement counts as slow (a microsecond threshold)."""
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, slow_query_ms=0.001
    )


def _posts(client: TestClient, su: H, rows: int = 2000) -> None:
    r = client.post(
        "/api/collections",
        headers=su,
        json={
            "name": "posts",
            "listRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "status", "type": "text"},
                {"name": "views", "type": "number"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    svc = client.app.state.services  # type: ignore[attr-defined]
    client.portal.call(  # type: ignore[union-attr]
        svc.db.executemany,
        'INSERT INTO "posts" ("id", "title", "status", "views", "created", "updated") '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(f"r{i:014d}", f"t{i}", f"s{i % 50}", float(i), "", "") for i in range(rows)],
    )


def _slow_list(client: TestClient) -> None:
    r = client.get(
        "/api/collections/posts/records",
        params={"filter": f'status = "{SECRET}"', "page": 2, "perPage": 5},
    )
    assert r.status_code == 200, r.text


def _proposed(body: dict[str, Any]) -> set[str]:
    return {p["index"] for p in body["proposals"]}


def _document(client: TestClient, su: H) -> dict[str, Any]:
    """The served OpenAPI document (a superuser's: these routes are superuser-only), which
    must describe this module's routes."""
    r = client.get("/api/openapi.json", headers=su)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    for path, item in db_api.openapi_paths().items():
        assert doc["paths"][path] == item
    return doc


def _conforms(doc: dict[str, Any], path: str, method: str, response: Any) -> None:
    op = doc["paths"][path][method]
    status = str(response.status_code)
    assert status in op["responses"], (path, method, status)
    resp = op["responses"][status]
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    if "content" not in resp:
        return
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **resp["content"]["application/json"]["schema"],
        "components": doc["components"],
    }
    errors = [
        str(e) for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(response.json())
    ]
    assert not errors, (path, method, errors[:3])


def test_superusers_only(client: TestClient, su: H) -> None:
    r = client.post(
        "/api/collections",
        headers=su,
        json={"name": "users", "type": "auth", "createRule": "", "fields": []},
    )
    assert r.status_code == 200, r.text
    body = {"email": "u@example.com", "password": "password123", "passwordConfirm": "password123"}
    assert client.post("/api/collections/users/records", json=body).status_code == 200
    r = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "u@example.com", "password": "password123"},
    )
    user = {"Authorization": r.json()["token"]}
    calls = [
        ("get", "/api/db/advise", None),
        ("post", "/api/db/advise/apply", {"all": True}),
        ("delete", "/api/db/slow-queries", None),
    ]
    doc = _document(client, su)
    for method, path, payload in calls:
        kwargs: dict[str, Any] = {"json": payload} if payload is not None else {}
        for headers, status in (({}, 401), (user, 403), ({"Authorization": "junk"}, 401)):
            r = client.request(method, path, headers=headers, **kwargs)
            assert r.status_code == status, (method, path, r.text)
            assert set(r.json()) == {"status", "message", "data"}
            assert r.json()["status"] == status
            _conforms(doc, path, method, r)


def test_advise_and_apply(client: TestClient, su: H) -> None:
    _posts(client, su)
    _slow_list(client)
    r = client.get("/api/db/advise", headers=su, params={"top": 200})
    assert r.status_code == 200, r.text
    assert SECRET not in r.text
    body = r.json()
    assert body["engine"] in ("sqlite", "postgres")
    assert body["slowQueryMs"] == 0.001
    assert STATUS_INDEX in _proposed(body)
    prop = next(p for p in body["proposals"] if p["index"] == STATUS_INDEX)
    assert prop["collection"] == "posts"
    assert prop["column"] == "status"
    assert prop["shapes"]
    shape = next(i for i in body["items"] if i["id"] == prop["shapes"][0])
    assert shape["fullScans"] == ["posts"]
    assert shape["plan"]
    assert shape["calls"] >= 1
    assert shape["proposals"] == [STATUS_INDEX]
    assert shape["error"] is None
    assert '"status" = ' in shape["sql"]
    assert "?" in shape["sql"]
    doc = _document(client, su)
    _conforms(doc, "/api/db/advise", "get", r)

    r = client.post("/api/db/advise/apply", headers=su, json={"indexes": [STATUS_INDEX]})
    assert r.status_code == 200, r.text
    assert r.json() == {"applied": [STATUS_INDEX]}
    _conforms(doc, "/api/db/advise/apply", "post", r)
    coll = client.get("/api/collections/posts", headers=su).json()
    assert coll["indexes"] == [STATUS_INDEX]

    _slow_list(client)
    body = client.get("/api/db/advise", headers=su, params={"top": 200}).json()
    assert STATUS_INDEX not in _proposed(body)
    counts = [
        i for i in body["items"] if i["sql"].startswith("SELECT COUNT(*)") and "status" in i["sql"]
    ]
    assert counts
    assert all(any("idx_posts_status" in line for line in i["plan"]) for i in counts)


def test_apply_all_reset_and_bad_requests(client: TestClient, su: H) -> None:
    _posts(client, su, rows=500)
    _slow_list(client)
    doc = _document(client, su)
    for params in ({"top": "abc"}, {"top": "0"}, {"by": "fastest"}):
        r = client.get("/api/db/advise", headers=su, params=params)
        assert r.status_code == 400, params
        _conforms(doc, "/api/db/advise", "get", r)
    for payload in ({}, {"indexes": "CREATE INDEX"}, {"indexes": ["DROP TABLE posts"]}):
        r = client.post("/api/db/advise/apply", headers=su, json=payload)
        assert r.status_code == 400, payload
        assert r.json()["status"] == 400
        _conforms(doc, "/api/db/advise/apply", "post", r)
    r = client.post("/api/db/advise/apply", headers=su, json={"indexes": ["DROP TABLE posts"]})
    assert "indexes" in r.json()["data"]

    r = client.post("/api/db/advise/apply", headers=su, json={"all": True})
    assert r.status_code == 200, r.text
    assert STATUS_INDEX in r.json()["applied"], r.text
    assert STATUS_INDEX in client.get("/api/collections/posts", headers=su).json()["indexes"]

    r = client.delete("/api/db/slow-queries", headers=su)
    assert r.status_code == 204
    _conforms(doc, "/api/db/slow-queries", "delete", r)
    body = client.get("/api/db/advise", headers=su, params={"top": 200}).json()
    assert not any('FROM "posts"' in i["sql"] for i in body["items"])


def test_openapi_paths_are_valid_openapi(client: TestClient, su: H) -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    doc = _document(client, su)
    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert not errors, errors[:5]
    for route in db_api.routes:
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"][route.path], (method, route.path)
    ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if "operationId" in op
    ]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------- the CLI


def _cli(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(settings.data_dir),
        "SHIPYARD_DATABASE_URL": settings.database_url,
        "SHIPYARD_LOG_LEVEL": "warning",
    }
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_db_advise(client: TestClient, su: H, settings: Settings) -> None:
    _posts(client, su)
    _slow_list(client)
    svc = client.app.state.services  # type: ignore[attr-defined]
    client.portal.call(svc.slowlog.flush)  # type: ignore[union-attr]

    r = _cli(["db", "advise", "--top", "200"], settings)
    assert r.returncode == 0, r.stderr
    assert "Proposed indexes" in r.stdout
    assert STATUS_INDEX in r.stdout
    assert SECRET not in r.stdout + r.stderr

    r = _cli(["db", "advise", "--json", "--top", "200"], settings)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert STATUS_INDEX in _proposed(body)
    assert "applied" not in body

    r = _cli(["db", "advise", "--json", "--top", "200", "--apply"], settings)
    assert r.returncode == 0, r.stderr
    assert STATUS_INDEX in json.loads(r.stdout)["applied"]

    # the running server learns of the schema change made by the other process
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        coll = client.get("/api/collections/posts", headers=su).json()
        if coll["indexes"]:
            break
        time.sleep(0.1)
    assert coll["indexes"] == [STATUS_INDEX]

    r = _cli(["db", "advise", "--json", "--top", "200"], settings)
    assert STATUS_INDEX not in _proposed(json.loads(r.stdout))
    assert _cli(["db", "advise", "--by", "fastest"], settings).returncode == 2

    r = _cli(["db", "reset"], settings)
    assert r.returncode == 0, r.stderr
    assert "forgot" in r.stdout, r.stderr
