"""Helpers of the backups tests: a collection with a file field, its records, and a
backup downloaded as a zip."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from starlette.testclient import TestClient


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
