"""Index names are checked against the whole database, as PocketBase does: a collection may
not name an index like another collection's index (or any table or index of the database).
Before, `CREATE INDEX IF NOT EXISTS` skipped such an index silently and a UNIQUE index then
accepted duplicates. Checked through the collections API, the import API and the
declarative schema file (`shipyard migrate`), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from shipyard.settings import Settings

H = dict[str, str]
URL = "/api/collections"
UNIQUE_TITLE = "CREATE UNIQUE INDEX `idx_shared` ON `{}` (`title`)"
TITLE = [{"name": "title", "type": "text"}]


def taken(position: str, table: str, message: str = "Failed to create collection.") -> Any:
    """PocketBase 0.40.6's answer ("Failed to update collection." for an update, "Failed to
    import collections." for an import)."""
    return {
        "status": 400,
        "message": message,
        "data": {
            "indexes": {
                position: {
                    "code": "validation_existing_index_name",
                    "message": f"The index name is already used in {table} collection.",
                    "params": {"usedTableName": table},
                }
            }
        },
    }


def make(c: TestClient, su: H, name: str, indexes: list[str] | None = None) -> Any:
    body = {"name": name, "fields": TITLE, "indexes": indexes or [], "createRule": ""}
    return c.post(URL, json=body, headers=su)


def add(c: TestClient, coll: str, title: str) -> int:
    return c.post(f"{URL}/{coll}/records", json={"title": title}).status_code


def test_an_index_name_of_another_collection_is_refused(client: TestClient, su: H) -> None:
    c = client
    assert make(c, su, "posts", [UNIQUE_TITLE.format("posts")]).status_code == 200
    # on create, whatever the case of the name (SQLite's names ignore case)
    for name in ("idx_shared", "IDX_Shared"):
        index = f"CREATE UNIQUE INDEX `{name}` ON `pages` (`title`)"
        r = make(c, su, "pages", ["CREATE INDEX `idx_pages_ok` ON `pages` (`created`)", index])
        assert r.json() == taken("1", "posts"), r.text
        assert c.get(f"{URL}/pages", headers=su).status_code == 404
    # on update
    assert make(c, su, "pages").status_code == 200
    r = c.patch(f"{URL}/pages", json={"indexes": [UNIQUE_TITLE.format("pages")]}, headers=su)
    assert r.json() == taken("0", "posts", "Failed to update collection."), r.text
    assert c.get(f"{URL}/pages", headers=su).json()["indexes"] == []
    # the other collection's index still holds
    assert add(c, "posts", "one") == 200
    assert add(c, "posts", "one") == 400
    # a name of its own makes a working UNIQUE index: duplicates are refused
    own = "CREATE UNIQUE INDEX `idx_pages_title` ON `pages` (`title`)"
    r = c.patch(f"{URL}/pages", json={"indexes": [own]}, headers=su)
    assert r.status_code == 200, r.text
    assert add(c, "pages", "one") == 200
    assert add(c, "pages", "one") == 400
    # updating or renaming a collection keeps its own index names
    r = c.patch(f"{URL}/posts", json={"name": "articles", "listRule": ""}, headers=su)
    assert r.status_code == 200, r.text
    assert r.json()["indexes"] == [UNIQUE_TITLE.format("articles")]
    assert add(c, "articles", "one") == 400
    # and once its owner is gone, the name is free
    assert c.delete(f"{URL}/articles", headers=su).status_code == 204
    r = c.patch(f"{URL}/pages", json={"indexes": [UNIQUE_TITLE.format("pages")]}, headers=su)
    assert r.status_code == 200, r.text


def test_names_of_system_indexes_tables_and_superusers_are_taken(client: TestClient, su: H) -> None:
    c = client
    cases = {
        "idx_email_pbc_3142635823": "_superusers",  # a superusers index (PocketBase's name)
        "_webhooks_collection": "_webhooks",  # an index of a system table
        "_collections": "_collections",  # a table
    }
    for name, owner in cases.items():
        r = make(c, su, "pages", [f"CREATE INDEX `{name}` ON `pages` (`title`)"])
        assert r.json() == taken("0", owner), (name, r.text)
    assert make(c, su, "posts").status_code == 200
    r = make(c, su, "pages", ["CREATE INDEX `posts` ON `pages` (`title`)"])
    assert r.json() == taken("0", "posts"), r.text


def test_one_name_twice_in_a_collection_is_refused(client: TestClient, su: H) -> None:
    indexes = [
        "CREATE INDEX `idx_twice` ON `pages` (`title`)",
        "CREATE INDEX `IDX_TWICE` ON `pages` (`created`)",
    ]
    r = make(client, su, "pages", indexes)
    assert r.json() == {
        "status": 400,
        "message": "Failed to create collection.",
        "data": {
            "indexes": {
                "1": {
                    "code": "validation_duplicated_index_name",
                    "message": "The index name already exists.",
                }
            }
        },
    }


def test_import_refuses_a_shared_index_name(client: TestClient, su: H) -> None:
    c = client
    items = [
        {"name": "posts", "fields": TITLE, "indexes": [UNIQUE_TITLE.format("posts")]},
        {"name": "pages", "fields": TITLE, "indexes": [UNIQUE_TITLE.format("pages")]},
    ]
    r = c.put(f"{URL}/import", json={"collections": items}, headers=su)
    assert r.json() == taken("0", "posts", "Failed to import collections."), r.text
    # a refused import leaves nothing behind
    names = {i["name"] for i in c.get(URL, headers=su).json()["items"]}
    assert names == {"_superusers"}


def test_schema_file_refuses_a_shared_index_name(
    client: TestClient, su: H, settings: Settings, tmp_path: Path
) -> None:
    c = client
    assert make(c, su, "posts", [UNIQUE_TITLE.format("posts")]).status_code == 200
    schema = tmp_path / "collections.json"
    items = [{"name": "pages", "fields": TITLE, "indexes": [UNIQUE_TITLE.format("pages")]}]
    schema.write_bytes(orjson.dumps({"collections": items}))
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(settings.data_dir),
        "SHIPYARD_DATABASE_URL": settings.database_url,
    }
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "migrate", "--schema-file", str(schema)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    error = orjson.dumps(taken("0", "posts")["data"]).decode()
    assert f"Failed to import collections. {error}" in r.stderr, r.stderr
    assert c.get(f"{URL}/pages", headers=su).status_code == 404
    assert add(c, "posts", "one") == 200
    assert add(c, "posts", "one") == 400
