"""A small async database seam with exactly two implementations: SQLite and PostgreSQL.

SQL is written once with `?` placeholders and double-quoted identifiers, which both engines
accept (PostgreSQL gets `?` rewritten to `%s`). SQLite runs synchronously inside the
coroutine: DESIGN.md measured aiosqlite at half the throughput of plain sqlite3, and a
local SQLite query is faster than a thread hop. PostgreSQL uses psycopg's async pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]


class DatabaseError(Exception):
    """Raised for engine errors, normalized across engines."""


class IntegrityError(DatabaseError):
    """A constraint (unique, not null, foreign key) rejected the write."""


class DataValueError(DatabaseError):
    """The engine cannot hold a value (PostgreSQL class 22: NUL in text, out of range…)."""


class Executor(Protocol):
    """What queries run on: the database itself or one open transaction."""

    dialect: str

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...


class Database(Executor, Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Executor]: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite


class _SQLiteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _sqlite_call(self._conn, sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return _sqlite_call(self._conn, sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _sqlite_call(self._conn, sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc


def _sqlite_call(conn: sqlite3.Connection, sql: str, params: Params, mode: str) -> Any:
    try:
        cur = conn.execute(sql, params)
        if mode == "all":
            return cur.fetchall()
        if mode == "one":
            return cur.fetchone()
        return cur.rowcount
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(str(exc)) from exc
    except sqlite3.Error as exc:
        raise DatabaseError(str(exc)) from exc
    except OverflowError as exc:
        raise DataValueError(str(exc)) from exc


class SQLiteDatabase(_SQLiteTx):
    """One connection per process, in WAL mode, autocommit outside explicit transactions.

    Statements never yield to the event loop, so only an open transaction (which may span
    awaits) needs the lock: other coroutines wait for it instead of joining it.
    """

    def __init__(self, path: Path | str, busy_timeout_ms: int = 5000) -> None:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, cached_statements=512
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")
        super().__init__(conn)
        self._lock = asyncio.Lock()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        if self._lock.locked():
            async with self._lock:
                return _sqlite_call(self._conn, sql, params, "all")
        return _sqlite_call(self._conn, sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        if self._lock.locked():
            async with self._lock:
                return _sqlite_call(self._conn, sql, params, "one")
        return _sqlite_call(self._conn, sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            return _sqlite_call(self._conn, sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    async def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------- PostgreSQL


@lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """Rewrite `?` placeholders to psycopg's `%s` (SQL text never holds literals; values are
    always parameters, so a bare `?` is always a placeholder)."""
    return sql.replace("%", "%%").replace("?", "%s")


_PG_INTEGRITY = re.compile(r"^23")


class _PgTx:
    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def _run(self, sql: str, params: Params, mode: str) -> Any:
        import psycopg

        try:
            cur = await self._conn.execute(to_pg(sql), params)
            if mode == "all":
                return await cur.fetchall()
            if mode == "one":
                return await cur.fetchone()
            return cur.rowcount
        except psycopg.Error as exc:
            if exc.sqlstate and _PG_INTEGRITY.match(exc.sqlstate):
                raise IntegrityError(str(exc)) from exc
            if isinstance(exc, psycopg.DataError) or (exc.sqlstate or "").startswith("22"):
                raise DataValueError(str(exc)) from exc
            raise DatabaseError(str(exc)) from exc
        except ValueError as exc:  # psycopg refuses NUL bytes in str parameters client-side
            raise DataValueError(str(exc)) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._run(sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        import psycopg

        try:
            async with self._conn.cursor() as cur:
                await cur.executemany(to_pg(sql), rows)
        except psycopg.Error as exc:
            if exc.sqlstate and _PG_INTEGRITY.match(exc.sqlstate):
                raise IntegrityError(str(exc)) from exc
            if isinstance(exc, psycopg.DataError) or (exc.sqlstate or "").startswith("22"):
                raise DataValueError(str(exc)) from exc
            raise DatabaseError(str(exc)) from exc
        except ValueError as exc:  # psycopg refuses NUL bytes in str parameters client-side
            raise DataValueError(str(exc)) from exc


class PostgresDatabase:
    """A psycopg async pool; each statement outside a transaction autocommits."""

    dialect = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 10, timeout: float = 10.0):
        from psycopg_pool import AsyncConnectionPool

        self.url = url
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True},
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open(wait=True)

    async def _one_shot(self, sql: str, params: Params, mode: str) -> Any:
        async with self._pool.connection() as conn:
            return await _PgTx(conn)._run(sql, params, mode)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._one_shot(sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._one_shot(sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._one_shot(sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    async def close(self) -> None:
        await self._pool.close()


async def connect(url: str, sqlite_path: Path, **pool: Any) -> Database:
    """Open the database a settings URL names (empty: SQLite at `sqlite_path`)."""
    if url.startswith(("postgres://", "postgresql://")):
        pg = PostgresDatabase(url, **{k: v for k, v in pool.items() if k != "busy_timeout_ms"})
        await pg.open()
        return pg
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteDatabase(path, busy_timeout_ms=pool.get("busy_timeout_ms", 5000))
