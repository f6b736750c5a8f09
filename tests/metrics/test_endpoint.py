"""`GET /metrics` of an app on SQLite and PostgreSQL: who may read it, what it says about
requests (route templates, never raw paths), the database, the cache, logins, jobs,
webhooks and the process; switched off; and the superuser detail of `/api/health`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.metrics.cluster import TABLE
from shipyard.metrics.routes import CONTENT_TYPE
from shipyard.settings import load_settings
from tests.helpers.jobs_api import enqueue, open_app, user_headers, wait_job, write_hooks
from tests.helpers.promtext import families, label_values, value
from tests.helpers.servers import SUPERUSER
from tests.helpers.wait import wait_until
from tests.helpers.webhook_receiver import Receiver, receiver_fixture

H = dict[str, str]
TOKEN = "metrics-scrape-token-0123456789"

# every name of docs/metrics.md this package defines or feeds (shipyard_errors_total is
# the error tracking's)
NAMES = {
    "shipyard_http_requests": "counter",
    "shipyard_http_request_duration_seconds": "histogram",
    "shipyard_http_requests_in_flight": "gauge",
    "shipyard_db_query_duration_seconds": "histogram",
    "shipyard_db_pool_connections": "gauge",
    "shipyard_cache_requests": "counter",
    "shipyard_jobs": "counter",
    "shipyard_jobs_queue_depth": "gauge",
    "shipyard_jobs_queue_lag_seconds": "gauge",
    "shipyard_job_duration_seconds": "histogram",
    "shipyard_webhook_deliveries": "counter",
    "shipyard_auth_failures": "counter",
    "shipyard_process_cpu_seconds_total": "gauge",
    "shipyard_process_resident_memory_bytes": "gauge",
    "shipyard_process_open_fds": "gauge",
    "shipyard_disk_free_bytes": "gauge",
    "shipyard_database_size_bytes": "gauge",
    "shipyard_database_wal_bytes": "gauge",
}

HOOKS = """
from shipyard.functions import Functions

functions = Functions()


@functions.job("fine")
async def fine(ctx, args):
    return "ok"


@functions.job("boom", max_attempts=2)
async def boom(ctx, args):
    raise ValueError("always fails")
