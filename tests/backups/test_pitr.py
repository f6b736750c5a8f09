"""Point-in-time recovery of SQLite (Litestream under `shipyard serve`): the disaster drill
of issue 15, run once per session on SQLite only (no test here asks for `backend`).

The drill: a real server replicates to a local directory while a client keeps creating
records and remembers each acknowledged one; the server's process group gets SIGKILL,
the data directory is deleted (the disk is lost), `shipyard backup restore` rebuilds it
from the replica — once to a moment T, then to the latest — and a new server must serve
every record acknowledged more than RPO_BOUND before the kill, exactly as acknowledged.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.pitr import NOTES, Writer, cli, litestream_pids, lock_free
from tests.helpers.s3 import new_bucket, s3_env
from tests.helpers.servers import free_port, start_server, stop_server
from tests.helpers.wait import wait_until

SYNC = 1.0  # SHIPYARD_BACKUPS_PITR_SYNC_INTERVAL: Litestream ships the WAL once a second
# A commit reaches the replica at Litestream's next sync tick (at most SYNC later), which
# reads the new WAL frames, encodes them and copies one file: milliseconds, but on a loaded
# 2-core machine the tick and that work can be late by a scheduler hiccup; 2 s covers it
# with room. Writes acknowledged earlier than this before the kill must all survive.
RPO_BOUND = SYNC + 2.0


def _env(data_dir: Path, replica: Path) -> dict[str, str]:
    return {
        "SHIPYARD_BACKUPS_PITR": "true",
        "SHIPYARD_BACKUPS_PITR_DIR": str(replica),
        "SHIPYARD_BACKUPS_PITR_SYNC_INTERVAL": str(SYNC),
        "SHIPYARD_WORKERS": "2",
    }


def _su(url: str, token: str) -> dict[str, str]:
    return {"Authorization": token}


def _pitr_health(url: str, token: str) -> dict[str, Any]:
    r = httpx.get(url + "/api/health", headers={"Authorization": token})
    assert r.status_code == 200, r.text
    return dict(r.json()["data"]["backups"]["pitr"])


def _replicated_ids(data_dir: Path, scratch: Path, env: dict[str, str] | None = None) -> set[str]:
    """The ids of `notes` in a restore of the replica's latest state, made aside with
    Litestream and the server's configuration while the server keeps running."""
    binary = Path(sys.executable).parent / "litestream"
    scratch.unlink(missing_ok=True)
    config = data_dir / ".pitr" / "litestream.yml"
    args = ["restore", "-config", str(config), "-no-expand-env", "-o", str(scratch)]
    r = subprocess.run(
        [str(binary), *args, str(data_dir / "data.db")],
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "AWS_CA_BUNDLE"},
        capture_output=True,
        timeout=60,
    )
    return _ids(scratch) if r.returncode == 0 else set()


