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

from tests.helpers.backups import add_post, download, file_token, make_posts, titles
from tests.helpers.servers import SUPERUSER
from tests.helpers.wait import wait_until


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


def _call(client: TestClient, fn: Any, *args: Any) -> Any:
    return client.portal.call(fn, *args)  # type: ignore[union-attr]


def _backups(client: TestClient) -> Any:
    return client.app.state.services.extension("backups").backups  # type: ignore[attr-defined]


def test_one_operation_at_a_time_across_processes(client: TestClient, su: dict[str, str]) -> None:
    """The lock is a row in the database: another process holding it is simulated by
    taking it directly, as that process would."""
    state = _backups(client).state
    holder = _call(client, state.acquire, "create")
    assert holder is not None
    busy = "Try again later - another backup/restore operation has already been started."
    for method, url in (
        ("POST", "/api/backups"),
        ("POST", "/api/backups/x.zip/restore"),
        ("DELETE", "/api/backups/x.zip"),
    ):
        r = client.request(method, url, headers=su)
        assert r.status_code == 400, (url, r.text)
        assert r.json() == {"status": 400, "message": busy, "data": {}}
    assert client.get("/api/health", headers=su).json()["data"]["backups"]["running"] == "create"
    _call(client, state.release, holder)
    assert client.post("/api/backups", headers=su).status_code == 204
    # a holder that died lets go once its lease is over
    state.lock_timeout = -1.0
    assert _call(client, state.acquire, "create") is not None
    state.lock_timeout = 3600.0
    assert _call(client, state.acquire, "restore") is not None  # the lapsed one is taken over


