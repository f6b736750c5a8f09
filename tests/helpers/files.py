"""What the files tests share: a collection with file fields, a PNG, a look into storage."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

BROWSER = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"  # a browser's image Accept


def upload(client: TestClient, data: bytes, name: str = "pic.png") -> Any:
    """A record of `posts` with `data` in `doc` (its type detected from the content)."""
    return client.post("/api/collections/posts/records", files=[("doc", (name, data, "x/y"))])


def png(w: int = 300, h: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def make_collection(client: TestClient, su: dict[str, str], **file_opts: Any) -> dict[str, Any]:
    fields = [
        {"name": "title", "type": "text"},
        {"name": "doc", "type": "file", "maxSelect": 1, **file_opts},
        {"name": "docs", "type": "file", "maxSelect": 5},
    ]
    r = client.post(
        "/api/collections",
        headers=su,
        json={
            "name": "posts",
            "type": "base",
            "fields": fields,
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "updateRule": "",
            "deleteRule": "",
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def stored(client: TestClient, key: str) -> bool:
    svc = client.app.state.services  # type: ignore[attr-defined]
    files = svc.extension("files")

    async def look() -> bool:
        return await (await files.store.storage()).stat(key) is not None

    return bool(client.portal.call(look))  # type: ignore[union-attr]