def _ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {str(r[0]) for r in conn.execute("SELECT id FROM notes")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()  # an open connection would stop the next restore (seen as in use)


def _all_notes(url: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        r = httpx.get(
            url + "/api/collections/notes/records",
            params={"page": page, "perPage": 1000, "sort": "seq"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        out.update({item["id"]: item for item in body["items"]})
        if page >= body["totalPages"]:
            return out
        page += 1


def test_disaster_recovery_and_restore_to_a_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    replica = tmp_path / "replica"  # another disk, in production
    extra = _env(data_dir, replica)
    server = start_server(data_dir, "", extra)
    env = server.env
    try:
        token = server.superuser_token()
        r = httpx.post(server.url + "/api/collections", json=NOTES, headers=_su(server.url, token))
        assert r.status_code == 200, r.text
        health = wait_until(
            lambda: (h := _pitr_health(server.url, token)).get("running") and h,
            timeout=30,
            what="replication running",
        )
        assert health["replica"] == str(replica)
        config = data_dir / ".pitr" / "litestream.yml"
        # one Litestream for the data directory, not one per worker (SHIPYARD_WORKERS=2)
        assert litestream_pids(config) == [health["pid"]]
        assert "SECRET" not in config.read_text().upper()
        # a Litestream that dies is started again (after a 1 s back-off)
        os.kill(health["pid"], signal.SIGKILL)
        health = wait_until(
            lambda: (
                (h := _pitr_health(server.url, token)).get("running") and h["restarts"] == 1 and h
            ),
            timeout=30,
            what="litestream restarted",
        )
        assert litestream_pids(config) == [health["pid"]]

        # A: written, then seen in the replica; T after that; B: written after T
        a = Writer(server.url, "a").start()
        wait_until(lambda: len(a.acks) >= 30, timeout=60, what="30 writes")
        a.stop()
        assert not a.error
        a_ids = {rec["id"] for _, rec in a.acks}
        scratch = tmp_path / "scratch.db"
        wait_until(
            lambda: a_ids <= _replicated_ids(data_dir, scratch),
            timeout=30,
            step=0.2,
            what="A in the replica",
        )
        moment = time.time()

        b = Writer(server.url, "b").start()
        # long enough that many writes are older than RPO_BOUND when the server dies
        wait_until(
            lambda: len(b.acks) >= 100 and b.acks[-1][0] - b.acks[0][0] > RPO_BOUND + 3,
            timeout=120,
            what="writes for a few seconds",
        )
        health = _pitr_health(server.url, token)
        assert health["running"]
        assert health["restarts"] == 1
        assert set(health["databases"]) == {"data.db", "auxiliary.db"}

        os.killpg(server.proc.pid, signal.SIGKILL)  # the machine dies mid-write
        killed = time.time()
        server.proc.wait(timeout=30)
        # the writer keeps writing until it fails (stopping it first could end its loop
        # cleanly between two requests, without ever seeing the server go)
        wait_until(lambda: b.error, timeout=30, what="the writer saw the server go")
        b.stop()
        # Litestream dies with its supervisor (PR_SET_PDEATHSIG) and lets go of the lock
        wait_until(lambda: not litestream_pids(config), timeout=30, what="litestream gone")
        wait_until(lambda: lock_free(data_dir), timeout=30, what="the lock free")
    finally:
        stop_server(server)
    shutil.copy(server.log_path, tmp_path / "server-1.log")
    shutil.rmtree(data_dir)  # the disk is lost: the database, its WAL, Litestream's state
    data_dir.mkdir()

    # to the moment T: every write of A, none of B
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1e6):06d}Z"
    r = cli(env, "backup", "restore", "--at", at)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["at"].startswith(at[:19])
    restored = _ids(data_dir / "data.db")
    assert a_ids <= restored
    assert not restored & {rec["id"] for _, rec in b.acks}

    # to the latest (the moment's files are moved aside)
    r = cli(env, "backup", "restore", "--from-replica")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["replaced"]

    server = start_server(data_dir, "", extra)
    try:
        got = _all_notes(server.url)
        for _, rec in a.acks:
            assert got.get(rec["id"]) == rec
        must = [(t, rec) for t, rec in b.acks if t < killed - RPO_BOUND]
        assert len(must) > 20
        for t, rec in must:
            assert got.get(rec["id"]) == rec, f"acknowledged {killed - t:.2f} s before the kill"
        recovered = [(t, rec) for t, rec in b.acks if got.get(rec["id"]) == rec]
        assert recovered == b.acks[: len(recovered)]  # a prefix: nothing lost in between
        rpo = b.acks[-1][0] - recovered[-1][0]
        print(
            f"\nPITR drill: {len(b.acks)} acknowledged, {len(recovered)} recovered; "
            f"measured RPO {rpo:.3f} s (bound {RPO_BOUND:.1f} s)"
        )
        # the restored instance replicates again and takes writes
        token = server.superuser_token()
        wait_until(lambda: _pitr_health(server.url, token)["running"], timeout=30)
        c = httpx.post(server.url + "/api/collections/notes/records", json={"body": "after"})
        assert c.status_code == 200, c.text
        wait_until(  # shipped on top of the restored history
            lambda: c.json()["id"] in _replicated_ids(data_dir, tmp_path / "after.db"),
            timeout=30,
            step=0.2,
            what="the new write in the replica",
        )
        assert {rec["id"] for _, rec in recovered} <= _ids(tmp_path / "after.db")
    finally:
        stop_server(server)
    # a clean stop stops Litestream too
    wait_until(lambda: lock_free(data_dir), timeout=30, what="the lock free")


def test_restore_refuses_while_replication_runs_and_bad_input(tmp_path: Path) -> None:
    from shipyard.backups.pitr import open_lock, try_lock
    from shipyard.settings import load_settings

    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_BACKUPS_PITR_DIR": str(tmp_path / "replica"),
    }
    r = cli(env, "backup", "restore")
    assert r.returncode == 2
    assert "--at" in r.stderr
    r = cli(env, "backup", "restore", "x.zip", "--from-replica")
    assert r.returncode == 2
    r = cli(env, "backup", "restore", "--at", "yesterday")
    assert r.returncode == 2
    assert "ISO 8601" in r.stderr
    r = cli(env, "backup", "restore", "--at", "2999-01-01T00:00:00Z")
    assert r.returncode == 2
    assert "future" in r.stderr
    r = cli(env, "backup", "restore", "--from-replica")  # nothing replicated yet
    assert r.returncode == 1
    assert "cannot restore data.db" in r.stderr

    # a process with the database open (a server without PITR, a worker) is seen too
    db = tmp_path / "data" / "data.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        r = cli(env, "backup", "restore", "--from-replica")
        assert r.returncode == 1
        assert "data.db is open in another process" in r.stderr
    conn.close()

    fd = open_lock(load_settings(data_dir=tmp_path / "data"))
    try:
        assert try_lock(fd)  # as a running supervisor holds it
        r = cli(env, "backup", "restore", "--from-replica")
        assert r.returncode == 1
        assert "stop it first" in r.stderr
    finally:
        os.close(fd)


def test_serve_without_litestream_stops_at_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_PORT": str(free_port()),
        "SHIPYARD_BACKUPS_PITR": "true",
        "SHIPYARD_BACKUPS_PITR_LITESTREAM": str(tmp_path / "nowhere" / "litestream"),
    }
    r = cli(env, "serve")
    assert r.returncode == 2
    assert "SHIPYARD_BACKUPS_PITR_LITESTREAM: no executable file" in r.stderr


