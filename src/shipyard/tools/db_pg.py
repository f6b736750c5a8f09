"""The PostgreSQL engine of the database seam (tools/db.py): psycopg's async pool.

SQL arrives with `?` placeholders and is rewritten to psycopg's `%s`. A `budget()` deadline
cancels the awaiting task, which makes psycopg cancel the statement on the server; the
connection goes back to the pool idle. psycopg is imported when first used, not when
Shipyard starts on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shipyard.tools.db_base import (
    DEADLINE,
    ConstraintKind,
    DatabaseError,
    DataValueError,
    Executor,
    IntegrityError,
    Params,
    PoolExhausted,
    QueryTimeout,
    QueryTimer,
    Row,
    joined,
    over_budget,
    rows_of_all,
    rows_of_count,
    rows_of_one,
    savepoint,
    sharing,
    timed,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import AsyncConnection, AsyncCursor

T = TypeVar("T")


@lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """Rewrite `?` placeholders to psycopg's `%s` (SQL text never holds literals; values are
    always parameters, so a bare `?` is always a placeholder)."""
    return sql.replace("%", "%%").replace("?", "%s")


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """What a statement answers, read from its cursor, and how many rows that is."""

    read: Callable[[AsyncCursor[Row]], Awaitable[T]]
    rows: Callable[[T], int]


async def _read_all(cur: AsyncCursor[Row]) -> list[Row]:
    return await cur.fetchall()


async def _read_one(cur: AsyncCursor[Row]) -> Row | None:
    return await cur.fetchone()


async def _read_count(cur: AsyncCursor[Row]) -> int:
    return cur.rowcount


ALL: _Answer[list[Row]] = _Answer(_read_all, rows_of_all)
ONE: _Answer[Row | None] = _Answer(_read_one, rows_of_one)
COUNT: _Answer[int] = _Answer(_read_count, rows_of_count)

# --------------------------------------------------------------------------- errors

_KINDS = {
    "23505": ConstraintKind.UNIQUE,
    "23502": ConstraintKind.NOT_NULL,
    "23503": ConstraintKind.FOREIGN_KEY,
    "23514": ConstraintKind.CHECK,
    "23P01": ConstraintKind.EXCLUSION,
}
# the DETAIL of unique, foreign key and exclusion errors: `Key (a, "B")=(1, 2) already exists.`
_KEY = re.compile(r"^Key \((.*?)\)=\(")
_COLUMN = re.compile(r'^(?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*))$')


def _key_columns(detail: str | None) -> tuple[str, ...]:
    """The columns a DETAIL's `Key (…)` names; none when one of them is an expression."""
    m = _KEY.match(detail or "")
    if not m:
        return ()
    columns = []
    for part in m.group(1).split(", "):
        col = _COLUMN.match(part)
        if col is None:
            return ()
        columns.append(col.group(1).replace('""', '"') if col.group(1) else col.group(2))
    return tuple(columns)


def integrity_error(exc: psycopg.Error) -> IntegrityError:
    """A class 23 error as the seam's typed one, from the fields PostgreSQL sends with it."""
    diag = exc.diag
    kind = _KINDS.get(exc.sqlstate or "", ConstraintKind.OTHER)
    columns = (diag.column_name,) if diag.column_name else _key_columns(diag.message_detail)
    return IntegrityError(
        str(exc),
        kind,
        table=diag.table_name or None,
        columns=columns,
        constraint=diag.constraint_name or None,
    )


def pg_error(exc: psycopg.Error) -> DatabaseError:
    """A psycopg error as one of the seam's own."""
    state = exc.sqlstate or ""
    if state.startswith("23"):
        return integrity_error(exc)
    if state.startswith("22") or type(exc).__name__ == "DataError":
        return DataValueError(str(exc))
    if state == "57014":  # query_canceled: statement_timeout
        return QueryTimeout(str(exc))
    return DatabaseError(str(exc))


