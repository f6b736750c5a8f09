"""Job tests over HTTP: an app with a superuser and fast job timings, hooks files, and
polling a job until it gets somewhere (shared by tests/jobs/test_jobs_api.py,
tests/jobs/test_record_triggers.py and tests/jobs/test_builtin_jobs.py)."""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER

H = dict[str, str]
FINAL = ("completed", "discarded", "cancelled")
PW = "user-pass-123"

# short backoffs, leases and polls keep the retries in these tests quick
FAST = {
    "jobs_poll_interval": 0.1,
    "jobs_backoff_base": 0.05,
    "jobs_backoff_max": 0.2,
    "jobs_lease": 3.0,
    "jobs_shutdown_grace": 1.0,
}


@contextlib.contextmanager
def open_app(tmp_path: Path, database_url: str, **overrides: Any) -> Iterator[tuple[TestClient, H]]:
    """An app on this test's database with a superuser; yields the client and its headers."""
    options: dict[str, Any] = {**FAST, **overrides}
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, **options
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        assert r.status_code == 200, r.text
        yield c, {"Authorization": r.json()["token"]}


def epoch(date: str) -> float:
    """Seconds since the epoch of an API date (`2024-05-01 12:00:00.123Z`, UTC)."""
    return calendar.timegm(time.strptime(date[:19], "%Y-%m-%d %H:%M:%S")) + float(date[19:-1])


def write_hooks(tmp_path: Path, source: str, name: str = "hooks.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def wait_job(
    c: TestClient,
    su: H,
    job_id: int,
    until: Callable[[dict[str, Any]], bool] = lambda j: j["state"] in FINAL,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll `GET /api/jobs/{id}` until `until(job)` holds; fails with the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/jobs/{job_id}", headers=su)
        assert r.status_code == 200, r.text
        job = r.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")
        time.sleep(0.02)


def list_jobs(c: TestClient, su: H, **params: Any) -> list[dict[str, Any]]:
    r = c.get("/api/jobs", params={"perPage": 500, **params}, headers=su)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def user_headers(c: TestClient, su: H, email: str = "ann@example.com") -> tuple[str, H]:
    """A normal user of an auth collection `users` (created when missing): (id, headers)."""
    if c.get("/api/collections/users", headers=su).status_code == 404:
        r = c.post(
            "/api/collections",
            json={
                "name": "users",
                "type": "auth",
                "createRule": "",
                "viewRule": "id = @request.auth.id",
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
    r = c.post(
        "/api/collections/users/records",
        json={"email": email, "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 200, r.text
    login = c.post(
        "/api/collections/users/auth-with-password", json={"identity": email, "password": PW}
    )
    assert login.status_code == 200, login.text
    return str(r.json()["id"]), {"Authorization": login.json()["token"]}


def enqueue(c: TestClient, su: H, kind: str, args: Any = None, **opts: Any) -> dict[str, Any]:
    r = c.post("/api/jobs", json={"kind": kind, "args": args, **opts}, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_error(r: Any, status: int, *words: str) -> dict[str, Any]:
    """A PocketBase-shaped error with this status whose message names `words`."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"status", "message", "data"}, body
    assert body["status"] == status, body
    for w in words:
        assert w in body["message"], (w, body)
    return dict(body)