def test_pitr_settings_are_checked(tmp_path: Path) -> None:
    from shipyard.settings import SettingsError, load_settings

    def bad(**kw: Any) -> str:
        with pytest.raises(SettingsError) as exc:
            load_settings(data_dir=tmp_path, **kw)
        return str(exc.value)

    assert "SYNC_INTERVAL" in bad(backups_pitr_sync_interval=0)
    assert "RETENTION" in bad(backups_pitr_retention=60)
    assert "SNAPSHOT_INTERVAL" in bad(backups_pitr_snapshot_interval=30)
    assert "EXACT_WINDOW" in bad(backups_pitr_exact_window=10)
    assert "S3_PATH" in bad(backups_pitr_s3_path="/abs")
    assert "needs SHIPYARD_BACKUPS_S3_BUCKET" in bad(backups_pitr_s3=True)
    msg = bad(backups_pitr=True, database_url="postgresql://u@127.0.0.1/x")
    assert "pgBackRest" in msg
    ok = load_settings(data_dir=tmp_path, backups_pitr=True)
    assert ok.backups_pitr_sync_interval == 1.0


def test_replication_to_s3(tmp_path: Path, s3_endpoint: str) -> None:
    """The replica in the backups' bucket (moto): written by `serve`, restored from."""
    bucket = new_bucket(s3_endpoint)
    data_dir = tmp_path / "data"
    secret = "sekrit-" + secrets.token_hex(8)  # moto takes any key
    keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": secret}
    extra = {
        **s3_env(s3_endpoint, bucket, "SHIPYARD_BACKUPS_S3_"),
        "SHIPYARD_BACKUPS_S3_SECRET": secret,
        "SHIPYARD_BACKUPS_S3_ENABLED": "false",  # archives stay local; only the replica in S3
        "SHIPYARD_BACKUPS_PITR": "true",
        "SHIPYARD_BACKUPS_PITR_S3": "true",
        "SHIPYARD_BACKUPS_PITR_S3_PATH": "drill/pitr",
    }
    server = start_server(data_dir, "", extra)
    env = server.env
    try:
        token = server.superuser_token()
        r = httpx.post(server.url + "/api/collections", json=NOTES, headers=_su(server.url, token))
        assert r.status_code == 200, r.text
        w = Writer(server.url, "s").start()
        wait_until(lambda: len(w.acks) >= 20, timeout=60, what="20 writes")
        w.stop()
        ids = {rec["id"] for _, rec in w.acks}
        health = _pitr_health(server.url, token)
        assert health["replica"] == f"s3://{bucket}/drill/pitr"
        config = data_dir / ".pitr" / "litestream.yml"
        assert secret not in config.read_text()
        wait_until(
            lambda: ids <= _replicated_ids(data_dir, tmp_path / "s.db", keys),
            timeout=60,
            step=0.5,
            what="the writes in the bucket",
        )
    finally:
        stop_server(server)
    assert secret not in server.log_path.read_text()  # nor in the log
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    r = cli(env, "backup", "restore", "--from-replica")
    assert r.returncode == 0, r.stderr
    assert ids <= _ids(data_dir / "data.db")


