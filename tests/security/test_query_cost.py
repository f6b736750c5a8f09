"""One request must never freeze the server (issue 10, point 9).

A client filter can ask for work that grows like n^(k+1) with k joined whole collections
(`@collection` aliases, back-relations). Two defences, both through HTTP on both engines:

* up front, a client filter may join at most SHIPYARD_MAX_FILTER_COLLECTION_JOINS distinct
  `@collection` sources and SHIPYARD_MAX_FILTER_BACK_RELATIONS back-relations (a 400 saying
  so); rules, the admins' own, are not limited;
* whatever gets through runs under SHIPYARD_QUERY_BUDGET_MS: past it the statement is cut
  (SQLite: progress handler; PostgreSQL: server-side cancel) and the request answers 503,
  while other clients keep being served (real `shipyard serve` processes). On PostgreSQL a
  pool that stays busy past SHIPYARD_DB_POOL_TIMEOUT is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shipyard.tools.db import connect
from tests.helpers.security import SharedApp
from tests.helpers.servers import Server, start_server, stop_server
from tests.helpers.servers import fresh_pg_database as _fresh_pg_database

TOO_SLOW = {
    "status": 503,
    "message": "The request took too long to process; try again or narrow it.",
    "data": {},
}
BUSY = {
    "status": 503,
    "message": "The server is too busy to process the request; try again shortly.",
    "data": {},
}
# Two aliases of one collection compared with LIKE (no index can help) and tied to the listed
# row: SQLite evaluates it per row, n^3; PostgreSQL materializes the n^2 pairs. With N rows
# either runs for many seconds uncut, many times any budget used below.
RUNAWAY = "@collection.posts:a.title ?~ @collection.posts:b.id && @collection.posts:a.id ?!= id"
N = 8000
TITLES = 50  # rows titled t0..t49, N // TITLES of each
BUDGET_MS = 2000  # the live servers' SHIPYARD_QUERY_BUDGET_MS
BUDGET = BUDGET_MS / 1000


# ---------------------------------------------------------------- up-front limits


@dataclass
class World:
    app: SharedApp
    post_ids: dict[str, str] = field(default_factory=dict)


def _build(app: SharedApp) -> World:
    public = {"listRule": "", "viewRule": ""}
    posts = app.collection(
        {"name": "qc_posts", **public, "fields": [{"name": "title", "type": "text"}]}
    )

    def rel(name: str, target: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "type": "relation", "collectionId": target["id"], "maxSelect": 1}

    comments = app.collection(
        {
            "name": "qc_comments",
            **public,
            "fields": [rel("post", posts), {"name": "text", "type": "text"}],
        }
    )
    app.collection(
        {"name": "qc_likes", **public, "fields": [rel("comment", comments), rel("post", posts)]}
    )
    app.collection(
        {
            "name": "qc_tags",
            **public,
            "fields": [rel("post", posts), {"name": "tag", "type": "text"}],
        }
    )
    # a rule with two aliases is the admins' choice: the join limits are for client filters
    two = '@collection.qc_posts:x.title ?= "a" && @collection.qc_posts:y.title ?= "b"'
    app.collection({"name": "qc_ruled", "listRule": two, "fields": []})
    app.record("qc_ruled", {})
    world = World(app)
    for title in ("a", "b", "c"):
        world.post_ids[title] = app.record("qc_posts", {"title": title})["id"]
    c = app.record("qc_comments", {"post": world.post_ids["a"], "text": "hi"})
    app.record("qc_likes", {"comment": c["id"], "post": world.post_ids["a"]})
    app.record("qc_tags", {"post": world.post_ids["a"], "tag": "x"})
    return world


@pytest.fixture(scope="module")
def world(shared: SharedApp) -> World:
    return shared.world("query_cost", _build)


def _list(w: World, coll: str, filt: str, h: dict[str, str] | None = None) -> httpx.Response:
    return w.app.client.get(f"/api/collections/{coll}/records", params={"filter": filt}, headers=h)


def test_one_collection_source_is_allowed_and_counted_once(world: World) -> None:
    f = '@collection.qc_posts.title ?= "a" && @collection.qc_posts.title ?= title'
    r = _list(world, "qc_posts", f)
    assert r.status_code == 200, r.text
    assert [i["title"] for i in r.json()["items"]] == ["a"]


@pytest.mark.parametrize("who", ["anonymous", "superuser"])
def test_two_collection_sources_are_refused_up_front(world: World, who: str) -> None:
    f = '@collection.qc_posts:a.title ?= "a" && @collection.qc_posts:b.title ?= title'
    r = _list(world, "qc_posts", f, world.app.su if who == "superuser" else None)
    pos = f.index("@collection.qc_posts:b")
    assert r.status_code == 400
    assert r.json() == {
        "status": 400,
        "message": "Invalid filter: too many @collection sources in one filter (at most 1) "
        f"at position {pos}.",
        "data": {},
    }


def test_back_relations_are_bounded(world: World) -> None:
    two = (
        'qc_comments_via_post.qc_likes_via_comment.post ?= id && qc_comments_via_post.text ?= "hi"'
    )
    r = _list(world, "qc_posts", two)
    assert r.status_code == 200, r.text
    assert [i["title"] for i in r.json()["items"]] == ["a"]
    three = two + ' && qc_tags_via_post.tag ?= "x"'
    r = _list(world, "qc_posts", three)
    assert r.status_code == 400
    assert r.json() == {
        "status": 400,
        "message": "Invalid filter: too many back-relations in one filter (at most 2) "
        f"at position {three.index('qc_tags_via_post')}.",
        "data": {},
    }


def test_rules_are_not_limited(world: World) -> None:
    r = world.app.client.get("/api/collections/qc_ruled/records")
    assert r.status_code == 200, r.text
    assert r.json()["totalItems"] == 1


# ---------------------------------------------------------------- the time budget, live


def _seed(server: Server, database_url: str, data_dir: Path) -> None:
    """A public `posts` of N rows, written straight into the database (N creates over HTTP
    would take minutes); the server sees them as another process's commit."""
    token = server.superuser_token()
    r = httpx.post(
        server.url + "/api/collections",
        json={
            "name": "posts",
            "listRule": "",
            "createRule": "",
            "fields": [{"name": "title", "type": "text"}],
        },
        headers={"Authorization": token},
    )
    assert r.status_code == 200, r.text

    async def insert() -> None:
        db = await connect(database_url, data_dir / "data.db")
        try:
            rows = [(uuid.uuid4().hex[:15], f"t{i % TITLES}") for i in range(N)]
            await db.executemany('INSERT INTO "posts" ("id", "title") VALUES (?, ?)', rows)
        finally:
            await db.close()

    asyncio.run(insert())


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A real server with a small budget, joins enough for the runaway, no job worker."""
    data_dir = tmp_path / "srv"
    server = start_server(
        data_dir,
        database_url,
        {
            "SHIPYARD_QUERY_BUDGET_MS": BUDGET_MS,
            "SHIPYARD_MAX_FILTER_COLLECTION_JOINS": 2,
            "SHIPYARD_JOBS_WORKER": "false",
            "SHIPYARD_SLOW_QUERY_MS": 0,
        },
    )
    try:
        _seed(server, database_url, data_dir)
        yield server
    finally:
        stop_server(server)


class Call(threading.Thread):
    """One request in a thread of its own, with when it was sent and answered."""

    def __init__(self, server: Server, params: dict[str, str], method: str = "GET") -> None:
        super().__init__(daemon=True)
        self.server, self.params, self.method = server, params, method
        self.sent = self.done = 0.0
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.sent = time.monotonic()
        # a generous client timeout, so that a broken budget fails the test instead of hanging
        self.response = httpx.request(
            self.method,
            self.server.url + "/api/collections/posts/records",
            params=self.params,
            timeout=30 * BUDGET,
        )
        self.done = time.monotonic()


def _normal(server: Server, i: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.get(
        server.url + "/api/collections/posts/records",
        params={"filter": f'title = "t{i}"', "perPage": "1"},
        timeout=30 * BUDGET,
    )
    return r, time.monotonic() - started


def _active_runaways(database_url: str) -> int:
    """Statements of the runaway filter running on the server right now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE '%ILIKE%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for_runaways(database_url: str, count: int, calls: list[Call]) -> None:
    deadline = time.monotonic() + 60
    while _active_runaways(database_url) < count:
        assert all(c.is_alive() for c in calls), "a runaway request ended before it ran"
        assert time.monotonic() < deadline, "the runaway statements never started"
        time.sleep(0.02)


