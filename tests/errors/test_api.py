"""The superusers' error API (projects, keys, issues, events), in process on both backends;
Shipyard's failed jobs in the built-in project; what alerts read (`tracker.activity`); the
retention clean-up; the metric; and `shipyard errors dsn`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.errors.activity import ErrorActivity
from shipyard.settings import load_settings
from tests.helpers.wait import wait_until


def _ext(client: TestClient) -> Any:
    svc = client.app.state.services  # type: ignore[attr-defined]
    return next(e for e in svc.extensions if e.name == "errors")


def _send(client: TestClient, project: dict[str, Any], message: str, **extra: Any) -> str:
    eid = uuid.uuid4().hex
    r = client.post(
        f"/api/{project['id']}/store/?sentry_key={project['publicKey']}",
        json={"event_id": eid, "message": message, **extra},
    )
    assert r.status_code == 200, r.text
    return eid


def test_projects_are_managed_by_superusers(client: TestClient, su: dict[str, str]) -> None:
    assert client.get("/api/errors/projects").status_code == 401
    assert client.get("/api/errors").status_code == 401
    r = client.post("/api/errors/projects", json={"name": "web", "rateLimit": 50}, headers=su)
    assert r.status_code == 200, r.text
    web = r.json()
    assert web["dsn"] == f"http://{web['publicKey']}@testserver/{web['id']}"
    assert web["rateLimit"] == 50
    assert web["builtin"] is False
    names = [p["name"] for p in client.get("/api/errors/projects", headers=su).json()["items"]]
    assert names == ["shipyard", "web"]
    for bad in ({"name": ""}, {"name": "a b"}, {"name": "web"}, {"name": "x", "rateLimit": -1},
                {"name": "x", "rateLimit": "5"}, {}):  # fmt: skip
        assert client.post("/api/errors/projects", json=bad, headers=su).status_code == 400, bad
    r = client.patch(f"/api/errors/projects/{web['id']}", json={"name": "website"}, headers=su)
    assert r.json()["name"] == "website"
    assert client.get("/api/errors/projects/abc", headers=su).status_code == 400
    assert client.get("/api/errors/projects/999999", headers=su).status_code == 404

    # rotating the key: the old one stops working at once in this process
    _send(client, web, "before rotation")
    rotated = client.post(f"/api/errors/projects/{web['id']}/rotate-key", headers=su).json()
    assert rotated["publicKey"] != web["publicKey"]
    r = client.post(f"/api/{web['id']}/store/?sentry_key={web['publicKey']}", json={"message": "x"})
    assert r.status_code == 403
    _send(client, rotated, "after rotation")

    assert client.delete(f"/api/errors/projects/{web['id']}", headers=su).status_code == 204
    assert client.get(f"/api/errors/projects/{web['id']}", headers=su).status_code == 404
    assert client.get("/api/errors", headers=su).json()["totalItems"] == 0


def test_issues_list_filter_sort_and_status(client: TestClient, su: dict[str, str]) -> None:
    p = client.post("/api/errors/projects", json={"name": "app"}, headers=su).json()
    for i in range(3):
        _send(client, p, f"disk {i} full", level="warning", user={"email": f"u{i}@example.com"})
    _send(client, p, "cache cold", level="info")
    page = client.get("/api/errors", params={"sort": "-count"}, headers=su).json()
    assert [(i["title"][:4], i["count"], i["users"]) for i in page["items"]] == [
        ("disk", 3, 3),
        ("cach", 1, 0),
    ]
    assert page["totalItems"] == 2
    disk = page["items"][0]
    one = client.get(
        "/api/errors", params={"perPage": 1, "page": 2, "sort": "count"}, headers=su
    ).json()
    assert [i["id"] for i in one["items"]] == [disk["id"]]
    assert one["totalPages"] == 2
    assert client.get("/api/errors", params={"level": "info"}, headers=su).json()["totalItems"] == 1
    for bad in ({"sort": "nope"}, {"status": "open"}, {"level": "loud"}, {"page": "0"},
                {"perPage": "x"}, {"project": "-1"}):  # fmt: skip
        assert client.get("/api/errors", params=bad, headers=su).status_code == 400, bad
    r = client.patch(f"/api/errors/{disk['id']}", json={"status": "resolved"}, headers=su)
    assert r.json()["status"] == "resolved"
    assert (
        client.patch(f"/api/errors/{disk['id']}", json={"status": "gone"}, headers=su).status_code
        == 400
    )
    assert (
        client.patch(f"/api/errors/{disk['id']}", json={"title": "x"}, headers=su).status_code
        == 400
    )
    assert (
        client.patch("/api/errors/nope", json={"status": "ignored"}, headers=su).status_code == 404
    )
    assert client.get("/api/errors/nope/events", headers=su).status_code == 404
    assert client.get(f"/api/errors/{disk['id']}/events/nope", headers=su).status_code == 404
    listed = client.get("/api/errors", params={"status": "resolved,ignored"}, headers=su).json()
    assert [i["id"] for i in listed["items"]] == [disk["id"]]


def test_failed_jobs_are_recorded_in_the_builtin_project(
    client: TestClient, su: dict[str, str]
) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]

    def render_report(n: int) -> None:
        raise KeyError(f"missing column {n}")

    try:
        render_report(3)
    except KeyError as exc:
        # what the jobs capability reports for a job that failed for the last time
        ctx = {"kind": "job", "job_kind": "report", "job_id": 41, "attempt": 5, "dead": True}
        svc.telemetry.exception(exc, ctx)
    [builtin] = [
        p for p in client.get("/api/errors/projects", headers=su).json()["items"] if p["builtin"]
    ]

    def recorded() -> list[dict[str, Any]]:
        return list(
            client.get("/api/errors", params={"project": builtin["id"]}, headers=su).json()["items"]
        )

    [issue] = wait_until(recorded, what="the failed job recorded")
    assert issue["title"] == "KeyError: 'missing column 3'"
    assert issue["culprit"].endswith("in render_report")
    event = client.get(f"/api/errors/{issue['id']}/events", headers=su).json()["items"][0]["data"]
    assert event["contexts"]["shipyard"] == {
        "kind": "job", "job_kind": "report", "job_id": 41, "attempt": 5, "dead": True,
    }  # fmt: skip
    assert event["tags"]["job_kind"] == "report"


def test_activity_retention_and_metric(client: TestClient, su: dict[str, str]) -> None:
    ext = _ext(client)
    since = time.time() - 1
    p = client.post("/api/errors/projects", json={"name": "alerted"}, headers=su).json()
    _send(client, p, "first problem")
    _send(client, p, "second problem")
    _send(client, p, "second problem")
    act: ErrorActivity = client.portal.call(ext.tracker.activity, since)  # type: ignore[union-attr]
    assert sorted((i.title, i.count, i.project) for i in act.new_issues) == [
        ("first problem", 1, "alerted"),
        ("second problem", 2, "alerted"),
    ]
    assert act.regressions == []
    assert act.events == 3
    first = next(i for i in act.new_issues if i.title == "first problem")
    assert first.first_seen >= since
    assert first.level == "error"

    client.patch(f"/api/errors/{first.id}", json={"status": "resolved"}, headers=su)
    later = time.time()
    _send(client, p, "first problem")
    act = client.portal.call(ext.tracker.activity, later)  # type: ignore[union-attr]
    assert [i.id for i in act.regressions] == [first.id]
    assert act.new_issues == []
    assert act.events == 1

    series = client.app.state.services.telemetry.metrics.snapshot()["shipyard_errors_total"][
        "series"
    ]  # type: ignore[attr-defined]
    assert [["alerted"], 4.0] in series

    # the clean-up forgets what is past the retention, and is idempotent
    assert client.portal.call(ext.tracker.cleanup, time.time()) == 0  # type: ignore[union-attr]
    future = time.time() + 31 * 86400
    assert client.portal.call(ext.tracker.cleanup, future) == 4  # type: ignore[union-attr]
    assert client.portal.call(ext.tracker.cleanup, future) == 0  # type: ignore[union-attr]
    assert (
        client.get("/api/errors", params={"project": p["id"]}, headers=su).json()["totalItems"] == 0
    )


def test_cli_prints_a_dsn(tmp_path: Path, database_url: str) -> None:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_PORT": "8123",
    }
    cli = [sys.executable, "-m", "shipyard.cli", "errors", "dsn"]

    def dsn(*args: str, **extra: str) -> str:
        r = subprocess.run(
            [*cli, *args], env={**env, **extra}, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    builtin = dsn()
    assert re.fullmatch(r"http://[0-9a-f]{32}@127\.0\.0\.1:8123/1", builtin), builtin
    web = dsn("--project", "web")
    assert re.fullmatch(r"http://[0-9a-f]{32}@127\.0\.0\.1:8123/2", web), web
    assert dsn("--project", "web") == web  # created once
    public = dsn("--project", "web", SHIPYARD_APP_URL="https://errors.example.com")
    assert public == web.replace("http://", "https://").replace(
        "127.0.0.1:8123", "errors.example.com"
    )


def test_quota_is_counted_in_redis_when_configured(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    namespace = "q" + uuid.uuid4().hex[:8]
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                             redis_url=redis_url, redis_namespace=namespace)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        ext = _ext(c)
        p = c.portal.call(ext.tracker.projects.create, {"name": "r", "rateLimit": 2})  # type: ignore[union-attr]
        url = f"/api/{p.id}/store/?sentry_key={p.public_key}"
        statuses = [c.post(url, json={"message": f"m{i}"}).status_code for i in range(5)]
        assert statuses.count(429) >= 1, statuses
        assert statuses.count(200) <= 4, statuses

        async def keys(r: Any) -> list[Any]:
            return list(await r.keys(f"{namespace}:errors:quota:{p.id}:*"))

        assert c.portal.call(svc.redis.call, keys)  # type: ignore[union-attr]
        rows = c.portal.call(svc.aux_db.fetchall, 'SELECT * FROM "_errors_quota"')  # type: ignore[union-attr]
        assert rows == []  # the database counted nothing while Redis was up
