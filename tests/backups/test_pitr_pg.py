"""Point-in-time recovery of PostgreSQL with pgBackRest (docs/operations/pitr-postgresql.md).

`shipyard backup pg-config` is checked on its own (the file, its mode, what it prints, no
secret on the terminal), then the runbook is played once per session on a cluster of the
test's own: archiving as the command says, a full backup, Shipyard writing before and after
a time T, the cluster stopped and restored to T into a fresh data directory, and Shipyard
started on it again. A missing pgbackrest or PostgreSQL fails (with what to install): CI
must not skip it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shipyard.cli import main
from tests.helpers.pgcluster import (
    INSTALL_HINT,
    Cluster,
    OsUser,
    pg_bin_dirs,
    require_pgbackrest,
)
from tests.helpers.servers import SUPERUSER, start_server, stop_server


def pg_config(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, ["backup", "pg-config", *args], env=env)


def test_pg_config_asks_the_server_for_its_data_directory(
    pg_admin_url: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(pg_admin_url) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "data"), "SHIPYARD_DATABASE_URL": pg_admin_url}
    conf, repo = tmp_path / "etc" / "pgbackrest.conf", tmp_path / "repo"
    r = pg_config(env, "--config", str(conf), "--repo", str(repo), "--retention-full", "4")
    assert r.exit_code == 0, r.output
    text = conf.read_text()
    assert "[shipyard]\n" in text
    assert f"pg1-path={row[0]}\n" in text
    assert f"repo1-path={repo}\n" in text
    assert "repo1-retention-full=4\n" in text
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert repo.is_dir()
    out = r.output
    assert "archive_mode = on" in out
    assert "wal_level = replica" in out
    archive = f"archive_command = 'pgbackrest --config={conf} --stanza=shipyard archive-push %p'"
    assert archive in out
    assert f"pgbackrest --config={conf} --stanza=shipyard stanza-create" in out


def test_pg_config_s3_repository_keeps_the_secret_in_the_file(tmp_path: Path) -> None:
    env = {
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_BACKUPS_S3_ENABLED": "true",
        "SHIPYARD_BACKUPS_S3_BUCKET": "team-backups",
        "SHIPYARD_BACKUPS_S3_REGION": "eu-west-3",
        "SHIPYARD_BACKUPS_S3_ENDPOINT": "http://minio.internal:9000",
        "SHIPYARD_BACKUPS_S3_ACCESS_KEY": "AKIAEXAMPLE",
        "SHIPYARD_BACKUPS_S3_SECRET": "s3cr3t-never-printed",
        "SHIPYARD_BACKUPS_S3_FORCE_PATH_STYLE": "true",
    }
    conf = tmp_path / "pgbackrest.conf"
    r = pg_config(
        env, "--config", str(conf), "--pg-path", "/srv/pg/data", "--pg-port", "5433",
        "--stanza", "app-db", "--pg-socket-path", "/run/postgresql",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "s3cr3t-never-printed" not in r.output
    assert "HTTPS only" in r.output  # the warning on stderr
    text = conf.read_text()
    for line in [
        "repo1-type=s3", "repo1-path=/pgbackrest", "repo1-s3-bucket=team-backups",
        "repo1-s3-endpoint=minio.internal", "repo1-s3-port=9000", "repo1-s3-region=eu-west-3",
        "repo1-s3-key=AKIAEXAMPLE", "repo1-s3-key-secret=s3cr3t-never-printed",
        "repo1-s3-uri-style=path", "[app-db]", "pg1-path=/srv/pg/data", "pg1-port=5433",
        "pg1-socket-path=/run/postgresql",
    ]:  # fmt: skip
        assert line + "\n" in text, line
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "repository s3://team-backups/pgbackrest" in r.output


def test_pg_config_refusals(tmp_path: Path) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "data")}
    conf = str(tmp_path / "c.conf")
    r = pg_config(env, "--config", conf)
    assert r.exit_code == 2
    assert "not PostgreSQL" in r.output
    r = pg_config(env, "--config", conf, "--pg-path", "/d", "--stanza", "-bad")
    assert r.exit_code == 2
    assert "--stanza" in r.output
    r = pg_config(env, "--config", conf, "--pg-path", "/d", "--repo-type", "s3")
    assert r.exit_code == 2
    assert "SHIPYARD_BACKUPS_S3_BUCKET" in r.output
    r = pg_config(env, "--config", conf, "--pg-path", "/d", "--retention-full", "0")
    assert r.exit_code == 2
    assert not Path(conf).exists()


# ------------------------------------------------------------ the drill, once per session


@dataclass
class Drill:
    before: set[str]  # titles written (and one deleted) before T
    after: set[str]  # titles written after T
    restored: list[str]  # the titles Shipyard lists on the restored cluster
    written_after_restore: bool
    seconds: dict[str, float]


@contextlib.contextmanager
def _api(url: str) -> Iterator[httpx.Client]:
    """A superuser's client of the server at `url`."""
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        r.raise_for_status()
        c.headers["Authorization"] = r.json()["token"]
        yield c


def _add(c: httpx.Client, title: str) -> str:
    r = c.post("/api/collections/notes/records", json={"title": title})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _titles(c: httpx.Client) -> list[str]:
    r = c.get("/api/collections/notes/records", params={"sort": "title", "perPage": 500})
    assert r.status_code == 200, r.text
    return [i["title"] for i in r.json()["items"]]