def test_runaway_filter_is_cut_while_others_are_served(
    served: Server, backend: str, database_url: str
) -> None:
    runaway = Call(served, {"filter": RUNAWAY})
    runaway.start()
    if backend == "postgres":
        # the runaway holds one pooled connection; other requests use the others meanwhile
        _wait_for_runaways(database_url, 1, [runaway])
        for i in range(3):
            r, _ = _normal(served, i)
            assert r.status_code == 200, r.text
            assert r.json()["totalItems"] == N // TITLES
        assert runaway.is_alive(), "the normal requests were not served while it ran"
        assert _active_runaways(database_url) == 1
    else:
        # SQLite runs statements on the event loop: a request that arrives meanwhile waits
        # for the interrupt at the budget, not for the runaway to finish
        time.sleep(BUDGET / 4)
        sent = time.monotonic()
        r, waited = _normal(served, 0)
        assert r.status_code == 200, r.text
        assert r.json()["totalItems"] == N // TITLES
        assert sent < runaway.done or runaway.is_alive(), "it did not overlap the runaway"
        assert waited < 3 * BUDGET
    runaway.join()
    assert runaway.response is not None
    assert runaway.response.status_code == 503
    assert runaway.response.json() == TOO_SLOW
    assert runaway.done - runaway.sent < 3 * BUDGET  # cut at the budget, not run to the end
    if backend == "postgres":
        assert _active_runaways(database_url) == 0  # cancelled on the server too
    r, _ = _normal(served, 1)
    assert r.status_code == 200, r.text


