"""A small async database seam with exactly two implementations: SQLite and PostgreSQL.

SQL is written once with `?` placeholders and double-quoted identifiers, which both engines
accept (PostgreSQL gets `?` rewritten to `%s`). SQLite runs synchronously inside the
coroutine: DESIGN.md measured aiosqlite at half the throughput of plain sqlite3, and a
local SQLite query is faster than a thread hop. PostgreSQL uses psycopg's async pool.

Every statement is timed with two `perf_counter()` calls; only one slower than the optional
`QueryTimer`'s threshold costs anything more (see tools/slowlog.py, docs/performance.md).

A `budget()` block gives the statements run inside it, outside explicit transactions, one
deadline (a request's database time): SQLite interrupts a statement from a progress handler,
PostgreSQL cancels it on the server (psycopg sends a cancel request when the awaiting task
is cancelled at the deadline). Either way the caller gets `QueryTimeout` and the connection
stays usable. Transactions (writes, maintenance) are never budgeted: a write is not cut half
way, and maintenance keeps the engine's own, longer limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar, Token
from functools import lru_cache
from pathlib import Path
from time import monotonic, perf_counter
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]


class DatabaseError(Exception):
    """Raised for engine errors, normalized across engines."""


class IntegrityError(DatabaseError):
    """A constraint (unique, not null, foreign key) rejected the write."""


class DataValueError(DatabaseError):
    """The engine cannot hold a value (PostgreSQL class 22: NUL in text, out of range…)."""


class QueryTimeout(DatabaseError):
    """The engine cancelled a statement that ran past its time limit (statement_timeout, or
    the deadline of the enclosing `budget()`)."""


class PoolExhausted(DatabaseError):
    """No pooled connection became free within the pool timeout: the server is saturated,
    not broken (retry later)."""


# The deadline (time.monotonic()) of the enclosing budget(); 0.0: none.
_DEADLINE: ContextVar[float] = ContextVar("shipyard_db_deadline", default=0.0)
# SQLite VM instructions between two deadline checks: a check costs ~0.1 us, and SQLite runs
# tens of millions of instructions a second, so the overhead stays far below 1 % while an
# interrupt lands within a fraction of a millisecond of the deadline.
_PROGRESS_STEPS = 20000


class budget:  # used like a function: `with budget(seconds):`
    """Statements outside transactions run inside this block may together take `seconds`;
    past that the running one is cut and the next refused (`QueryTimeout`). 0: no budget.
    Nested budgets never extend an outer deadline. A plain class, not a generator context
    manager: it wraps every records request and this is several times cheaper."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._token: Token[float] | None = None

    def __enter__(self) -> None:
        if self._seconds > 0:
            deadline = monotonic() + self._seconds
            outer = _DEADLINE.get()
            self._token = _DEADLINE.set(min(deadline, outer) if outer else deadline)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None


def _over_budget() -> QueryTimeout:
    return QueryTimeout("the request's query time budget is spent")


class QueryTimer(Protocol):
    """Told about every statement that took `threshold` seconds or more (the slow-query log).

    `slow` runs on the hot path of a slow statement: it must be cheap and must never raise.
    `rows` is the row count (fetched rows, or the rows a write changed), -1 when it failed.
    """

    threshold: float  # seconds

    def slow(self, sql: str, seconds: float, rows: int) -> None: ...


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

    def __init__(self, conn: sqlite3.Connection, timer: QueryTimer | None = None) -> None:
        self._conn = conn
        self.timer = timer

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _sqlite_call(self._conn, sql, params, "all", self.timer)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return _sqlite_call(self._conn, sql, params, "one", self.timer)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _sqlite_call(self._conn, sql, params, "exec", self.timer)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        start = perf_counter()
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc
        _timed(self.timer, sql, start, len(rows))


def _timed(timer: QueryTimer | None, sql: str, start: float, rows: int) -> None:
    """Report the statement to the timer if it took at least its threshold."""
    if timer is not None:
        elapsed = perf_counter() - start
        if elapsed >= timer.threshold:
            timer.slow(sql, elapsed, rows)


def _row_count(out: Any, mode: str) -> int:
    if mode == "all":
        return len(out)
    if mode == "one":
        return 0 if out is None else 1
    return int(out)


def _sqlite_call(
    conn: sqlite3.Connection, sql: str, params: Params, mode: str, timer: QueryTimer | None
) -> Any:
    if timer is None:
        return _sqlite_run(conn, sql, params, mode)
    start = perf_counter()
    out: Any = None
    ok = False
    try:
        out = _sqlite_run(conn, sql, params, mode)
        ok = True
        return out
    finally:
        elapsed = perf_counter() - start
        if elapsed >= timer.threshold:
            timer.slow(sql, elapsed, _row_count(out, mode) if ok else -1)


