"""Shared transactions through the database seam (tools/db.py, used by POST /api/batch) on
real SQLite and PostgreSQL: every statement and nested transaction of the task that opened
one joins it, a nested block that fails undoes only its own statements, the watched database
reports the tables once after the commit, and other tasks are kept out until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shipyard.tools.db import Database, connect, on_rollback
from shipyard.tools.dbwatch import WatchedDatabase


def run(database_url: str, tmp_path: Path, body: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = await connect(database_url, tmp_path / "shared.db", min_size=1, max_size=3)
        try:
            await db.execute('CREATE TABLE "t" ("id" TEXT PRIMARY KEY NOT NULL)')
            await body(db)
        finally:
            await db.close()

    asyncio.run(main())


async def ids(db: Database) -> list[str]:
    return [r[0] for r in await db.fetchall('SELECT "id" FROM "t" ORDER BY "id"')]


def test_nested_writes_commit_or_roll_back_together(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        async def aborted() -> None:
            async with db.transaction(share=True):
                async with db.transaction() as tx:
                    await tx.execute('INSERT INTO "t" ("id") VALUES (?)', ("a",))
                await db.execute('INSERT INTO "t" ("id") VALUES (?)', ("b",))
                assert await ids(db) == ["a", "b"]  # reads see the uncommitted writes
                raise RuntimeError("abort")

        async def failing_savepoint() -> None:
            async with db.transaction() as tx:  # a savepoint: only it is undone
                await tx.execute('INSERT INTO "t" ("id") VALUES (?)', ("x",))
                raise ValueError("inner")

        with pytest.raises(RuntimeError):
            await aborted()
        assert await ids(db) == []
        async with db.transaction(share=True):
            async with db.transaction() as tx:
                await tx.execute('INSERT INTO "t" ("id") VALUES (?)', ("a",))
            with pytest.raises(ValueError, match="inner"):
                await failing_savepoint()
            await db.execute('INSERT INTO "t" ("id") VALUES (?)', ("c",))
        assert await ids(db) == ["a", "c"]
        # outside the block the database is itself again
        async with db.transaction() as tx:
            await tx.execute('INSERT INTO "t" ("id") VALUES (?)', ("d",))
        assert await ids(db) == ["a", "c", "d"]

    run(database_url, tmp_path, body)


def test_other_tasks_do_not_join(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        seen: list[list[str]] = []

        async def other() -> None:
            seen.append(await ids(db))

        async with db.transaction(share=True):
            await db.execute('INSERT INTO "t" ("id") VALUES (?)', ("a",))
            task = asyncio.create_task(other())
            await asyncio.sleep(0.05)  # give it the chance to read (it must not see "a" yet)
            assert not seen or seen == [[]]
        await task
        assert seen in ([[]], [["a"]])  # committed data or none, never the open transaction

    run(database_url, tmp_path, body)


def test_watched_database_reports_once_after_commit(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        watched = WatchedDatabase(db)
        reports: list[set[str]] = []

        async def on_write(tables: set[str]) -> None:
            reports.append(tables)

        watched.subscribe(on_write)
        async with watched.transaction(share=True):
            async with watched.transaction() as tx:
                await tx.execute('INSERT INTO "t" ("id") VALUES (?)', ("a",))
            await watched.execute('INSERT INTO "t" ("id") VALUES (?)', ("b",))
            assert reports == []  # nothing reported before the commit
        assert reports == [{"t"}]

        async def aborted() -> None:
            async with watched.transaction(share=True):
                await watched.execute('INSERT INTO "t" ("id") VALUES (?)', ("c",))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await aborted()
        assert reports == [{"t"}]  # a rolled-back shared transaction reports nothing

    run(database_url, tmp_path, body)


def test_undo_runs_only_when_the_shared_transaction_rolls_back(
    database_url: str, tmp_path: Path
) -> None:
    async def body(db: Database) -> None:
        undone: list[str] = []

        def undo(name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                undone.append(name)

            return run

        assert on_rollback(undo("outside")) is False  # no shared transaction: nothing kept
        async with db.transaction(share=True):
            assert on_rollback(undo("committed")) is True

        async def aborted() -> None:
            async with db.transaction(share=True):
                on_rollback(undo("rolled back"))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await aborted()
        assert undone == ["rolled back"]

    run(database_url, tmp_path, body)
