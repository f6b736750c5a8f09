"""Archives kept in an S3 bucket (moto's server), with the stored files in S3 too: made,
listed, downloaded, restored and deleted through the same API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.settings import Settings, load_settings
from tests.helpers.backups import add_post, download, make_posts, titles
from tests.helpers.s3 import new_bucket, s3_client, s3_env


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, s3_endpoint: str, bucket: str) -> Settings:
    env = {
        **s3_env(s3_endpoint, new_bucket(s3_endpoint)),  # the record files
        **s3_env(s3_endpoint, bucket, "SHIPYARD_BACKUPS_S3_"),
    }
    return load_settings(env=env, data_dir=str(tmp_path / "data"), database_url=database_url)


def test_backups_in_s3(
    client: TestClient, su: dict[str, str], s3_endpoint: str, bucket: str
) -> None:
    make_posts(client, su)
    rec = add_post(client, "kept", b"in the bucket")
    assert client.post("/api/backups", headers=su, json={"name": "s3.zip"}).status_code == 204
    s3: Any = s3_client(s3_endpoint)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["s3.zip"]
    assert not (Path(client.app.state.services.settings.data_dir) / "backups").exists()  # type: ignore[attr-defined]
    listed = client.get("/api/backups", headers=su).json()
    assert [i["key"] for i in listed] == ["s3.zip"]
    z = download(client, su, "s3.zip")
    assert z.read(f"storage/{rec['collectionId']}/{rec['id']}/{rec['doc']}") == b"in the bucket"

    client.delete(f"/api/collections/posts/records/{rec['id']}")
    assert client.post("/api/backups/s3.zip/restore", headers=su).status_code == 204
    assert titles(client) == ["kept"]
    got = client.get(f"/api/files/posts/{rec['id']}/{rec['doc']}")
    assert got.status_code == 200
    assert got.content == b"in the bucket"
    assert got.headers["content-type"].startswith("text/plain")
    assert client.delete("/api/backups/s3.zip", headers=su).status_code == 204
    keys = {i["key"] for i in client.get("/api/backups", headers=su).json()}
    assert len(keys) == 1
    assert next(iter(keys)).startswith("safety_")


def test_the_s3_target_set_through_the_settings_api(
    database_url: str, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """`backups.s3` in /api/settings, as PocketBase: nested errors, a secret never shown,
    a PATCH merged key by key; the next backup goes to the bucket."""
    from shipyard.app import create_app
    from shipyard.auth import superusers
    from tests.helpers.servers import SUPERUSER

    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), database_url=database_url)
    with TestClient(create_app(settings)) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        client.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        r = client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        r = client.patch("/api/settings", headers=su, json={"backups": {"s3": {"enabled": True}}})
        assert r.status_code == 400
        blank = {"code": "validation_required", "message": "Cannot be blank."}
        assert r.json()["data"] == {
            "backups": {"s3": {"bucket": blank, "accessKey": blank, "secret": blank}}
        }
        r = client.patch("/api/settings", headers=su, json={"backups": {"s3": {"enabled": "yes"}}})
        assert r.status_code == 400
        assert r.json()["data"]["backups"]["s3"]["enabled"]["code"] == "validation_invalid_value"
        step = {"bucket": bucket, "endpoint": s3_endpoint, "forcePathStyle": True}
        r = client.patch("/api/settings", headers=su, json={"backups": {"s3": step}})
        assert r.status_code == 200, r.text
        keys = {"accessKey": "test", "secret": "test", "region": "us-east-1", "enabled": True}
        r = client.patch("/api/settings", headers=su, json={"backups": {"s3": keys}})
        assert r.status_code == 200, r.text
        s3 = r.json()["backups"]["s3"]
        assert s3["bucket"] == bucket  # kept from the first PATCH
        assert s3["enabled"] is True
        assert "secret" not in s3
        assert client.post("/api/backups", headers=su, json={"name": "via.zip"}).status_code == 204
        listed: Any = s3_client(s3_endpoint)
        assert [o["Key"] for o in listed.list_objects_v2(Bucket=bucket)["Contents"]] == ["via.zip"]
        assert not (tmp_path / "data" / "backups").exists()
