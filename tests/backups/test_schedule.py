"""Scheduled backups: the `backups` settings section, one job per tick however many
processes enqueue it, retention of the scheduled archives, and the gauge and default rule
that make a missing or failing backup an alert."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.testclient import TestClient

from shipyard.alerts.rules import DEFAULT_RULES
from tests.helpers.wait import wait_until


def _ext(client: TestClient) -> Any:
    return client.app.state.services.extension("backups")  # type: ignore[attr-defined]


def _call(client: TestClient, fn: Any, *args: Any) -> Any:
    return client.portal.call(fn, *args)  # type: ignore[union-attr]


def _jobs(client: TestClient, su: dict[str, str]) -> list[dict[str, Any]]:
    r = client.get("/api/jobs?kind=backups_create", headers=su)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _age(client: TestClient) -> float | None:
    rule = next(r for r in DEFAULT_RULES if r.name == "ShipyardBackupMissing")
    snap = _ext(client).svc.telemetry.metrics.snapshot()
    assert rule.kind.instant is not None
    return rule.kind.instant(snap, rule)


def test_settings_section_and_one_job_per_tick(client: TestClient, su: dict[str, str]) -> None:
    r = client.get("/api/settings", headers=su)
    assert r.json()["backups"] == {
        "cron": "",
        "cronMaxKeep": 3,
        "s3": {  # PocketBase's shape; the secret is never shown
            "enabled": False,
            "bucket": "",
            "region": "",
            "endpoint": "",
            "accessKey": "",
            "forcePathStyle": False,
        },
    }
    r = client.patch("/api/settings", headers=su, json={"backups": {"cron": "every day"}})
    assert r.status_code == 400
    assert r.json()["data"]["backups"]["cron"]["code"] == "validation_invalid_cron"
    r = client.patch("/api/settings", headers=su, json={"backups": {"cronMaxKeep": 0}})
    assert r.status_code == 400
    ext = _ext(client)
    _call(client, ext.refresh_gauge)
    assert _age(client) is None  # no schedule, no backup: nothing to alert on

    r = client.patch(
        "/api/settings", headers=su, json={"backups": {"cron": "0 3 * * *", "cronMaxKeep": 2}}
    )
    assert r.status_code == 200, r.text
    _call(client, ext.refresh_gauge)
    assert _age(client) > 1e9  # scheduled and never made: the alert's condition holds

    tick = 1_700_000_000 - 1_700_000_000 % 86400 + 3 * 3600  # some day, 03:00 UTC
    assert _call(client, ext.tick, tick + 30)
    assert not _call(client, ext.tick, tick + 40)  # this process fired it already
    ext._fired = {}  # another process, which has not: its insert of the same tick is a no-op
    _call(client, ext.tick, tick + 50)
    assert not _call(client, ext.tick, tick + 400)  # a tick missed for too long is skipped
    jobs = wait_until(
        lambda: [j for j in _jobs(client, su) if j["state"] == "completed"],
        timeout=60,
        step=0.2,
        what="the job ran",
    )
    assert len(_jobs(client, su)) == 1
    assert jobs[0]["result"]["ok"] is True
    assert _age(client) is not None
    _call(client, ext.refresh_gauge)
    assert 0 <= _age(client) < 60


def test_retention_keeps_the_newest_scheduled(client: TestClient, su: dict[str, str]) -> None:
    client.patch("/api/settings", headers=su, json={"backups": {"cronMaxKeep": 2}})
    assert client.post("/api/backups", headers=su, json={"name": "manual.zip"}).status_code == 204
    ext = _ext(client)
    # retention is what is tested here: the checks of these archives are tested elsewhere
    ext.backups.settings = dataclasses.replace(ext.backups.settings, backups_verify=False)
    made = []
    for _ in range(3):
        made.append(_call(client, ext._scheduled, None, {})["key"])
        time.sleep(0.01)
    keys = {i["key"] for i in client.get("/api/backups", headers=su).json()}
    assert keys == {"manual.zip", made[1], made[2]}  # manual backups are never pruned
    assert all(k.startswith("auto_backup_") for k in made)


def test_scratch_left_by_a_dead_process_is_swept(client: TestClient) -> None:
    import os

    ext = _ext(client)
    root = ext.backups.tmp_root
    old, fresh = root / "old", root / "fresh"
    for d in (old, fresh):
        d.mkdir(parents=True)
        (d / "part").write_bytes(b"x")
    past = time.time() - ext.backups.settings.backups_lock_timeout - 10
    os.utime(old, (past, past))
    ext._sweep()
    assert not old.exists()
    assert fresh.exists()  # another process's backup may be using it
