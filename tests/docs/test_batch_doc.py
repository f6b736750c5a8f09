"""docs/batch.md: the documented batch sent as written gets an answer of the documented
shape, and a batch whose second create misses its required title gets exactly the
documented error (SQLite; tests/batch runs both engines)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.docblocks import block
from tests.helpers.docsapp import same_shape
from tests.helpers.servers import SUPERUSER


def test_batch_examples(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), ratelimit_enabled=False, batch_enabled=True
    )
    with TestClient(create_app(settings)) as c:
        c.portal.call(superusers.upsert, c.app.state.services, *SUPERUSER)  # type: ignore[attr-defined, union-attr]
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        rules = {f"{a}Rule": "" for a in ("list", "view", "create", "update", "delete")}
        posts = {"name": "posts", **rules,
                 "fields": [{"name": "title", "type": "text", "required": True}]}  # fmt: skip
        assert c.post("/api/collections", json=posts, headers=su).status_code == 200
        r = c.post("/api/batch", json=json.loads(block("batch-request").text))
        assert r.status_code == 200, r.text
        same_shape(json.loads(block("batch-answer").text), r.json())
        failing = {
            "requests": [
                {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "x"}},
                {"method": "POST", "url": "/api/collections/posts/records", "body": {}},
            ]
        }
        r = c.post("/api/batch", json=failing)
        assert r.json() == json.loads(block("batch-failed").text)
        assert c.get("/api/collections/posts/records").json()["totalItems"] == 0
