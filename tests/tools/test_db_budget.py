"""The database seam's query budget and pool errors (tools/db.py) on real SQLite and real
PostgreSQL: a budget cuts a running statement and refuses the next one, the connection stays
usable, transactions are never budgeted, and a pool that stays busy is `PoolExhausted`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shipyard.tools.db import (
    Database,
    PoolExhausted,
    PostgresDatabase,
    QueryTimeout,
    budget,
    connect,
)

# Counts to ten million row by row: seconds on either engine, many times the budget (and
# short enough that a broken budget fails the test instead of hanging it).
LONG = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
    "SELECT COUNT(*) FROM c"
)
BUDGET = 0.2  # seconds


def run(database_url: str, tmp_path: Path, body: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = await connect(database_url, tmp_path / "budget.db", min_size=1, max_size=2)
        try:
            await body(db)
        finally:
            await db.close()

    asyncio.run(main())


def test_budget_cuts_the_statement_and_the_connection_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    async def body(db: Database) -> None:
        await db.execute('CREATE TABLE "t" ("x" INTEGER)')
        started = time.monotonic()
        with budget(BUDGET), pytest.raises(QueryTimeout):
            await db.fetchone(LONG)
        # cut near the deadline, not after ten million rows (a ratio of the budget)
        assert time.monotonic() - started < 10 * BUDGET
        # the same connection (SQLite's only one; PostgreSQL's pool holds two) is idle again
        for _ in range(3):
            await db.execute('INSERT INTO "t" ("x") VALUES (?)', (1,))
        assert await db.fetchone('SELECT COUNT(*) FROM "t"') == (3,)

    run(database_url, tmp_path, body)


def test_a_spent_budget_refuses_the_next_statement(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        with budget(0.001):
            await asyncio.sleep(0.01)
            with pytest.raises(QueryTimeout):
                await db.fetchone("SELECT 1")
            # a nested budget never extends the outer deadline
            with budget(60), pytest.raises(QueryTimeout):
                await db.fetchone("SELECT 1")
        assert await db.fetchone("SELECT 1") == (1,)  # outside the block: no budget

    run(database_url, tmp_path, body)


def test_transactions_are_never_budgeted(database_url: str, tmp_path: Path) -> None:
    """Writes and maintenance run in transactions: a spent budget does not touch them."""

    async def body(db: Database) -> None:
        await db.execute('CREATE TABLE "t" ("x" INTEGER)')
        with budget(0.001):
            await asyncio.sleep(0.01)
            async with db.transaction() as tx:
                await tx.execute('INSERT INTO "t" ("x") VALUES (?)', (1,))
                assert await tx.fetchone('SELECT COUNT(*) FROM "t"') == (1,)
        assert await db.fetchone('SELECT COUNT(*) FROM "t"') == (1,)

    run(database_url, tmp_path, body)


def test_a_busy_pool_is_pool_exhausted(pg_admin_url: str) -> None:
    """PostgreSQL only (SQLite has one connection and no pool): every connection held past
    the pool timeout is `PoolExhausted`, and the pool serves again once one is free."""
    from tests.helpers.servers import fresh_pg_database as _fresh_pg_database

    url = _fresh_pg_database(pg_admin_url)

    async def main() -> None:
        db = PostgresDatabase(url, min_size=1, max_size=1, timeout=0.2)
        await db.open()
        try:
            async with db.transaction() as tx:
                await tx.fetchone("SELECT 1")
                with pytest.raises(PoolExhausted):
                    await db.fetchone("SELECT 1")
                with pytest.raises(PoolExhausted):
                    async with db.transaction():
                        pass
            assert await db.fetchone("SELECT 1") == (1,)
        finally:
            await db.close()

    asyncio.run(main())
