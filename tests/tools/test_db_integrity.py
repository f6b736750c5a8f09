"""Constraint errors through the database seam (tools/db.py) on real SQLite and real
PostgreSQL: each is an `IntegrityError` whose fields say which kind of constraint rejected
the write and, as far as the engine tells, on which table, columns and constraint — so that
callers never read either engine's message text."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shipyard.tools.db import ConstraintKind, Database, DatabaseError, IntegrityError, connect

SCHEMA = [
    'CREATE TABLE "parents" ("id" TEXT PRIMARY KEY NOT NULL, "a" TEXT, "b" TEXT NOT NULL, '
    '"Cc" TEXT, "d" INTEGER CONSTRAINT "positive" CHECK ("d" > 0))',
    'CREATE UNIQUE INDEX "parents_b_cc" ON "parents" ("b", "Cc")',
    'CREATE UNIQUE INDEX "parents_lower_a" ON "parents" (LOWER("a"))',
    'CREATE TABLE "children" ("id" TEXT PRIMARY KEY NOT NULL, '
    '"parent" TEXT REFERENCES "parents" ("id"))',
]
INSERT = 'INSERT INTO "parents" ("id", "a", "b", "Cc", "d") VALUES (?, ?, ?, ?, ?)'


def run(database_url: str, tmp_path: Path, body: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        db = await connect(database_url, tmp_path / "integrity.db", min_size=1, max_size=2)
        try:
            for stmt in SCHEMA:
                await db.execute(stmt)
            await db.execute(INSERT, ("p1", "Apple", "b1", "c1", 1))
            await body(db)
        finally:
            await db.close()

    asyncio.run(main())


async def rejected(write: Awaitable[object]) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        await write
    assert isinstance(info.value, DatabaseError)  # callers catching the base still do
    return info.value


def test_unique_errors_name_the_table_and_columns(database_url: str, tmp_path: Path) -> None:
    pg = bool(database_url)

    async def body(db: Database) -> None:
        # the primary key
        err = await rejected(db.execute(INSERT, ("p1", "Banana", "b2", "c2", 1)))
        assert err.kind is ConstraintKind.UNIQUE
        assert (err.table, err.columns) == ("parents", ("id",))
        assert err.constraint == ("parents_pkey" if pg else None)
        # a unique index on two columns, one of them mixed case, in the index's order
        err = await rejected(db.execute(INSERT, ("p2", "Banana", "b1", "c1", 1)))
        assert err.kind is ConstraintKind.UNIQUE
        assert (err.table, err.columns) == ("parents", ("b", "Cc"))
        assert err.constraint == ("parents_b_cc" if pg else None)
        # an index on an expression: no columns, but its name
        err = await rejected(db.execute(INSERT, ("p2", "APPLE", "b2", "c2", 1)))
        assert err.kind is ConstraintKind.UNIQUE
        assert (err.columns, err.constraint) == ((), "parents_lower_a")
        # the same from inside a transaction, and from executemany
        async with db.transaction() as tx:
            err = await rejected(tx.execute(INSERT, ("p1", "Cherry", "b3", "c3", 1)))
        assert (err.kind, err.table, err.columns) == (ConstraintKind.UNIQUE, "parents", ("id",))
        rows = [("p3", "Date", "b3", "c3", 1), ("p3", "Elder", "b4", "c4", 1)]
        err = await rejected(db.executemany(INSERT, rows))
        assert (err.kind, err.table, err.columns) == (ConstraintKind.UNIQUE, "parents", ("id",))
        # nothing of the failed writes was kept
        assert await db.fetchall('SELECT "id" FROM "parents"') == [("p1",)]

    run(database_url, tmp_path, body)


def test_not_null_errors_name_the_table_and_column(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        err = await rejected(db.execute(INSERT, ("p2", "Banana", None, "c2", 1)))
        assert err.kind is ConstraintKind.NOT_NULL
        assert (err.table, err.columns) == ("parents", ("b",))
        err = await rejected(
            db.execute('UPDATE "parents" SET "b" = ? WHERE "id" = ?', (None, "p1"))
        )
        assert (err.kind, err.table, err.columns) == (
            ConstraintKind.NOT_NULL,
            "parents",
            ("b",),
        )

    run(database_url, tmp_path, body)


def test_check_and_foreign_key_errors(database_url: str, tmp_path: Path) -> None:
    pg = bool(database_url)

    async def body(db: Database) -> None:
        err = await rejected(db.execute(INSERT, ("p2", "Banana", "b2", "c2", 0)))
        assert (err.kind, err.constraint) == (ConstraintKind.CHECK, "positive")
        child = 'INSERT INTO "children" ("id", "parent") VALUES (?, ?)'
        err = await rejected(db.execute(child, ("k1", "nobody")))
        assert err.kind is ConstraintKind.FOREIGN_KEY
        if pg:  # SQLite says no more than the kind of a foreign key error
            assert (err.table, err.columns) == ("children", ("parent",))
        await db.execute(child, ("k1", "p1"))  # a parent that exists is fine

    run(database_url, tmp_path, body)
