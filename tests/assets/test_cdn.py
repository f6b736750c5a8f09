"""CDN URLs and purges, on SQLite and PostgreSQL: `cdn_purge` jobs enqueued in the
caller's transaction and delivered to a real HTTP server playing Cloudflare's API (failures,
retries with backoff, the bearer token), the token never in logs or the jobs API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.assets.config import public_path, validate
from shipyard.settings import Settings, SettingsError, load_settings
from shipyard.tools.assetbuild import build
from tests.helpers.wait import poll_until
from tests.helpers.webhook_receiver import Receiver, receiver_fixture

H = dict[str, str]
TOKEN = "cf-token-0123456789abcdefghijklmnopqrstuv"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
CDN = "https://cdn.example.com"
OK = b'{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    for r in receiver_fixture():
        r.ok_body = OK
        yield r


@pytest.fixture
def settings(database_url: str, tmp_path: Path, receiver: Receiver) -> Settings:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.css").write_text("a { color : red }")
    build(tmp_path / "web", tmp_path / "public")
    env = {
        "SHIPYARD_CDN_URL": CDN + "/",
        "SHIPYARD_CDN_CLOUDFLARE_ZONE": ZONE,
        "SHIPYARD_CDN_CLOUDFLARE_TOKEN": TOKEN,
        "SHIPYARD_CDN_CLOUDFLARE_API": receiver.url + "/client/v4",
        "SHIPYARD_CDN_PURGE_BACKOFF_BASE": "0.2",
        "SHIPYARD_CDN_PURGE_MAX_ATTEMPTS": "3",
        "SHIPYARD_PUBLIC_DIR": str(tmp_path / "public"),
    }
    return load_settings(env=env, data_dir=str(tmp_path / "data"), database_url=database_url)


def _cdn(client: TestClient) -> Any:
    return client.app.state.services.extension("assets").cdn  # type: ignore[attr-defined]


def _enqueue(client: TestClient, urls: list[str], *, commit: bool = True) -> list[int]:
    svc = client.app.state.services  # type: ignore[attr-defined]
    cdn = _cdn(client)

    class Rollback(Exception):
        pass

    async def go() -> list[int]:
        ids: list[int] = []
        try:
            async with svc.db.transaction() as tx:
                ids = await cdn.enqueue_purge(tx, urls)
                if not commit:
                    raise Rollback
        except Rollback:
            pass
        return ids

    return list(client.portal.call(go))  # type: ignore[union-attr]


def _jobs(client: TestClient, su: H) -> list[dict[str, Any]]:
    r = client.get("/api/jobs?kind=cdn_purge&perPage=100", headers=su)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _wait_jobs(client: TestClient, su: H, n: int, states: set[str]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal got
        got = _jobs(client, su)
        return len(got) == n and all(j["state"] in states for j in got)

    poll_until(done, 20.0, step=0.05)
    return got


def test_public_and_asset_urls(client: TestClient, settings: Settings) -> None:
    cdn = _cdn(client)
    assert cdn.public_url("/api/files/posts/r1/a.png") == f"{CDN}/api/files/posts/r1/a.png"
    assert cdn.public_url("api/files/x") == f"{CDN}/api/files/x"
    assert cdn.public_url("https://elsewhere.example/x") == "https://elsewhere.example/x"
    manifest = orjson.loads((public_path(settings) / "manifest.json").read_bytes())
    assert cdn.asset_url("app.css") == f"{CDN}/{manifest['app.css']}"
    assert cdn.asset_url("/unknown.js") == f"{CDN}/unknown.js"


def test_urls_without_cdn(client: TestClient, tmp_path: Path, database_url: str) -> None:
    from shipyard.assets.cdn import Cdn
    from shipyard.tools.staticfiles import Manifest

    s = load_settings(env={}, data_dir=str(tmp_path / "data"), app_url="https://api.example.com/")
    plain = Cdn(s, None, Manifest(tmp_path / "nothing"))
    assert plain.public_url("/api/files/a/b/c.png") == "/api/files/a/b/c.png"
    assert plain.public_url("/x", absolute=True) == "https://api.example.com/x"
    assert plain.asset_url("app.css") == "/app.css"
    assert not plain.purging
    assert client.portal.call(plain.enqueue_purge, None, ["/x"]) == []  # type: ignore[union-attr]


def test_purge_delivered_after_failures(
    client: TestClient, su: H, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.mode = "503"
    paths = ["/api/files/posts/r1/photo.png", "/api/files/posts/r1/photo.png?thumb=100x100"]
    ids = _enqueue(client, paths)
    assert len(ids) == 1
    got = receiver.wait_for(lambda g: len(g) >= 2)
    assert [r.answered for r in got[:2]] == [503, 503]
    receiver.mode = "ok"
    jobs = _wait_jobs(client, su, 1, {"completed"})
    assert jobs[0]["attempt"] == 3, jobs
    delivered = receiver.delivered()
    assert len(delivered) == 1
    req = delivered[0]
    assert (req.method, req.path) == ("POST", f"/client/v4/zones/{ZONE}/purge_cache")
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"files": sorted(CDN + p for p in paths)}
    # every attempt sent the same body: a purge is idempotent
    assert {r.body for r in receiver.snapshot()} == {req.body}
    jobs_text = client.get("/api/jobs?kind=cdn_purge", headers=su).text
    assert TOKEN not in jobs_text
    assert TOKEN not in caplog.text


def test_purge_dead_lettered_and_rolled_back(client: TestClient, su: H, receiver: Receiver) -> None:
    assert _enqueue(client, ["/a.png"], commit=False) != []  # enqueued, then rolled back
    receiver.mode = "503"
    _enqueue(client, ["/b.png"])
    jobs = _wait_jobs(client, su, 1, {"discarded"})  # only the committed one exists
    assert jobs[0]["attempt"] == 3
    assert "HTTP 503" in str(jobs[0].get("errors") or jobs[0])
    got = receiver.snapshot()
    assert len(got) == 3
    assert all(r.json() == {"files": [f"{CDN}/b.png"]} for r in got)


def test_a_2xx_without_success_is_not_a_purge(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    receiver.ok_body = b'{"success":false,"errors":[{"code":1134,"message":"bad zone"}]}'
    _enqueue(client, ["/c.png"])
    jobs = _wait_jobs(client, su, 1, {"discarded"})
    assert "1134: bad zone" in str(jobs[0])


def test_many_urls_in_batches(client: TestClient, su: H, receiver: Receiver) -> None:
    ids = _enqueue(client, [f"/api/files/c/r/f{i}.png" for i in range(65)])
    assert len(ids) == 3
    _wait_jobs(client, su, 3, {"completed"})
    sizes = sorted(len(r.json()["files"]) for r in receiver.delivered())
    assert sizes == [5, 30, 30]


def test_cdn_settings_are_validated() -> None:
    def check(env: dict[str, str]) -> None:
        validate(load_settings(env=env))

    with pytest.raises(SettingsError, match="SHIPYARD_CDN_URL"):
        check({"SHIPYARD_CDN_URL": "cdn.example.com"})
    with pytest.raises(SettingsError, match="set both or neither"):
        check({"SHIPYARD_CDN_URL": CDN, "SHIPYARD_CDN_CLOUDFLARE_ZONE": ZONE})
    with pytest.raises(SettingsError, match="needs SHIPYARD_CDN_URL"):
        check({"SHIPYARD_CDN_CLOUDFLARE_ZONE": ZONE, "SHIPYARD_CDN_CLOUDFLARE_TOKEN": TOKEN})
    with pytest.raises(SettingsError, match="SHIPYARD_CDN_PURGE_TIMEOUT"):
        check({"SHIPYARD_CDN_PURGE_TIMEOUT": "0"})
    with pytest.raises(SettingsError, match="SHIPYARD_CDN_PURGE_MAX_ATTEMPTS"):
        check({"SHIPYARD_CDN_PURGE_MAX_ATTEMPTS": "0"})
    env = {"SHIPYARD_CDN_CLOUDFLARE_TOKEN": TOKEN, "SHIPYARD_CDN_URL": CDN,
           "SHIPYARD_CDN_CLOUDFLARE_ZONE": ZONE}  # fmt: skip
    s = load_settings(env=env)
    validate(s)
    assert TOKEN not in repr(s)


def test_a_bad_cdn_setting_stops_the_build_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["SHIPYARD_CDN_URL"] = "ftp://cdn"
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "assets", "build"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "bad setting: SHIPYARD_CDN_URL: must be an http(s) URL" in r.stderr


def test_replaced_and_deleted_files_are_purged(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    """The files capability purges a file's URLs (and its thumbnails') when a write replaces
    or deletes it, in the write's transaction; `?images=1` srcsets point at the CDN."""
    from tests.helpers.files import make_collection, png

    col = make_collection(client, su)
    rec = client.post(
        "/api/collections/posts/records", files=[("doc", ("a.png", png(700, 400), "image/png"))]
    ).json()
    facts = client.get(f"/api/collections/posts/records/{rec['id']}?images=1").json()["@images"]
    assert facts[rec["doc"]]["srcset"].startswith(f"{CDN}/api/files/{col['id']}/{rec['id']}/")
    assert receiver.snapshot() == []  # a new file has nothing to purge
    r = client.patch(
        f"/api/collections/posts/records/{rec['id']}",
        files=[("doc", ("b.png", png(), "image/png"))],
    )
    assert r.status_code == 200
    jobs = _wait_jobs(client, su, 1, {"completed"})
    files = set(receiver.delivered()[0].json()["files"])
    for coll in (col["id"], "posts"):  # pb.files.getURL may use either
        old = f"{CDN}/api/files/{coll}/{rec['id']}/{rec['doc']}"
        assert {old, old + "?thumb=100x100", old + "?thumb=640x0"} <= files
    assert not any(r.json()["doc"] in f for f in files)  # the new file stays
    client.delete(f"/api/collections/posts/records/{rec['id']}")
    jobs = _wait_jobs(client, su, len(jobs) + 1, {"completed"})
    deleted = {f for d in receiver.delivered()[1:] for f in d.json()["files"]}
    assert f"{CDN}/api/files/posts/{rec['id']}/{r.json()['doc']}" in deleted