class _Progress:
    """SQLite's progress handler, installed once per connection (installing one per statement
    costs more than the statement): interrupts while `deadline` is set and has passed."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = 0.0

    def __call__(self) -> bool:
        return self.deadline != 0.0 and monotonic() >= self.deadline


def _sqlite_run(conn: sqlite3.Connection, sql: str, params: Params, mode: str) -> Any:
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
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            raise _over_budget() from exc
        raise DatabaseError(str(exc)) from exc
    except OverflowError as exc:
        raise DataValueError(str(exc)) from exc


class SQLiteDatabase(_SQLiteTx):
    """One connection per process, in WAL mode, autocommit outside explicit transactions.

    Statements never yield to the event loop, so only an open transaction (which may span
    awaits) needs the lock: other coroutines wait for it instead of joining it.
    """

    def __init__(
        self, path: Path | str, busy_timeout_ms: int = 5000, timer: QueryTimer | None = None
    ) -> None:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, cached_statements=512
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")
        super().__init__(conn, timer)
        self._lock = asyncio.Lock()
        self._progress = _Progress()
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)

    def _call(self, sql: str, params: Params, mode: str) -> Any:
        """A statement outside transactions: under the budget's deadline when there is one
        (an interrupted statement is reset; the connection and any transaction stay usable)."""
        deadline = _DEADLINE.get()
        if not deadline:
            return _sqlite_call(self._conn, sql, params, mode, self.timer)
        if monotonic() >= deadline:
            raise _over_budget()
        self._progress.deadline = deadline
        try:
            return _sqlite_call(self._conn, sql, params, mode, self.timer)
        finally:
            self._progress.deadline = 0.0

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        if self._lock.locked():
            async with self._lock:
                return self._call(sql, params, "all")
        return self._call(sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        if self._lock.locked():
            async with self._lock:
                return self._call(sql, params, "one")
        return self._call(sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            return self._call(sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(self._conn, self.timer)
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already
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


def _pg_error(exc: Any) -> DatabaseError:
    """A psycopg error as one of the seam's own."""
    state = exc.sqlstate or ""
    if _PG_INTEGRITY.match(state):
        return IntegrityError(str(exc))
    if state.startswith("22") or type(exc).__name__ == "DataError":
        return DataValueError(str(exc))
    if state == "57014":  # query_canceled: statement_timeout
        return QueryTimeout(str(exc))
    return DatabaseError(str(exc))


class _PgTx:
    dialect = "postgres"

    def __init__(self, conn: Any, timer: QueryTimer | None = None) -> None:
        self._conn = conn
        self.timer = timer

    async def _run_budgeted(self, sql: str, params: Params, mode: str) -> Any:
        """`_run` cut at the budget's deadline: cancelling the awaiting task makes psycopg
        cancel the statement on the server and wait for it to stop, so the connection goes
        back to the pool idle."""
        deadline = _DEADLINE.get()
        if not deadline:
            return await self._run(sql, params, mode)
        left = deadline - monotonic()
        if left <= 0:
            raise _over_budget()
        try:
            async with asyncio.timeout(left):
                return await self._run(sql, params, mode)
        except TimeoutError:
            raise _over_budget() from None

    async def _run(self, sql: str, params: Params, mode: str) -> Any:
        import psycopg

        start = perf_counter()
        out: Any = None
        ok = False
        try:
            cur = await self._conn.execute(to_pg(sql), params)
            if mode == "all":
                out = await cur.fetchall()
            elif mode == "one":
                out = await cur.fetchone()
            else:
                out = cur.rowcount
            ok = True
            return out
        except psycopg.Error as exc:
            raise _pg_error(exc) from exc
        except ValueError as exc:  # psycopg refuses NUL bytes in str parameters client-side
            raise DataValueError(str(exc)) from exc
        finally:
            timer = self.timer
            if timer is not None:
                elapsed = perf_counter() - start
                if elapsed >= timer.threshold:
                    timer.slow(sql, elapsed, _row_count(out, mode) if ok else -1)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(sql, params, "all")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._run(sql, params, "one")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(sql, params, "exec")

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        import psycopg

        start = perf_counter()
        try:
            async with self._conn.cursor() as cur:
                await cur.executemany(to_pg(sql), rows)
            _timed(self.timer, sql, start, len(rows))
        except psycopg.Error as exc:
            raise _pg_error(exc) from exc
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
            kwargs["options"] = _with_option(
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

    async def _getconn(self) -> Any:
        from psycopg_pool import PoolTimeout

        try:
            return await self._pool.getconn()
        except PoolTimeout as exc:
            raise PoolExhausted(str(exc)) from exc

    async def _one_shot(self, sql: str, params: Params, mode: str) -> Any:
        conn = await self._getconn()
        try:
            return await _PgTx(conn, self.timer)._run_budgeted(sql, params, mode)
        finally:
            await self._pool.putconn(conn)

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
        conn = await self._getconn()
        try:
            async with conn.transaction():
                yield _PgTx(conn, self.timer)
        finally:
            await self._pool.putconn(conn)

    async def close(self) -> None:
        await self._pool.close()


def _with_option(url: str, option: str) -> str:
    """The connection's `options`: the URL's own (e.g. `-c search_path=…`) plus `option`."""
    from psycopg.conninfo import conninfo_to_dict

    own = str(conninfo_to_dict(url).get("options") or "").strip()
    return f"{own} {option}".strip()


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
