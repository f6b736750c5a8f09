"""The `shipyard` command on real processes: bad settings, migrate with a declarative file,
superuser management, and serve with two worker processes sharing one database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from tests.helpers.servers import start_server, stop_server

CLI = [sys.executable, "-m", "shipyard.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_bad_setting_stops_startup(tmp_path: Path) -> None:
    r = run(["serve"], {"SHIPYARD_PORT": "nope", "SHIPYARD_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "SHIPYARD_PORT" in r.stderr


def test_migrate_and_superusers(tmp_path: Path, database_url: str) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "d"), "SHIPYARD_DATABASE_URL": database_url}
    schema = tmp_path / "collections.json"
    schema.write_bytes(
        orjson.dumps(
            {
                "collections": [
                    {
                        "name": "tasks",
                        "listRule": "",
                        "fields": [
                            {"name": "title", "type": "text", "required": True},
                            {"name": "done", "type": "bool"},
                        ],
                    }
                ]
            }
        )
    )
    r = run(["migrate", "--schema-file", str(schema)], env)
    assert r.returncode == 0, r.stderr
    assert "1 collection" in r.stdout
    # dropping a field from the file refuses without --confirm-data-loss
    schema.write_bytes(
        orjson.dumps([{"name": "tasks", "fields": [{"name": "title", "type": "text"}]}])
    )
    r = run(["migrate", "--schema-file", str(schema)], env)
    assert r.returncode == 1 and "confirm" in r.stderr.lower()
    assert (
        run(["migrate", "--schema-file", str(schema), "--confirm-data-loss"], env).returncode == 0
    )
    assert run(["superuser", "create", "a@example.com", "password123"], env).returncode == 0
    assert run(["superuser", "create", "a@example.com", "password123"], env).returncode == 1
    assert run(["superuser", "update", "a@example.com", "password456"], env).returncode == 0
    assert run(["superuser", "create", "b@example.com", "password123"], env).returncode == 0
    assert run(["superuser", "delete", "b@example.com"], env).returncode == 0
    assert run(["superuser", "delete", "nobody@example.com"], env).returncode == 1


def test_two_workers_share_schema_and_data(tmp_path: Path, database_url: str) -> None:
    srv = start_server(tmp_path / "two", database_url, {"SHIPYARD_WORKERS": "2"})
    try:
        tok = srv.superuser_token()
        h = {"Authorization": tok}
        with httpx.Client(base_url=srv.url, headers=h) as c:
            r = c.post(
                "/api/collections",
                json={
                    "name": "shared",
                    "listRule": "",
                    "viewRule": "",
                    "fields": [{"name": "n", "type": "number"}],
                },
            )
            assert r.status_code == 200, r.text
            # every request may land on either process: each must see the new schema and data at once
            for i in range(40):
                assert c.post("/api/collections/shared/records", json={"n": i}).status_code == 200
                got = httpx.get(srv.url + "/api/collections/shared/records", params={"perPage": 1})
                assert got.status_code == 200 and got.json()["totalItems"] == i + 1
            fields = r.json()["fields"] + [{"name": "extra", "type": "text"}]
            assert c.patch("/api/collections/shared", json={"fields": fields}).status_code == 200
            for _ in range(10):
                item = httpx.get(srv.url + "/api/collections/shared/records").json()["items"][0]
                assert item["extra"] == ""
    finally:
        stop_server(srv)


def test_demo_loads(tmp_path: Path) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "demo")}
    r = run(["demo"], env)
    assert r.returncode == 0 and "2000 posts" in r.stdout, r.stderr
    assert "already loaded" in run(["demo"], env).stdout
