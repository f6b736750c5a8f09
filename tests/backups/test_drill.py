"""Restore drills on SQLite and PostgreSQL: `shipyard backup drill` restores the newest
archive into a scratch place, starts a real `shipyard serve` on it, lists every
collection's records through HTTP and compares the totals with the manifest; RTO and RPO
are recorded, shown to superusers (`GET /api/backups/drills`, health), exported as gauges,
and a failed drill makes the ShipyardBackupDrillFailed alert's condition hold. One real
drill per engine (it starts a server); the failing one stops before any server starts."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from shipyard.alerts.rules import DEFAULT_RULES
from shipyard.backups.service import BackupError
from shipyard.cli import main
from shipyard.settings import Settings
from tests.helpers.backups import add_post, file_token, make_posts, titles
from tests.helpers.wait import wait_until


def _ext(client: TestClient) -> Any:
    return client.app.state.services.extension("backups")  # type: ignore[attr-defined]


def _call(client: TestClient, fn: Any, *args: Any) -> Any:
    return client.portal.call(fn, *args)  # type: ignore[union-attr]


def _drill_alert(client: TestClient) -> float | None:
    rule = next(r for r in DEFAULT_RULES if r.name == "ShipyardBackupDrillFailed")
    assert rule.kind.instant is not None
    return rule.kind.instant(_ext(client).svc.telemetry.metrics.snapshot(), rule)


def _gauge(client: TestClient, name: str) -> float:
    g = _ext(client).drill_gauges[name]
    return float(next(iter(g.values.values())))


def test_drill_through_the_cli(
    client: TestClient, su: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {
        "SHIPYARD_DATA_DIR": str(settings.data_dir),
        "SHIPYARD_DATABASE_URL": settings.database_url,
    }
    run = CliRunner().invoke
    r = run(main, ["backup", "drill"], env=env)
    assert r.exit_code == 1
    assert "there is no backup to drill" in r.output

    make_posts(client, su)
    for i in range(3):
        add_post(client, f"post {i}", b"file" if i == 0 else None)
    assert client.post("/api/backups", headers=su, json={"name": "b1.zip"}).status_code == 204
    add_post(client, "written after the backup")  # what a restore would lose: RPO > 0

    r = run(main, ["backup", "drill"], env=env)
    assert r.exit_code == 0, r.output
    drill = json.loads(r.output)
    assert drill["key"] == "b1.zip"
    assert drill["action"] == "drill"
    assert drill["ok"] is True, drill
    assert drill["problems"] == []
    assert drill["verified"] is True
    assert drill["integrity"] == "ok"
    assert 0 < drill["startSeconds"] <= drill["rto"] <= drill["seconds"]
    assert drill["rpo"] > 0
    assert drill["backupNewest"] < drill["liveNewest"]
    assert drill["collections"] >= 2  # posts and the system ones
    assert drill["reads"] >= drill["collections"]
    # the live data was not touched; the scratch directory is gone
    assert titles(client) == ["post 0", "post 1", "post 2", "written after the backup"]
    assert not any(_ext(client).backups.tmp_root.iterdir())

    # shown to superusers: the drills endpoint and health; gauges behind the alert
    assert client.get("/api/backups/drills").status_code == 401
    listed = client.get("/api/backups/drills", headers=su)
    assert listed.status_code == 200, listed.text
    items = listed.json()
    assert [(i["key"], i["ok"]) for i in items] == [("b1.zip", True)]
    assert items[0]["rto"] == drill["rto"]
    assert items[0]["finished"].endswith("Z")
    health = client.get("/api/health", headers=su).json()["data"]["backups"]
    assert health["lastDrill"]["rto"] == drill["rto"]
    ext = _ext(client)
    _call(client, ext.refresh_gauge)
    assert _drill_alert(client) == 0.0
    assert _gauge(client, "shipyard_backup_drill_rto_seconds") == drill["rto"]
    assert _gauge(client, "shipyard_backup_drill_last_success_timestamp_seconds") > 0

    # a drill that fails (the archive's counts disagree) raises the alert's condition
    token = file_token(client, su)
    good = client.get(f"/api/backups/b1.zip?token={token}").content
    _upload(client, su, "zz_bad.zip", _miscount(good))
    r = run(main, ["backup", "drill", "zz_bad.zip"], env=env)
    assert r.exit_code == 1
    failed = json.loads(r.output)
    assert failed["ok"] is False
    assert any("the manifest says 99" in p for p in failed["problems"])
    _call(client, ext.refresh_gauge)
    assert _drill_alert(client) == 1.0
    # the latest success still shows its RTO
    assert _gauge(client, "shipyard_backup_drill_rto_seconds") == drill["rto"]
    items = client.get("/api/backups/drills", headers=su).json()
    assert [i["ok"] for i in items] == [False, True]


def _miscount(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            raw = src.read(name)
            if name == "manifest.json":
                doc = orjson.loads(raw)
                for counts in doc["databases"].values():
                    if "posts" in counts:
                        counts["posts"] = 99
                raw = orjson.dumps(doc)
            z.writestr(name, raw)
    return out.getvalue()


def _upload(client: TestClient, su: dict[str, str], name: str, data: bytes) -> Any:
    return client.post(
        "/api/backups/upload", headers=su, files={"file": (name, data, "application/zip")}
    )


def test_scheduled_drill_runs_once_per_tick(client: TestClient, su: dict[str, str]) -> None:
    """Weekly by default; each tick is one `backups_drill` job however many processes
    enqueue it. With no archive it is skipped, not failed (no alert)."""
    ext = _ext(client)
    assert ext.backups.settings.backups_drill_cron == "0 4 * * 0"
    sunday = 1_700_352_000 + 4 * 3600  # 2023-11-19, a Sunday, 04:00 UTC
    assert _call(client, ext.tick, sunday + 30)
    assert not _call(client, ext.tick, sunday + 40)
    ext._fired = {}  # another process: its insert of the same tick is a no-op
    _call(client, ext.tick, sunday + 50)

    def jobs() -> list[dict[str, Any]]:
        r = client.get("/api/jobs?kind=backups_drill", headers=su)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    done = wait_until(
        lambda: [j for j in jobs() if j["state"] == "completed"], timeout=60, what="the drill"
    )
    assert len(jobs()) == 1
    assert done[0]["result"] == {"skipped": "no backup"}
    _call(client, ext.refresh_gauge)
    assert _drill_alert(client) is None  # no drill yet: nothing to alert on


def test_drill_of_a_missing_archive_is_refused_not_failed(
    client: TestClient, su: dict[str, str]
) -> None:
    with pytest.raises(BackupError, match=r"Missing or invalid backup file\."):
        _call(client, _ext(client).backups.drill, "nope.zip")
    assert client.get("/api/backups/drills", headers=su).json() == []