def _play(cluster: Cluster, user: OsUser, work: Path) -> Drill:
    seconds: dict[str, float] = {}
    stanza = "pitr_" + uuid.uuid4().hex[:8]
    conf, repo, logs = cluster.base / "pgbackrest.conf", cluster.base / "repo", cluster.base / "log"
    cluster.start()
    # 1. the configuration, as the runbook writes it (the data directory asked from the server)
    owner = ["--owner", user.name] if os.geteuid() == 0 else []
    r = pg_config(
        {"SHIPYARD_DATA_DIR": str(work / "cfg"), "SHIPYARD_DATABASE_URL": cluster.url},
        "--config", str(conf), "--repo", str(repo), "--log-path", str(logs),
        "--lock-path", str(cluster.base / "lock"),
        "--stanza", stanza, "--pg-socket-path", str(cluster.base), *owner,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = [line.strip() for line in r.output.splitlines()]
    settings = dict(line.split(" = ", 1) for line in out if " = " in line)
    assert settings["archive_mode"] == "on"
    commands = [shlex.split(line) for line in out if line.startswith("pgbackrest ")]
    # 2. archiving on (a restart), then stanza-create, check, the full backup
    cluster.stop()
    cluster.configure(settings)
    cluster.start()
    t0 = time.monotonic()
    for args in commands:
        if args[-1] in ("stanza-create", "check", "backup") and "--type=diff" not in args:
            try:
                user.run(args, cwd=cluster.base)
            except AssertionError as exc:
                if "VersionNotSupported" in str(exc) or "is not supported" in str(exc):
                    raise AssertionError(
                        f"this pgBackRest does not support PostgreSQL {cluster.major} "
                        f"({cluster.bin}): {INSTALL_HINT}\n{exc}"
                    ) from None
                raise
    seconds["stanza-create, check, full backup"] = time.monotonic() - t0
    # 3. Shipyard on the cluster: writes before T, T, writes (and a mistaken delete) after T
    srv = start_server(work / "srv1", cluster.url)
    try:
        with _api(srv.url) as c:
            fields = [{"name": "title", "type": "text"}]
            r = c.post("/api/collections", json={"name": "notes", "type": "base", "fields": fields})
            assert r.status_code == 200, r.text
            before = {f"before-{i}" for i in range(3)}
            ids = {title: _add(c, title) for title in sorted(before)}
            target = str(
                cluster.query(
                    "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
                )
            )
            after = {f"after-{i}" for i in range(3)}
            for title in sorted(after):
                _add(c, title)
            assert c.delete(f"/api/collections/notes/records/{ids['before-0']}").status_code == 204
            assert set(_titles(c)) == (before | after) - {"before-0"}
    finally:
        stop_server(srv)
    cluster.switch_and_wait_archived()
    # 4. the cluster stopped; restored to T into a fresh data directory, and started
    cluster.stop()
    restored = Cluster(cluster.bin, cluster.base, user, cluster.port)
    restored.data = cluster.base / "restored"
    base = next(a for a in commands if a[-1] == "stanza-create")[:-1]
    t0 = time.monotonic()
    user.run(
        [*base, f"--pg1-path={restored.data}", "--type=time", f"--target={target}",
         "--target-action=promote", "restore"],
        cwd=cluster.base,
    )  # fmt: skip
    seconds["pgbackrest restore"] = time.monotonic() - t0
    restored.start()
    restored.wait_promoted()
    seconds["restore until promoted"] = time.monotonic() - t0
    # 5. Shipyard on the restored cluster
    srv = start_server(work / "srv2", restored.url)
    try:
        with _api(srv.url) as c:
            listed = _titles(c)
            _add(c, "after-restore")  # the restored cluster takes writes again
            wrote = "after-restore" in _titles(c)
    finally:
        stop_server(srv)
        restored.stop()
    seconds["whole drill"] = sum(v for k, v in seconds.items() if k != "restore until promoted")
    return Drill(before, after, listed, wrote, seconds)


@pytest.fixture(scope="session")
def pitr_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    require_pgbackrest()
    dirs = pg_bin_dirs()
    if not dirs:
        raise AssertionError(f"no PostgreSQL binaries (initdb) found: {INSTALL_HINT}")
    user = OsUser.for_cluster()
    cluster = Cluster.create(dirs[0], user)
    started = time.monotonic()
    try:
        drill = _play(cluster, user, tmp_path_factory.mktemp("pitr"))
        drill.seconds["whole drill"] = time.monotonic() - started
        print(  # the time taken (shown with -s)
            "PITR drill (PostgreSQL "
            f"{cluster.major}): " + ", ".join(f"{k} {v:.1f} s" for k, v in drill.seconds.items())
        )
        yield drill
    finally:
        cluster.destroy()


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_restore_to_a_point_in_time(pitr_drill: Drill) -> None:
    restored = set(pitr_drill.restored)
    assert pitr_drill.before <= restored, "writes before T are missing"
    assert "before-0" in restored, "the delete after T was not undone"
    assert not (pitr_drill.after & restored), "writes after T are present"
    assert pitr_drill.written_after_restore, "the restored cluster refused a write"
