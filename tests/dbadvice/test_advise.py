"""The slow-query log and the index advisor on real SQLite and real PostgreSQL.

Each test gets a fresh database (the `database_url` fixture: empty for SQLite). Statements are
made "slow" with a threshold of a microsecond, so every statement is recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shipyard.dbadvice import advise
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.services import Services
from shipyard.settings import Settings, SettingsError, load_settings
from shipyard.tools import slowlog
from shipyard.tools.db import DatabaseError, QueryTimeout, _with_option
from shipyard.tools.db_metrics import QueryMetrics
from shipyard.tools.slowlog import SlowQueryLog, shape_of

SECRET = "sk_live_TOPSECRET_4242"
TINY = 0.001  # ms: every statement is slow


def _settings(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, **extra
    )


def run(settings: Settings, body: Callable[[Services], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        svc = await Services.open(settings)
        try:
            return await body(svc)
        finally:
            await svc.close()

    return asyncio.run(main())


async def make_posts(
    svc: Services, rows: int = 2000, indexes: list[str] | None = None
) -> Collection:
    c = await svc.store.create(
        {
            "name": "posts",
            "listRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "status", "type": "text"},
                {"name": "code", "type": "text"},
                {"name": "views", "type": "number"},
                {"name": "flag", "type": "bool"},
            ],
            "indexes": indexes or [],
        }
    )
    await svc.db.executemany(
        'INSERT INTO "posts" ("id", "title", "status", "code", "views", "created", "updated") '
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (f"r{i:014d}", f"title {i}", f"s{i % 50}", f"c{i}", float(i), "", "")
            for i in range(rows)
        ],
    )
    return c


async def list_posts(svc: Services, filter: str, sort: str = "") -> dict[str, Any]:
    c = svc.store.require("posts")
    params = {"filter": filter, "perPage": "5", "page": "2"}  # page 2: the COUNT runs too
    if sort:
        params["sort"] = sort
    return await svc.records.list_page(
        c, RequestContext(query=params), svc.records.list_query(params)
    )


def proposals(rep: advise.Report) -> set[tuple[str, str]]:
    return {(p.collection, p.column) for p in rep.proposals}


# ---------------------------------------------------------------------- the log


def test_slow_statements_are_logged_and_shared_without_values(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shipyard.slowquery")

    async def first(svc: Services) -> None:
        await make_posts(svc, rows=50)
        await list_posts(svc, f'status = "{SECRET}" && views > 12345')
        # nothing is written to the table until a flush (background, on close, or on demand)
        assert svc.slowlog is not None
        assert svc.slowlog.enabled

    run(_settings(database_url, tmp_path, slow_query_ms=TINY), first)

    logged = [r.getMessage() for r in caplog.records if r.name == "shipyard.slowquery"]
    assert any('FROM "posts" AS "_r" WHERE' in m for m in logged), logged[:5]
    assert all(SECRET not in m and "12345" not in m for m in logged)

    # a fresh process on the same database, with the log off, sees what the first recorded
    async def second(svc: Services) -> list[slowlog.Shape]:
        assert svc.slowlog is not None
        assert svc.slowlog.timer is None
        # the text columns: the numbers (times, durations) are measurements, and a float's
        # digits may happen to contain 12345 (it failed once so in a full run)
        rows = await svc.db.fetchall('SELECT "id", "sql" FROM "_slow_queries"')
        assert rows
        assert not any(SECRET in str(r) or "12345" in str(r) for r in rows)
        return await slowlog.read(svc.db, 200)

    shapes = run(_settings(database_url, tmp_path, slow_query_ms=0), second)
    listing = [s for s in shapes if s.sql.startswith('SELECT "_r"."id"') and '"posts"' in s.sql]
    assert len(listing) == 1, [s.sql for s in shapes]
    s = listing[0]
    assert s.calls == 1
    assert s.total_ms > 0
    assert s.max_ms > 0
    assert s.rows == 0
    assert '"_r"."status" = ' in s.sql
    assert "?" in s.sql
    assert "  " not in s.sql
    assert not any('"_slow_queries"' in x.sql or x.sql.startswith("EXPLAIN") for x in shapes)


def test_counts_add_up_across_processes(database_url: str, tmp_path: Path) -> None:
    async def body(svc: Services) -> None:
        await make_posts(svc, rows=10)
        for _ in range(3):
            await list_posts(svc, 'status = "a"')

    settings = _settings(database_url, tmp_path, slow_query_ms=TINY)
    run(settings, body)
    run(settings, lambda svc: list_posts(svc, 'status = "b"'))

    async def read(svc: Services) -> list[slowlog.Shape]:
        return await slowlog.read(svc.db, 200, "calls")

    shapes = run(_settings(database_url, tmp_path), read)
    listing = [s for s in shapes if s.sql.startswith('SELECT "_r"."id"') and '"posts"' in s.sql]
    assert [s.calls for s in listing] == [4]
    assert listing[0].total_ms >= listing[0].max_ms


def test_threshold_and_off(database_url: str, tmp_path: Path) -> None:
    async def body(svc: Services) -> int:
        await make_posts(svc, rows=10)
        await list_posts(svc, 'status = "a"')
        assert svc.slowlog is not None
        await svc.slowlog.flush()
        return len(await slowlog.read(svc.db, 200))

    assert run(_settings(database_url, tmp_path / "a", slow_query_ms=60_000), body) == 0


def test_off_means_no_timer(tmp_path: Path) -> None:
    """With the slow-query log and metrics off, statements are not timed at all; with
    metrics on, the one timer feeds the histogram and no slow-query log."""

    async def body(svc: Services) -> None:
        inner = svc.db.inner  # type: ignore[attr-defined]
        assert inner.timer is None
        await svc.db.fetchone("SELECT 1")

    run(_settings("", tmp_path, slow_query_ms=0, metrics_enabled=False), body)

    async def metered(svc: Services) -> None:
        timer = svc.db.inner.timer  # type: ignore[attr-defined]
        assert isinstance(timer, QueryMetrics)
        assert timer.inner is None
        await svc.db.fetchone("SELECT 1")
        assert ("sqlite", "select") in timer.histogram.values

    run(_settings("", tmp_path, slow_query_ms=0), metered)


def test_shapes() -> None:
    assert shape_of('SELECT  "a"\n FROM "t"\tWHERE "id" IN (?, ?, ?)') == (
        'SELECT "a" FROM "t" WHERE "id" IN (?)'
    )
    assert shape_of('INSERT INTO "t" VALUES (?, ?)') == 'INSERT INTO "t" VALUES (?, ?)'
    # bookkeeping never raises into a query, and the pending tally is bounded
    log = SlowQueryLog(1, max_pending=2)
    for i in range(5):
        log.slow(f'SELECT {i} FROM "t"', 0.5, 1)
    log.slow(None, 0.5, 1)  # type: ignore[arg-type]
    assert len(log._pending) == 2
    assert log.dropped == 4


def test_failed_flush_is_logged_once_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="shipyard.slowquery")

    async def broken(*args: Any) -> None:
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(slowlog, "upsert", broken)

    async def body(svc: Services) -> None:
        assert svc.slowlog is not None
        for _ in range(2):
            await svc.db.fetchone("SELECT 1")
            assert await svc.slowlog.flush() == 0
        assert (await svc.db.fetchone("SELECT 2")) == (2,)

    run(_settings("", tmp_path, slow_query_ms=TINY), body)
    failures = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert len(failures) == 1


# ---------------------------------------------------------------------- the advisor


def test_advise_proposes_and_apply_creates_the_index(database_url: str, tmp_path: Path) -> None:
    code_index = "CREATE INDEX `idx_posts_code` ON `posts` (`code`)"

    async def body(svc: Services) -> None:
        await make_posts(svc, indexes=[code_index])
        await list_posts(svc, f'status = "{SECRET}"')
        await list_posts(svc, 'code = "c7"')  # indexed already: no proposal
        rep = await advise.report(svc, top=200)
        assert ("posts", "status") in proposals(rep)
        assert ("posts", "code") not in proposals(rep)
        assert not any(p.collection.startswith("_") for p in rep.proposals)
        assert SECRET not in str(rep.to_dict())
        prop = next(p for p in rep.proposals if p.column == "status")
        assert prop.index == "CREATE INDEX `idx_posts_status` ON `posts` (`status`)"
        assert "equality" in prop.reason
        assert prop.shapes
        assert prop.total_ms > 0
        status_items = [i for i in rep.items if i.proposals and i.proposals[0] is prop]
        assert status_items
        assert all("posts" in {s.table for s in i.scans} for i in status_items)

        assert await advise.apply(svc.store, [prop.index]) == [prop.index]
        assert svc.store.require("posts").indexes == [code_index, prop.index]
        # applying again changes nothing
        assert await advise.apply(svc.store, [prop.index]) == []

        await list_posts(svc, f'status = "{SECRET}"')
        rep = await advise.report(svc, top=200)
        assert ("posts", "status") not in proposals(rep)
        plans = [
            "\n".join(i.plan)
            for i in rep.items
            if '"_r"."status" = ' in i.shape.sql and "COUNT(*)" in i.shape.sql
        ]
        assert plans, plans
        assert all("idx_posts_status" in p for p in plans), plans

    run(_settings(database_url, tmp_path, slow_query_ms=TINY), body)


def test_advise_ranges_sorts_and_what_it_leaves_alone(database_url: str, tmp_path: Path) -> None:
    async def body(svc: Services) -> None:
        await make_posts(svc)
        await list_posts(svc, "views > 1500")
        await list_posts(svc, 'title ~ "abc"')  # LIKE '%abc%': no index helps
        await list_posts(svc, "flag = true")  # two values: a plain index rarely pays
        params = {"sort": "-code", "perPage": "5"}
        await svc.records.list_page(
            svc.store.require("posts"), RequestContext(query=params), svc.records.list_query(params)
        )
        # a system table: never proposed, whatever its plan
        await svc.db.fetchall('SELECT "id" FROM "_superusers" WHERE "verified" = ?', (True,))
        rep = await advise.report(svc, top=200)
        props = proposals(rep)
        assert ("posts", "views") in props
        assert ("posts", "title") not in props
        assert ("posts", "flag") not in props
        assert ("posts", "code") in props
        assert not any(c.startswith("_") for c, _ in props)
        views = next(p for p in rep.proposals if p.column == "views")
        assert "range" in views.reason
        code = next(p for p in rep.proposals if p.column == "code")
        assert "sorted" in code.reason

        applied = await advise.apply_all(svc)
        assert sorted(applied) == sorted(p.index for p in rep.proposals)
        rep = await advise.report(svc, top=200)
        assert not proposals(rep) & {("posts", "views"), ("posts", "code")}

    run(_settings(database_url, tmp_path, slow_query_ms=TINY), body)


def test_apply_refuses_bad_definitions(database_url: str, tmp_path: Path) -> None:
    from shipyard.kernel.errors import ApiError

    async def body(svc: Services) -> None:
        await make_posts(svc, rows=1)
        for bad in (
            "DROP TABLE posts",
            "CREATE INDEX `x` ON `nowhere` (`a`)",
            "CREATE INDEX `x` ON `_superusers` (`verified`)",
            "CREATE UNIQUE INDEX `x` ON `posts` (`status`)",
            "CREATE INDEX `x` ON `posts` (`nope`)",
        ):
            with pytest.raises(ApiError) as err:
                await advise.apply(svc.store, [bad])
            assert err.value.status == 400, bad
        assert svc.store.require("posts").indexes == []
        with pytest.raises(ApiError):
            await advise.apply(svc.store, "CREATE INDEX x ON posts (status)")  # type: ignore[arg-type]
        with pytest.raises(ApiError):
            await advise.report(svc, top=0)
        with pytest.raises(ApiError):
            await advise.report(svc, by="fastest")

    run(_settings(database_url, tmp_path), body)


def test_unexplainable_and_stale_shapes_do_not_break_advice(
    database_url: str, tmp_path: Path
) -> None:
    async def body(svc: Services) -> None:
        await make_posts(svc, rows=1)
        long_sql = "SELECT " + ", ".join(["1"] * 5000)
        stale = 'SELECT "gone" FROM "dropped_table" WHERE "x" = ?'
        batch = {
            slowlog.shape_id(s): slowlog.Tally(
                s[: slowlog.MAX_SHAPE_CHARS], calls=1, total_ms=1e9, max_ms=1e9
            )
            for s in (long_sql, stale, "SELECT 1; DELETE FROM posts")
        }
        await slowlog.upsert(svc.db, batch)
        rep = await advise.report(svc, top=3)
        assert len(rep.items) == 3
        assert all(i.error for i in rep.items)
        assert (await svc.db.fetchone('SELECT COUNT(*) FROM "posts"')) == (1,)
        assert await advise.reset(svc) >= 3
        assert (await advise.report(svc)).items == []

    run(_settings(database_url, tmp_path), body)


def test_postgres_before_16_uses_a_prepared_generic_plan(pg_admin_url: str, tmp_path: Path) -> None:
    from tests.helpers.servers import fresh_pg_database

    async def body(svc: Services) -> None:
        await make_posts(svc)
        sql = 'SELECT "id" FROM "posts" AS "_r" WHERE "_r"."status" = CAST(? AS TEXT) LIMIT ?'
        # GENERIC_PLAN exists from PostgreSQL 16; a test server may be older
        modes = (True, False) if await advise._pg_generic_plans(svc.db) else (False,)
        for generic in modes:
            plan, scans = await advise.explain(svc.db, sql, generic=generic)
            assert [s.table for s in scans] == ["posts"], plan
            assert any("Filter: (status = $1)" in line for line in plan), plan
        # the session keeps no prepared statement behind
        left = await svc.db.fetchall("SELECT name FROM pg_prepared_statements")
        assert not any(str(r[0]).startswith("_sy_advise") for r in left)

    run(_settings(fresh_pg_database(pg_admin_url), tmp_path), body)


# ---------------------------------------------------------------------- pool settings


def test_pool_settings_reach_the_pool(pg_admin_url: str, tmp_path: Path) -> None:
    from tests.helpers.servers import fresh_pg_database

    url = fresh_pg_database(pg_admin_url)
    settings = _settings(
        url,
        tmp_path,
        db_pool_min=2,
        db_pool_max=7,
        db_pool_timeout=3.5,
        db_pool_max_idle=42.0,
        db_statement_timeout_ms=300,
    )

    async def body(svc: Services) -> None:
        pool = svc.db.inner._pool  # type: ignore[attr-defined]
        assert (pool.min_size, pool.max_size, pool.timeout, pool.max_idle) == (2, 7, 3.5, 42.0)
        assert await svc.db.fetchone("SHOW statement_timeout") == ("300ms",)
        with pytest.raises(QueryTimeout, match="statement timeout"):
            await svc.db.fetchone("SELECT pg_sleep(2)")
        assert await svc.db.fetchone("SELECT 1") == (1,)

    run(settings, body)

    async def no_limit(svc: Services) -> None:
        assert await svc.db.fetchone("SHOW statement_timeout") == ("0",)

    run(_settings(url, tmp_path, db_statement_timeout_ms=0), no_limit)


def test_statement_timeout_keeps_the_urls_own_options() -> None:
    url = "postgresql://u@h/db?options=-c%20search_path%3Dapp"
    assert _with_option(url, "-c statement_timeout=5") == (
        "-c search_path=app -c statement_timeout=5"
    )
    assert _with_option("postgresql://u@h/db", "-c x=1") == "-c x=1"


def test_new_settings_are_validated() -> None:
    s = load_settings(env={})
    assert (s.slow_query_ms, s.db_statement_timeout_ms, s.db_pool_max_idle) == (
        100.0,
        30000,
        600.0,
    )
    env = {"SHIPYARD_SLOW_QUERY_MS": "2.5", "SHIPYARD_DB_STATEMENT_TIMEOUT_MS": "0"}
    s = load_settings(env=env)
    assert (s.slow_query_ms, s.db_statement_timeout_ms) == (2.5, 0)
    for name, value in (
        ("SLOW_QUERY_MS", "-1"),
        ("SLOW_QUERY_MS", "nan"),
        ("DB_STATEMENT_TIMEOUT_MS", "-5"),
        ("DB_POOL_MAX_IDLE", "0"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings(env={f"SHIPYARD_{name}": value})