def _rewrite(data: bytes, change: Any) -> bytes:
    """The archive with its manifest (or a member) changed by `change(name, bytes)`."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            z.writestr(name, change(name, src.read(name)))
    return out.getvalue()


def _upload(client: TestClient, su: dict[str, str], name: str, data: bytes) -> None:
    r = client.post(
        "/api/backups/upload", headers=su, files={"file": (name, data, "application/zip")}
    )
    assert r.status_code == 204, r.text


def test_damaged_or_newer_archives_are_refused(client: TestClient, su: dict[str, str]) -> None:
    make_posts(client, su)
    add_post(client, "only")
    assert client.post("/api/backups", headers=su, json={"name": "good.zip"}).status_code == 204
    r = client.get(f"/api/backups/good.zip?token={file_token(client, su)}")
    good = r.content
    db = "data.db" if "data.db" in zipfile.ZipFile(io.BytesIO(good)).namelist() else "postgres.dump"

    def newer(name: str, raw: bytes) -> bytes:
        if name != "manifest.json":
            return raw
        return orjson.dumps({**orjson.loads(raw), "formatVersion": 99})

    def flipped(name: str, raw: bytes) -> bytes:
        return raw[:-1] + bytes([raw[-1] ^ 1]) if name == db else raw

    def miscounted(name: str, raw: bytes) -> bytes:
        if name != "manifest.json":
            return raw
        doc = orjson.loads(raw)
        doc["databases"][db]["posts"] = 5
        return orjson.dumps(doc)

    _upload(client, su, "newer.zip", _rewrite(good, newer))
    _upload(client, su, "flipped.zip", _rewrite(good, flipped))
    _upload(client, su, "miscounted.zip", _rewrite(good, miscounted))
    _upload(client, su, "foreign.zip", _zip_of_pb())

    add_post(client, "after")
    r = client.post("/api/backups/newer.zip/restore", headers=su)
    assert r.status_code == 400
    assert "format version 99, newer than this Shipyard reads (1)" in r.json()["message"]
    r = client.post("/api/backups/flipped.zip/restore", headers=su)
    assert r.status_code == 400
    assert f"{db}: checksum differs from the manifest" in r.json()["message"]
    r = client.post("/api/backups/miscounted.zip/restore", headers=su)
    assert r.status_code == 400
    assert "table posts has 1 rows, the manifest says 5" in r.json()["message"]
    r = client.post("/api/backups/foreign.zip/restore", headers=su)
    assert r.status_code == 400
    assert "no manifest.json" in r.json()["message"]
    assert titles(client) == ["after", "only"]  # nothing was touched

    backups = _backups(client)
    assert _call(client, backups.verify, "good.zip").ok
    bad = _call(client, backups.verify, "miscounted.zip")
    assert not bad.ok
    assert bad.detail["problems"]


def _zip_of_pb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("data.db", b"SQLite format 3\x00")
    return out.getvalue()


def test_record_writes_answer_503_while_a_restore_runs(
    client: TestClient, su: dict[str, str]
) -> None:
    """A restore in another process is simulated by taking the lock as it does."""
    make_posts(client, su)
    rec = add_post(client, "before")
    state = _backups(client).state
    holder = _call(client, state.acquire, "restore")
    r = client.post("/api/collections/posts/records", json={"title": "during"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json() == {
        "status": 503,
        "message": "A backup is being restored; try again shortly.",
        "data": {},
    }
    r = client.patch(f"/api/collections/posts/records/{rec['id']}", json={"title": "x"})
    assert r.status_code == 503
    assert client.delete(f"/api/collections/posts/records/{rec['id']}").status_code == 503
    assert titles(client) == ["before"]  # reads go on
    _call(client, state.release, holder)
    add_post(client, "after")
    # a backup (not a restore) holding the lock does not stop writes
    holder = _call(client, state.acquire, "create")
    add_post(client, "during a backup")
    _call(client, state.release, holder)


def test_a_backup_does_not_stop_writes(client: TestClient, su: dict[str, str]) -> None:
    """Writes go on while the archive is made; the archive is one consistent moment: its
    counts match its own database (the check passes) and lie between before and after."""
    import threading

    make_posts(client, su)
    for i in range(20):
        add_post(client, f"seed {i:02d}")
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            add_post(client, f"live {n:04d}")
            written.append(f"live {n:04d}")
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: len(written) >= 3, what="writes before the backup")
        before = 20 + len(written)
        r = client.post("/api/backups", headers=su, json={"name": "live.zip"})
        after = 20 + len(written) + 1  # the one in flight
        wait_until(lambda: len(written) >= after - 20 + 2, what="writes after the backup")
    finally:
        stop.set()
        t.join()
    assert r.status_code == 204, r.text
    last = client.get("/api/health", headers=su).json()["data"]["backups"]["last"]
    assert last["verified"] is True
    assert last["problems"] == []
    manifest = orjson.loads(download(client, su, "live.zip").read("manifest.json"))
    dbs = manifest["databases"]
    posts = (dbs.get("data.db") or dbs["postgres.dump"])["posts"]
    assert before <= posts <= after
    assert after - before > 2  # writes were acknowledged while the backup ran
    got = client.get("/api/collections/posts/records?perPage=500").json()["totalItems"]
    assert got == 20 + len(written)  # every acknowledged write is there


def test_another_process_serves_the_restored_data(
    client: TestClient, su: dict[str, str], settings: Any
) -> None:
    """A second app on the same database (another process, as far as caches go) had the
    list cached; after the restore it serves the restored data, and its schema too."""
    from shipyard.app import create_app

    make_posts(client, su)
    add_post(client, "kept")
    assert client.post("/api/backups", headers=su, json={"name": "x.zip"}).status_code == 204
    with TestClient(create_app(settings)) as other:
        add_post(client, "later")
        assert titles(other) == ["kept", "later"]  # cached by the other process now
        assert titles(other) == ["kept", "later"]
        r = client.post(
            "/api/collections", headers=su, json={"name": "extra", "type": "base", "fields": []}
        )
        assert r.status_code == 200
        assert other.get("/api/collections/extra/records").status_code == 403
        assert client.post("/api/backups/x.zip/restore", headers=su).status_code == 204
        assert titles(other) == ["kept"]
        assert other.get("/api/collections/extra/records").status_code == 404