def test_one_litestream_per_data_directory(tmp_path: Path) -> None:
    """Two servers on one data directory: one Litestream; when its server stops, the other
    server's supervisor takes over."""
    data_dir = tmp_path / "data"
    extra = {"SHIPYARD_BACKUPS_PITR": "true", "SHIPYARD_BACKUPS_PITR_DIR": str(tmp_path / "r")}
    config = data_dir / ".pitr" / "litestream.yml"
    first = start_server(data_dir, "", extra)
    second = None
    try:
        token = first.superuser_token()
        pid = wait_until(
            lambda: (h := _pitr_health(first.url, token)).get("running") and h["pid"],
            timeout=30,
            what="replication running",
        )
        # and as metrics (a gauge per process, the highest shown)
        wait_until(
            lambda: "shipyard_pitr_running 1" in httpx.get(first.url + "/metrics").text,
            timeout=60,
            step=0.5,
            what="shipyard_pitr_running 1",
        )
        assert (
            'shipyard_pitr_lag_seconds{database="data.db"}'
            in httpx.get(first.url + "/metrics").text
        )
        second = start_server(data_dir, "", extra)
        assert wait_until(lambda: litestream_pids(config), timeout=30) == [pid]
        token = second.superuser_token()  # its start set the superuser again: a new token
        assert _pitr_health(second.url, token)["pid"] == pid  # the one status of the directory
        stop_server(first)
        new = wait_until(
            lambda: (p := litestream_pids(config)) and p != [pid] and p,
            timeout=30,
            what="the second server's litestream",
        )
        assert len(new) == 1
        wait_until(lambda: _pitr_health(second.url, token)["pid"] == new[0], timeout=30)
    finally:
        stop_server(first)
        if second is not None:
            stop_server(second)
    wait_until(lambda: lock_free(data_dir), timeout=30, what="the lock free")


def test_drill_serves_the_replicas_latest_state(tmp_path: Path) -> None:
    """With PITR on, a drill restores the latest archive and then the replica's WAL up to
    now: the scratch instance serves the writes made after the archive too."""
    data_dir = tmp_path / "data"
    server = start_server(data_dir, "", _env(data_dir, tmp_path / "replica"))
    try:
        token = server.superuser_token()
        su = _su(server.url, token)
        assert httpx.post(server.url + "/api/collections", json=NOTES, headers=su).is_success
        wait_until(lambda: _pitr_health(server.url, token).get("running"), timeout=30)
        for i in range(5):
            r = httpx.post(server.url + "/api/collections/notes/records", json={"seq": i})
            assert r.status_code == 200, r.text
        r = httpx.post(server.url + "/api/backups", json={"name": "five.zip"}, headers=su)
        assert r.status_code == 204, r.text
        later = set()
        for i in range(7):
            r = httpx.post(server.url + "/api/collections/notes/records", json={"seq": 10 + i})
            later.add(r.json()["id"])
        wait_until(
            lambda: later <= _replicated_ids(data_dir, tmp_path / "check.db"),
            timeout=60,
            what="the later writes in the replica",
        )
        r = cli(server.env, "backup", "drill")
        assert r.returncode == 0, r.stdout + r.stderr
        drill = json.loads(r.stdout)
        assert drill["key"] == "five.zip"
        assert drill["ok"] is True, drill
        assert drill["replay"]["databases"][0]["txid"]
        assert drill["records"]["notes"] == 12  # 5 in the archive, 7 from the WAL
        assert drill["backupNewest"] == drill["liveNewest"]  # nothing written since
        assert drill["rpo"] == 0
    finally:
        stop_server(server)