class _PgTx:
    dialect = "postgres"

    def __init__(self, conn: AsyncConnection[Row], timer: QueryTimer | None = None) -> None:
        self._conn = conn
        self.timer = timer

    async def run_budgeted(self, sql: str, params: Params, answer: _Answer[T]) -> T:
        """`run` cut at the budget's deadline: cancelling the awaiting task makes psycopg
        cancel the statement on the server and wait for it to stop, so the connection goes
        back to the pool idle."""
        deadline = DEADLINE.get()
        if not deadline:
            return await self.run(sql, params, answer)
        left = deadline - monotonic()
        if left <= 0:
            raise over_budget()
        try:
            async with asyncio.timeout(left):
                return await self.run(sql, params, answer)
        except TimeoutError:
            raise over_budget() from None

    async def run(self, sql: str, params: Params, answer: _Answer[T]) -> T:
        import psycopg

        start = perf_counter()
        rows = -1
        try:
            out = await answer.read(await self._conn.execute(to_pg(sql), params))
            rows = answer.rows(out)
            return out
        except psycopg.Error as exc:
            raise pg_error(exc) from exc
        except ValueError as exc:  # psycopg refuses NUL bytes in str parameters client-side
            raise DataValueError(str(exc)) from exc
        finally:
            timer = self.timer
            if timer is not None:
                elapsed = perf_counter() - start
                if elapsed >= timer.threshold:
                    timer.slow(sql, elapsed, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.run(sql, params, ALL)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self.run(sql, params, ONE)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self.run(sql, params, COUNT)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        import psycopg

        start = perf_counter()
        try:
            async with self._conn.cursor() as cur:
                await cur.executemany(to_pg(sql), rows)
            timed(self.timer, sql, start, len(rows))
        except psycopg.Error as exc:
            raise pg_error(exc) from exc
        except ValueError as exc:  # psycopg refuses NUL bytes in str parameters client-side
            raise DataValueError(str(exc)) from exc


class PostgresDatabase:
    """A psycopg async pool; each statement outside a transaction autocommits."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        max_idle: float = 600.0,
        statement_timeout_ms: int = 0,
        timer: QueryTimer | None = None,
    ):
        from psycopg_pool import AsyncConnectionPool

        self.url = url
        self.timer = timer
        kwargs: dict[str, Any] = {"autocommit": True}
        if statement_timeout_ms > 0:
            kwargs["options"] = with_option(
                url, f"-c statement_timeout={int(statement_timeout_ms)}"
            )
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            max_idle=max_idle,
            kwargs=kwargs,
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open(wait=True)

    async def _getconn(self) -> AsyncConnection[Row]:
        from psycopg_pool import PoolTimeout

        try:
            return await self._pool.getconn()
        except PoolTimeout as exc:
            raise PoolExhausted(str(exc)) from exc

    async def _one_shot(self, sql: str, params: Params, answer: _Answer[T]) -> T:
        tx = joined(self)
        if isinstance(tx, _PgTx):  # inside this task's shared transaction: run there
            return await tx.run(sql, params, answer)
        conn = await self._getconn()
        try:
            return await _PgTx(conn, self.timer).run_budgeted(sql, params, answer)
        finally:
            await self._pool.putconn(conn)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._one_shot(sql, params, ALL)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._one_shot(sql, params, ONE)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._one_shot(sql, params, COUNT)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self, *, share: bool = False) -> AsyncIterator[Executor]:
        """One transaction on a pooled connection; with `share`, every statement this task
        runs on this database until the block ends joins it (tools/db_base.py `Shared`).
        Inside a shared one, a savepoint."""
        if joined(self) is not None:
            async with savepoint(self) as tx:
                yield tx
            return
        conn = await self._getconn()
        try:
            async with (
                conn.transaction(),
                sharing(self, _PgTx(conn, self.timer), share) as tx,
            ):
                yield tx
        finally:
            await self._pool.putconn(conn)

    def pool_stats(self) -> dict[str, int]:
        """The pool's connections now: idle, busy (lent out), and clients waiting for one."""
        stats = self._pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return {
            "idle": idle,
            "busy": max(0, size - idle),
            "waiting": stats.get("requests_waiting", 0),
        }

    async def close(self) -> None:
        await self._pool.close()


def with_option(url: str, option: str) -> str:
    """The connection's `options`: the URL's own (e.g. `-c search_path=…`) plus `option`."""
    from psycopg.conninfo import conninfo_to_dict

    own = str(conninfo_to_dict(url).get("options") or "").strip()
    return f"{own} {option}".strip()
