"""Backups through HTTP on SQLite and PostgreSQL: an archive made while the server runs
holds the records, the stored files and a manifest whose counts and checksums match; it
is verified after it is made, downloads with a superuser file token, and restores into
the running instance (a safety backup first, every change since undone)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import orjson
from starlette.testclient import TestClient

from tests.helpers.servers import SUPERUSER


def make_posts(client: TestClient, su: dict[str, str]) -> None:
    r = client.post(
        "/api/collections",
        headers=su,
        json={
            "name": "posts",
            "type": "base",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "doc", "type": "file", "maxSelect": 1},
            ],
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "updateRule": "",
            "deleteRule": "",
        },
    )
    assert r.status_code == 200, r.text


def add_post(client: TestClient, title: str, content: bytes | None = None) -> dict[str, Any]:
    files = [("doc", ("note.txt", content, "text/plain"))] if content is not None else None
    r = client.post("/api/collections/posts/records", data={"title": title}, files=files)
    assert r.status_code == 200, r.text
    return dict(r.json())


def titles(client: TestClient) -> list[str]:
    r = client.get("/api/collections/posts/records?sort=title")
    assert r.status_code == 200, r.text
    return [i["title"] for i in r.json()["items"]]


def file_token(client: TestClient, su: dict[str, str]) -> str:
    r = client.post("/api/files/token", headers=su)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def download(client: TestClient, su: dict[str, str], key: str) -> zipfile.ZipFile:
    r = client.get(f"/api/backups/{key}?token={file_token(client, su)}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="{key}"'
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_backup_verify_download_restore(client: TestClient, su: dict[str, str]) -> None:
    make_posts(client, su)
    kept = add_post(client, "a kept post", b"hello file")
    add_post(client, "b kept post")
    r = client.post("/api/backups", headers=su, json={"name": "first.zip"})
    assert r.status_code == 204, r.text

    listed = client.get("/api/backups", headers=su).json()
    assert [i["key"] for i in listed] == ["first.zip"]
    assert listed[0]["size"] > 0
    assert listed[0]["modified"].endswith("Z")

    z = download(client, su, "first.zip")
    manifest = orjson.loads(z.read("manifest.json"))
    assert manifest["format"] == "shipyard-backup"
    assert manifest["formatVersion"] == 1
    dbs = manifest["databases"]
    counts = dbs.get("data.db") or dbs["postgres.dump"]
    assert counts["posts"] == 2
    assert counts["_superusers"] == 1
    assert not any(t.startswith("_backup_") for db in dbs.values() for t in db)
    stored = f"storage/{kept['collectionId']}/{kept['id']}/{kept['doc']}"
    assert z.read(stored) == b"hello file"
    assert set(manifest["members"]) == set(z.namelist()) - {"manifest.json"}

    health = client.get("/api/health", headers=su).json()["data"]["backups"]
    assert health["last"]["key"] == "first.zip"
    assert health["last"]["verified"] is True
    assert health["last"]["integrity"] == "ok"
    assert health["last"]["problems"] == []
    assert health["lastSuccess"]
    assert health["running"] == ""

    # changes after the backup: a new post, a removed post and its file
    add_post(client, "c added later")
    assert client.delete(f"/api/collections/posts/records/{kept['id']}").status_code == 204
    assert titles(client) == ["b kept post", "c added later"]

    r = client.post("/api/backups/first.zip/restore", headers=su)
    assert r.status_code == 204, r.text
    assert titles(client) == ["a kept post", "b kept post"]
    got = client.get(f"/api/files/posts/{kept['id']}/{kept['doc']}")
    assert got.status_code == 200
    assert got.content == b"hello file"
    keys = [i["key"] for i in client.get("/api/backups", headers=su).json()]
    assert len(keys) == 2
    assert any(k.startswith("safety_") for k in keys)
    # the superuser still signs in (the archive holds them), writes work again
    r = client.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200
    add_post(client, "d after restore")
