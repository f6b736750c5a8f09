"""A small async database seam with exactly two implementations: SQLite and PostgreSQL.

SQL is written once with `?` placeholders and double-quoted identifiers, which both engines
accept (PostgreSQL gets `?` rewritten to `%s`). This module is the entry callers import
from; the engines are tools/db_sqlite.py and tools/db_pg.py, what they share (protocols,
row types, errors, the budget) tools/db_base.py.

Every statement is timed with two `perf_counter()` calls; only one slower than the optional
`QueryTimer`'s threshold costs anything more (see tools/slowlog.py, docs/performance.md).

A `budget()` block gives the statements run inside it, outside explicit transactions, one
deadline (a request's database time): SQLite interrupts a statement from a progress handler,
PostgreSQL cancels it on the server (psycopg sends a cancel request when the awaiting task
is cancelled at the deadline). Either way the caller gets `QueryTimeout` and the connection
stays usable. Transactions (writes, maintenance) are never budgeted: a write is not cut half
way, and maintenance keeps the engine's own, longer limit.

Engine errors arrive as the seam's own: `IntegrityError` (with the constraint's kind, table,
columns and name as fields), `DataValueError`, `QueryTimeout`, `PoolExhausted`, and
`DatabaseError` for the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.tools.db_base import (
    ConstraintKind,
    Database,
    DatabaseError,
    DataValueError,
    Executor,
    IntegrityError,
    Params,
    PoolExhausted,
    QueryTimeout,
    QueryTimer,
    Row,
    budget,
    on_rollback,
)
from shipyard.tools.db_pg import PostgresDatabase, to_pg, with_option
from shipyard.tools.db_sqlite import SQLiteDatabase

_with_option = with_option  # the name callers used before the engines moved out

__all__ = [
    "AUXILIARY",
    "ConstraintKind",
    "DataValueError",
    "Database",
    "DatabaseError",
    "Executor",
    "IntegrityError",
    "Params",
    "PoolExhausted",
    "PostgresDatabase",
    "QueryTimeout",
    "QueryTimer",
    "Row",
    "SQLiteDatabase",
    "auxiliary",
    "budget",
    "connect",
    "on_rollback",
    "to_pg",
    "with_option",
]


async def connect(
    url: str, sqlite_path: Path, timer: QueryTimer | None = None, **pool: Any
) -> Database:
    """Open the database a settings URL names (empty: SQLite at `sqlite_path`)."""
    if url.startswith(("postgres://", "postgresql://")):
        pg = PostgresDatabase(
            url, timer=timer, **{k: v for k, v in pool.items() if k != "busy_timeout_ms"}
        )
        await pg.open()
        return pg
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteDatabase(path, busy_timeout_ms=pool.get("busy_timeout_ms", 5000), timer=timer)


AUXILIARY = "auxiliary.db"  # beside data.db, as PocketBase's


def auxiliary(db: Database, timer: QueryTimer | None = None) -> Database:
    """Where observability data goes (request logs, error events, metrics of processes,
    alert state): with SQLite, a second file beside the database, so that their writes
    never move the main file's `data_version`, which other processes' response caches
    and schema stores watch; with PostgreSQL, the same database (its caches watch tables,
    not the whole file)."""
    if isinstance(db, SQLiteDatabase):
        return SQLiteDatabase(
            db.path.with_name(AUXILIARY), busy_timeout_ms=db.busy_timeout_ms, timer=timer
        )
    return db