"""


@contextlib.contextmanager
def _app(tmp_path: Path, database_url: str, **over: Any) -> Iterator[tuple[TestClient, H]]:
    """An app with a superuser (see tests/helpers/jobs_api.py), metrics published every
    0.5 s, a metrics token, and the hooks above."""
    options: dict[str, Any] = {
        "metrics_flush_interval": 0.5,
        "metrics_token": TOKEN,
        "webhook_allow_private": "127.0.0.1",
        "hooks": write_hooks(tmp_path, HOOKS),
        **over,
    }
    with open_app(tmp_path, database_url, **options) as app:
        yield app


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    with _app(tmp_path, database_url) as app:
        yield app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiver_fixture()


def _metrics(c: TestClient, su: H) -> str:
    r = c.get("/metrics", headers=su)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    return r.text


# ---------------------------------------------------------------------- access


def test_who_may_read_metrics(app: tuple[TestClient, H], tmp_path: Path) -> None:
    c, su = app
    assert _metrics(c, su)  # a superuser
    r = c.get("/metrics")  # a guest from outside the allow-list (the test client's address)
    assert r.status_code == 401
    assert set(r.json()) == {"status", "message", "data"}
    assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    _, user = user_headers(c, su)
    r = c.get("/metrics", headers=user)  # a valid token, not a superuser's
    assert r.status_code == 403
    assert r.json()["status"] == 403
    assert TOKEN not in r.text


@pytest.mark.parametrize(
    ("allow", "address", "status"),
    [
        ("127.0.0.0/8,::1", "127.0.0.1", 200),
        ("127.0.0.0/8,::1", "127.3.2.1", 200),
        ("127.0.0.0/8,::1", "::1", 200),
        ("127.0.0.0/8,::1", "10.1.2.3", 401),
        ("10.0.0.0/8", "10.1.2.3", 200),
        ("10.0.0.0/8", "127.0.0.1", 401),
        ("", "127.0.0.1", 401),
    ],
)
def test_the_address_allow_list(
    tmp_path: Path, database_url: str, allow: str, address: str, status: int
) -> None:
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, metrics_allow=allow
    )
    with TestClient(create_app(settings), client=(address, 40000)) as c:
        assert c.get("/metrics").status_code == status


def test_switched_off(tmp_path: Path, database_url: str) -> None:
    with _app(tmp_path, database_url, metrics_enabled=False) as (c, su):
        c.get("/api/collections/nope/records")
        r = c.get("/metrics", headers=su)
        assert r.status_code == 404
        assert set(r.json()) == {"status", "message", "data"}
        svc = c.app.state.services  # type: ignore[attr-defined]
        rows = c.portal.call(svc.aux_db.fetchall, f'SELECT "instance" FROM "{TABLE}"')  # type: ignore[union-attr]
        assert [r[0] for r in rows] == ["_retired"]  # nothing published
        # the hot path updated nothing
        reg = svc.telemetry.metrics
        assert not reg.metrics["shipyard_http_requests_total"].values
        assert not reg.metrics["shipyard_cache_requests_total"].values
        assert not reg.metrics["shipyard_http_requests_in_flight"].values


# ---------------------------------------------------------------------- what it says


def test_every_name_is_exposed_with_its_type(app: tuple[TestClient, H]) -> None:
    c, su = app
    fams = families(_metrics(c, su))
    assert {n: fams[n].type for n in NAMES if n in fams} == NAMES


def test_routes_are_templates_never_raw_paths(app: tuple[TestClient, H]) -> None:
    c, su = app
    c.post("/api/collections", json={"name": "posts", "listRule": "", "viewRule": ""}, headers=su)
    for _ in range(3):
        assert c.get("/api/collections/posts/records/secretid12345").status_code == 404
    assert c.get("/api/collections/posts/records?filter=x%3D1").status_code == 400
    assert c.get("/api/collections/posts").status_code in (401, 403, 404)
    assert c.get("/no/such/path/secretpath777").status_code == 404
    c.request("BREW", "/api/health")  # a method of the client's making: not a label value
    text = _metrics(c, su)
    name = "shipyard_http_requests_total"
    view = "/api/collections/{collection}/records/{id}"
    assert value(text, name, method="GET", route=view, status="404") == 3
    listing = "/api/collections/{collection}/records"
    assert value(text, name, method="GET", route=listing, status="400") == 1
    assert value(text, name, method="GET", route="<unmatched>", status="404") == 1
    assert "secretid12345" not in text
    assert value(text, name, method="OTHER") == 1
    assert "BREW" not in text
    assert "secretpath777" not in text
    assert "posts" not in text
    # every route label is a route's template (or says that none matched)
    known = {getattr(r, "path", "") for r in c.app.routes} | {listing, view, "<unmatched>"}  # type: ignore[attr-defined]
    assert label_values(text, name, "route") <= known
    count = "shipyard_http_request_duration_seconds_count"
    assert value(text, count, method="GET", route=view) == 3


def test_database_cache_and_logins(app: tuple[TestClient, H], backend: str) -> None:
    c, su = app
    r = c.post("/api/collections", json={"name": "notes", "listRule": ""}, headers=su)
    assert r.status_code == 200, r.text
    before = _metrics(c, su)
    url = "/api/collections/notes/records"
    answers = [
        c.get(url).headers["x-shipyard-cache"],
        c.get(url).headers["x-shipyard-cache"],
        c.get(url, headers={"Cache-Control": "no-store"}).headers["x-shipyard-cache"],
    ]
    # PostgreSQL without Redis has no cross-process cache coherence: every read bypasses
    expected = ["miss", "hit", "bypass"] if backend == "sqlite" else ["bypass"] * 3
    assert answers == expected
    bad = {"identity": SUPERUSER[0], "password": "wrong-password"}
    assert c.post("/api/collections/_superusers/auth-with-password", json=bad).status_code == 400
    after = _metrics(c, su)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for result in ("hit", "miss", "bypass"):
        counted = delta("shipyard_cache_requests_total", result=result)
        assert counted == expected.count(result), result
    assert delta("shipyard_auth_failures_total") == 1
    engine = "postgres" if backend == "postgres" else "sqlite"
    kinds = label_values(after, "shipyard_db_query_duration_seconds_count", "kind")
    assert {"select", "insert"} <= kinds
    assert label_values(after, "shipyard_db_query_duration_seconds_count", "engine") == {engine}
    pool = label_values(after, "shipyard_db_pool_connections", "state")
    assert pool == ({"idle", "busy", "waiting"} if backend == "postgres" else set())
    assert value(after, "shipyard_database_size_bytes") > 0
    assert value(after, "shipyard_disk_free_bytes") > 0
    for name in ("shipyard_process_resident_memory_bytes", "shipyard_process_open_fds"):
        assert value(after, name) > 0


def test_jobs_are_counted_and_failures_reported(app: tuple[TestClient, H]) -> None:
    c, su = app
    svc = c.app.state.services  # type: ignore[attr-defined]
    reported: list[tuple[BaseException, dict[str, Any]]] = []
    svc.telemetry.sinks.append(lambda exc, ctx: reported.append((exc, dict(ctx))))
    ok = enqueue(c, su, "fine")
    bad = enqueue(c, su, "boom")
    wait_job(c, su, ok["id"])
    assert wait_job(c, su, bad["id"])["state"] == "discarded"
    text = _metrics(c, su)
    assert value(text, "shipyard_jobs_total", kind="fine", state="completed") == 1
    assert value(text, "shipyard_jobs_total", kind="boom", state="retryable") == 1
    assert value(text, "shipyard_jobs_total", kind="boom", state="discarded") == 1
    assert value(text, "shipyard_job_duration_seconds_count", kind="boom") == 2
    assert value(text, "shipyard_job_duration_seconds_count", kind="fine") == 1
    jobs = [(exc, ctx) for exc, ctx in reported if ctx.get("kind") == "job"]
    assert [type(exc) for exc, _ in jobs] == [ValueError, ValueError]
    assert [(ctx["job_kind"], ctx["job_id"], ctx["attempt"], ctx["dead"]) for _, ctx in jobs] == [
        ("boom", bad["id"], 1, False),
        ("boom", bad["id"], 2, True),
    ]


def test_queue_depth_and_lag(tmp_path: Path, database_url: str) -> None:
    with _app(tmp_path, database_url, jobs_worker=False) as (c, su):
        for _ in range(3):
            enqueue(c, su, "fine")
        enqueue(c, su, "fine", queue="slow")

        def depth() -> str | None:
            text = _metrics(c, su)
            return text if value(text, "shipyard_jobs_queue_depth", queue="default") == 3 else None

        text = wait_until(depth, timeout=20, what="the queue depth")
        assert value(text, "shipyard_jobs_queue_depth", queue="slow") == 1
        assert value(text, "shipyard_jobs_queue_lag_seconds", queue="default") > 0


def test_webhook_deliveries(app: tuple[TestClient, H], receiver: Receiver) -> None:
    c, su = app
    r = c.post("/api/collections", json={"name": "posts"}, headers=su)
    assert r.status_code == 200, r.text
    body = {"name": "hook", "collection": "posts", "url": f"{receiver.url}/hook"}
    assert c.post("/api/webhooks", json=body, headers=su).status_code == 200
    assert c.post("/api/collections/posts/records", json={}, headers=su).status_code == 200
    wait_until(
        lambda: value(_metrics(c, su), "shipyard_webhook_deliveries_total", result="delivered"),
        timeout=20,
        what="a delivered webhook",
    )


# ---------------------------------------------------------------------- health


def test_health_detail_is_for_superusers(app: tuple[TestClient, H]) -> None:
    c, su = app
    public = c.get("/api/health")
    assert public.json() == {"code": 200, "message": "API is healthy.", "data": {}}
    _, user = user_headers(c, su)
    assert c.get("/api/health", headers=user).json()["data"] == {}
    data = c.get("/api/health", headers=su).json()["data"]
    assert data["checks"]["database"]["ok"] is True
    assert data["database"]["ok"] is True
    assert data["database"]["sizeBytes"] > 0
    assert data["redis"] == {"configured": False, "up": None}
    assert data["disk"]["freeBytes"] > 0
    assert data["jobs"]["lagSeconds"] >= 0
    assert data["backup"] == {"last": None}


def test_publishing_metrics_leaves_cached_responses_alone(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """Metrics go to the raw database: their writes are no data change for the cache."""
    with _app(tmp_path, database_url, redis_url=redis_url) as (c, su):
        r = c.post("/api/collections", json={"name": "notes", "listRule": ""}, headers=su)
        assert r.status_code == 200, r.text
        url = "/api/collections/notes/records"
        c.get(url)
        assert c.get(url).headers["x-shipyard-cache"] == "hit"
        ext = c.app.state.services.extension("metrics")  # type: ignore[attr-defined]
        for _ in range(3):
            c.portal.call(ext.cluster.publish)  # type: ignore[union-attr]
        assert c.get(url).headers["x-shipyard-cache"] == "hit"
        # while a record write does invalidate it
        assert c.post(url, json={}, headers=su).status_code == 200
        assert c.get(url).headers["x-shipyard-cache"] == "miss"
