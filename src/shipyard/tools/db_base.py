"""What both database engines share: row types, the protocols callers program against, the
errors every engine's own are translated into, and the query budget.

The engines live in tools/db_sqlite.py and tools/db_pg.py; callers import all of it from
tools/db.py, which also opens the one a settings URL names.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from time import monotonic, perf_counter
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]


class DatabaseError(Exception):
    """Raised for engine errors, normalized across engines."""


class ConstraintKind(enum.Enum):
    """Which kind of constraint rejected a write."""

    UNIQUE = "unique"  # a unique index or constraint, the primary key included
    NOT_NULL = "not-null"
    FOREIGN_KEY = "foreign-key"
    CHECK = "check"
    EXCLUSION = "exclusion"  # PostgreSQL only
    OTHER = "other"  # a trigger's RAISE(ABORT), a STRICT column's type, class 23 leftovers


class IntegrityError(DatabaseError):
    """A constraint rejected the write. Carries what the engine said about it, so callers
    decide by fields instead of each engine's message text:

    - `kind`: which kind of constraint;
    - `table`: the table whose row was rejected, when the engine names it (SQLite does not
      for foreign keys, checks and expression indexes);
    - `columns`: the constrained columns, when they are plain columns (an index on an
      expression has none); a unique error lists the index's columns in its order;
    - `constraint`: the constraint's or index's name, when the engine names it (PostgreSQL
      always does; SQLite only for expression indexes and named checks).
    """

    def __init__(
        self,
        message: str,
        kind: ConstraintKind = ConstraintKind.OTHER,
        *,
        table: str | None = None,
        columns: tuple[str, ...] = (),
        constraint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.table = table
        self.columns = columns
        self.constraint = constraint

    def __repr__(self) -> str:
        return (
            f"IntegrityError({str(self)!r}, {self.kind}, table={self.table!r}, "
            f"columns={self.columns!r}, constraint={self.constraint!r})"
        )


class DataValueError(DatabaseError):
    """The engine cannot hold a value (PostgreSQL class 22: NUL in text, out of range…)."""


class QueryTimeout(DatabaseError):
    """The engine cancelled a statement that ran past its time limit (statement_timeout, or
    the deadline of the enclosing `budget()`)."""


class PoolExhausted(DatabaseError):
    """No pooled connection became free within the pool timeout: the server is saturated,
    not broken (retry later)."""


# The deadline (time.monotonic()) of the enclosing budget(); 0.0: none.
DEADLINE: ContextVar[float] = ContextVar("shipyard_db_deadline", default=0.0)


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
            outer = DEADLINE.get()
            self._token = DEADLINE.set(min(deadline, outer) if outer else deadline)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            DEADLINE.reset(self._token)
            self._token = None


def over_budget() -> QueryTimeout:
    return QueryTimeout("the request's query time budget is spent")


class QueryTimer(Protocol):
    """Told about every statement that took `threshold` seconds or more (the slow-query log).

    `slow` runs on the hot path of a slow statement: it must be cheap and must never raise.
    `rows` is the row count (fetched rows, or the rows a write changed), -1 when it failed.
    """

    threshold: float  # seconds

    def slow(self, sql: str, seconds: float, rows: int) -> None: ...


def timed(timer: QueryTimer | None, sql: str, start: float, rows: int) -> None:
    """Report the statement to the timer if it took at least its threshold."""
    if timer is not None:
        elapsed = perf_counter() - start
        if elapsed >= timer.threshold:
            timer.slow(sql, elapsed, rows)


# How many rows each kind of answer is, for the slow-query log.
def rows_of_all(rows: list[Row]) -> int:
    return len(rows)


def rows_of_one(row: Row | None) -> int:
    return 0 if row is None else 1


def rows_of_count(n: int) -> int:
    return n


class Executor(Protocol):
    """What queries run on: the database itself or one open transaction."""

    dialect: str

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...


class Database(Executor, Protocol):
    def transaction(
        self, *, share: bool = False
    ) -> contextlib.AbstractAsyncContextManager[Executor]: ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------- shared transactions


class Shared:
    """The transaction a `transaction(share=True)` block holds open: until the block ends,
    the task that opened it runs every statement on that database inside it (a nested
    `transaction()` becomes a savepoint), so several writes commit or roll back as one
    (POST /api/batch). Other tasks are not let in: on SQLite they wait for the lock as
    they would for any transaction."""

    __slots__ = ("db", "depth", "open", "rolled_back", "task", "tx")

    def __init__(self, db: object, tx: Executor) -> None:
        self.db = db
        self.tx = tx
        self.task = asyncio.current_task()
        self.open = True
        self.depth = 0
        # undo work done outside the database (stored files) if the whole transaction fails
        self.rolled_back: list[Callable[[], Awaitable[None]]] = []


SHARED: ContextVar[Shared | None] = ContextVar("shipyard_db_shared", default=None)


def joined(db: object) -> Executor | None:
    """The shared transaction the current task holds on `db`, if any."""
    shared = SHARED.get()
    if (
        shared is not None
        and shared.db is db
        and shared.open
        and shared.task is asyncio.current_task()
    ):
        return shared.tx
    return None


def on_rollback(undo: Callable[[], Awaitable[None]]) -> bool:
    """Have `undo()` run if the shared transaction the current task is in rolls back (what
    a write did outside the database, such as storing a file, then goes too). False, and
    nothing registered, outside a shared transaction."""
    shared = SHARED.get()
    if shared is None or not shared.open or shared.task is not asyncio.current_task():
        return False
    shared.rolled_back.append(undo)
    return True


@contextlib.asynccontextmanager
async def sharing(db: object, tx: Executor, share: bool) -> AsyncIterator[Executor]:
    """`tx`, made the shared transaction of `db` for the block when `share`."""
    if not share:
        yield tx
        return
    shared = Shared(db, tx)
    token = SHARED.set(shared)
    try:
        yield tx
    except BaseException:
        shared.open = False
        for undo in shared.rolled_back:
            with contextlib.suppress(Exception):  # best effort: the error that rolled back goes on
                await undo()
        raise
    finally:
        shared.open = False
        SHARED.reset(token)


@contextlib.asynccontextmanager
async def savepoint(db: object) -> AsyncIterator[Executor]:
    """A nested transaction inside the shared one: a block that raises undoes only its own
    statements (then the error goes on), one that ends keeps them for the outer commit."""
    shared = SHARED.get()
    if shared is None or shared.db is not db:
        raise RuntimeError("savepoint() outside a shared transaction of this database")
    shared.depth += 1
    name = f'"shipyard_sp{shared.depth}"'
    tx = shared.tx
    await tx.execute(f"SAVEPOINT {name}")
    try:
        yield tx
    except BaseException:
        with contextlib.suppress(DatabaseError):  # the engine may have ended it already
            await tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
            await tx.execute(f"RELEASE SAVEPOINT {name}")
        raise
    else:
        await tx.execute(f"RELEASE SAVEPOINT {name}")
    finally:
        shared.depth -= 1
