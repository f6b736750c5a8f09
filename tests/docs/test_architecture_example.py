"""docs/architecture.md's worked example: a team's extension, loaded by
SHIPYARD_EXTENSIONS exactly as written there, on both engines."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.docblocks import block
from tests.helpers.servers import SUPERUSER


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    name = f"audit_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(block("architecture-extension").text)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path, name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_the_audit_extension_counts_writes_for_superusers_only(
    module_dir: tuple[Path, str], database_url: str
) -> None:
    tmp_path, name = module_dir
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        extensions=f"{name}:extension",
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.upsert, svc, *SUPERUSER)
        token = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        ).json()["token"]
        su = {"Authorization": token}
        r = c.post(
            "/api/collections",
            headers=su,
            json={
                "name": "notes",
                "type": "base",
                "fields": [{"name": "title", "type": "text"}],
                "createRule": "",
                "deleteRule": "",
            },
        )
        assert r.status_code == 200, r.text
        ids = [
            c.post("/api/collections/notes/records", json={"title": t}).json()["id"] for t in "ab"
        ]
        assert c.delete(f"/api/collections/notes/records/{ids[0]}").status_code == 204
        assert c.get("/api/audit").status_code == 401
        r = c.get("/api/audit", headers=su)
        assert r.status_code == 200, r.text
        assert r.json() == [
            {"collection": "notes", "action": "create", "count": 2},
            {"collection": "notes", "action": "delete", "count": 1},
        ]