@pytest.fixture
def pg_url(pg_admin_url: str) -> str:
    return _fresh_pg_database(pg_admin_url)


def test_pool_exhaustion_is_503_with_retry_after(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL only (SQLite has no pool): two runaways hold both pooled connections, and
    requests that find none free within the pool timeout get 503 + Retry-After, on the read
    path and on the routed one alike; once the runaways are cut the pool serves again."""
    data_dir = tmp_path / "srv"
    server = start_server(
        data_dir,
        pg_url,
        {
            "SHIPYARD_QUERY_BUDGET_MS": 3 * BUDGET_MS,
            "SHIPYARD_MAX_FILTER_COLLECTION_JOINS": 2,
            "SHIPYARD_DB_POOL_MIN": 2,
            "SHIPYARD_DB_POOL_MAX": 2,
            "SHIPYARD_DB_POOL_TIMEOUT": 0.3,
            "SHIPYARD_JOBS_WORKER": "false",
            "SHIPYARD_SLOW_QUERY_MS": 0,
        },
    )
    try:
        _seed(server, pg_url, data_dir)
        runaways = [Call(server, {"filter": RUNAWAY}) for _ in range(2)]
        for c in runaways:
            c.start()
        _wait_for_runaways(pg_url, 2, runaways)
        read, _ = _normal(server, 0)
        write = httpx.post(
            server.url + "/api/collections/posts/records", json={"title": "x"}, timeout=30
        )
        assert all(c.is_alive() for c in runaways), "the pool was not exhausted meanwhile"
        for r in (read, write):
            assert r.status_code == 503, r.text
            assert r.json() == BUSY
            assert r.headers["retry-after"] == "1"
        for c in runaways:
            c.join()
            assert c.response is not None
            assert c.response.status_code == 503
            assert c.response.json() == TOO_SLOW
        read, _ = _normal(server, 0)
        assert read.status_code == 200, read.text
    finally:
        stop_server(server)
