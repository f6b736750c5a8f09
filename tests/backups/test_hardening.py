"""What a restore must not let through: schema (collections) and settings writes while a
restore runs answer 503 like record writes, in every process; an archive that unpacks to
more than `backups_max_unpacked_size` is refused — on upload from the sizes its members
declare (400), and on verify/restore from the bytes actually read, whatever they declare."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.backups import archive
from tests.helpers.backups import add_post, file_token, make_posts

MESSAGE = "A backup is being restored; try again shortly."


def _backups(client: TestClient) -> Any:
    return client.app.state.services.extension("backups").backups  # type: ignore[attr-defined]


def _call(client: TestClient, fn: Any, *args: Any) -> Any:
    return client.portal.call(fn, *args)  # type: ignore[union-attr]


def test_schema_and_settings_writes_answer_503_while_a_restore_runs(
    client: TestClient, su: dict[str, str]
) -> None:
    """A restore in another process is simulated by taking the lock as it does."""
    make_posts(client, su)
    state = _backups(client).state
    holder = _call(client, state.acquire, "restore")
    try:
        writes = [
            ("POST", "/api/collections", {"name": "during", "type": "base", "fields": []}),
            ("PATCH", "/api/collections/posts", {"listRule": None}),
            ("DELETE", "/api/collections/posts", None),
            ("PUT", "/api/collections/import", {"collections": [{"name": "imp", "type": "base"}]}),
            ("PATCH", "/api/settings", {"meta": {"appName": "during"}}),
        ]
        for method, url, body in writes:
            r = client.request(method, url, headers=su, json=body)
            assert r.status_code == 503, (url, r.text)
            assert r.headers["retry-after"] == "5"
            assert r.json() == {"status": 503, "message": MESSAGE, "data": {}}
        assert client.get("/api/collections/posts", headers=su).status_code == 200  # reads go on
        assert client.get("/api/settings", headers=su).status_code == 200
    finally:
        _call(client, state.release, holder)
    r = client.post(
        "/api/collections", headers=su, json={"name": "after", "type": "base", "fields": []}
    )
    assert r.status_code == 200, r.text
    r = client.patch("/api/settings", headers=su, json={"meta": {"appName": "after"}})
    assert r.status_code == 200, r.text
    # a backup (not a restore) holding the lock holds nothing back
    holder = _call(client, state.acquire, "create")
    r = client.patch("/api/settings", headers=su, json={"meta": {"appName": "again"}})
    assert r.status_code == 200, r.text
    _call(client, state.release, holder)


def _zeros_zip(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", b"{}")
        z.writestr("data.db", b"\0" * size)  # compresses to a few KiB
    return out.getvalue()


def test_archives_past_the_unpacked_limit_are_refused(
    client: TestClient, su: dict[str, str]
) -> None:
    backups = _backups(client)
    limit = 1024 * 1024
    backups.settings = dataclasses.replace(backups.settings, backups_max_unpacked_size=limit)
    bomb = _zeros_zip(4 * limit)
    assert len(bomb) < limit // 10
    r = client.post(
        "/api/backups/upload", headers=su, files={"file": ("bomb.zip", bomb, "application/zip")}
    )
    assert r.status_code == 400, r.text
    assert "unpacks to more than 1048576 bytes" in r.json()["message"]
    assert client.get("/api/backups", headers=su).json() == []

    # an archive stored another way (made before the limit was lowered) is refused by
    # verify and restore, and nothing is touched
    make_posts(client, su)
    add_post(client, "x" * 2000, b"y" * limit)
    backups.settings = dataclasses.replace(backups.settings, backups_max_unpacked_size=1 << 40)
    assert client.post("/api/backups", headers=su, json={"name": "big.zip"}).status_code == 204
    size = len(client.get(f"/api/backups/big.zip?token={file_token(client, su)}").content)
    backups.settings = dataclasses.replace(backups.settings, backups_max_unpacked_size=limit)
    assert size < limit * 2
    r = client.post("/api/backups/big.zip/restore", headers=su)
    assert r.status_code == 400
    assert "unpacks to more than" in r.json()["message"]
    run = _call(client, backups.verify, "big.zip")
    assert not run.ok
    assert any("unpacks to more than" in p for p in run.detail["problems"])


def test_bytes_read_are_counted_whatever_the_members_declare(tmp_path: Path) -> None:
    """The declared sizes are checked first (cheap); reading counts again, so a limit
    holds even where the declaration is not looked at."""
    path = tmp_path / "a.zip"
    path.write_bytes(_zeros_zip(3 * 1024 * 1024))
    manifest = {"members": {"data.db": {"size": 3 * 1024 * 1024, "sha256": ""}}}
    with pytest.raises(archive.TooLarge):
        archive.check_members(path, manifest, limit=2 * 1024 * 1024)
    with pytest.raises(archive.TooLarge):
        archive.extract(path, "data.db", tmp_path / "out", limit=1024 * 1024)
    with pytest.raises(archive.TooLarge):
        archive.read_manifest(path, limit=1024 * 1024)
    assert archive.check_members(path, manifest, limit=4 * 1024 * 1024) == [
        "data.db: checksum differs from the manifest"
    ]


def test_a_job_running_during_a_restore_is_not_run_twice(
    client: TestClient, su: dict[str, str]
) -> None:
    """The archive holds the job pending; a worker claimed it since and runs it while the
    restore runs: the restored row is given back to that worker (its attempt, a fresh
    lease), so no other worker claims it again and its completion is recorded."""
    import time

    svc = client.app.state.services  # type: ignore[attr-defined]
    queue = svc.jobs.queue
    # far in the future: the in-process worker leaves it alone
    enq = _call(client, lambda: svc.jobs.enqueue("backups_create", {}, delay=86400.0))
    assert client.post("/api/backups", headers=su, json={"name": "j.zip"}).status_code == 204
    lease = time.time() + 30
    _call(
        client,
        queue.db.execute,
        f'UPDATE "{queue.table}" SET "state" = \'running\', "attempt" = 1, '
        '"worker" = \'worker-x\', "lease_until" = ? WHERE "id" = ?',
        (lease, enq.id),
    )  # as a worker's claim does
    assert client.post("/api/backups/j.zip/restore", headers=su).status_code == 204
    job = _call(client, queue.get, enq.id)
    assert (job.state, job.attempt, job.worker) == ("running", 1, "worker-x")
    assert job.lease_until > time.time()
    assert _call(client, queue.complete, None, job, {"done": True})  # its completion counts
    assert _call(client, queue.get, enq.id).state == "completed"


def test_the_new_settings_are_checked() -> None:
    from shipyard.settings import SettingsError, load_settings

    s = load_settings(env={})
    assert (s.backups_drill_cron, s.backups_drill_timeout) == ("0 4 * * 0", 600.0)
    assert s.backups_max_unpacked_size == 32 * 1024**3
    assert load_settings(env={"SHIPYARD_BACKUPS_DRILL_CRON": ""}).backups_drill_cron == ""
    for name, value, says in (
        ("SHIPYARD_BACKUPS_DRILL_CRON", "every sunday", "SHIPYARD_BACKUPS_DRILL_CRON"),
        ("SHIPYARD_BACKUPS_DRILL_TIMEOUT", "1", "between 10 s and 1 day"),
        ("SHIPYARD_BACKUPS_DRILL_TIMEOUT", "nan", "between 10 s and 1 day"),
        ("SHIPYARD_BACKUPS_MAX_UNPACKED_SIZE", "1000", "at least 1 MiB"),
    ):
        with pytest.raises(SettingsError, match=says):
            load_settings(env={name: value})
