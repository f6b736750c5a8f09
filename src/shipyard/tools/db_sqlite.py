"""The SQLite engine of the database seam (tools/db.py).

SQLite runs synchronously inside the coroutine: aiosqlite measured at half the throughput
of plain sqlite3, and a local SQLite query is faster than a thread hop. A `budget()`
deadline interrupts a statement from a progress handler; the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import monotonic, perf_counter
from typing import Generic, TypeVar

from shipyard.tools.db_base import (
    DEADLINE,
    ConstraintKind,
    DatabaseError,
    DataValueError,
    Executor,
    IntegrityError,
    Params,
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

T = TypeVar("T")

# SQLite VM instructions between two deadline checks: a check costs ~0.1 us, and SQLite runs
# tens of millions of instructions a second, so the overhead stays far below 1 % while an
# interrupt lands within a fraction of a millisecond of the deadline.
_PROGRESS_STEPS = 20000


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """What a statement answers, read from its cursor, and how many rows that is."""

    read: Callable[[sqlite3.Cursor], T]
    rows: Callable[[T], int]


def _read_all(cur: sqlite3.Cursor) -> list[Row]:
    return cur.fetchall()


def _read_one(cur: sqlite3.Cursor) -> Row | None:
    row: Row | None = cur.fetchone()
    return row


def _read_count(cur: sqlite3.Cursor) -> int:
    return cur.rowcount


ALL: _Answer[list[Row]] = _Answer(_read_all, rows_of_all)
ONE: _Answer[Row | None] = _Answer(_read_one, rows_of_one)
COUNT: _Answer[int] = _Answer(_read_count, rows_of_count)

# --------------------------------------------------------------------------- errors

_KINDS = {
    sqlite3.SQLITE_CONSTRAINT_UNIQUE: ConstraintKind.UNIQUE,
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: ConstraintKind.UNIQUE,
    sqlite3.SQLITE_CONSTRAINT_NOTNULL: ConstraintKind.NOT_NULL,
    sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: ConstraintKind.FOREIGN_KEY,
    sqlite3.SQLITE_CONSTRAINT_CHECK: ConstraintKind.CHECK,
}
_OUTSIDE_TX = re.compile(r"^\s*(VACUUM|PRAGMA|ATTACH|DETACH)\b", re.IGNORECASE)
_INDEX = re.compile(r"^index '(.+)'$")  # a unique index on an expression
_NAME = re.compile(r"^\w+$")


def integrity_error(exc: sqlite3.IntegrityError) -> IntegrityError:
    """SQLite's constraint error as the seam's typed one. The kind comes from the extended
    error code; the table, columns or name only from the message, which SQLite writes as
    `UNIQUE constraint failed: t.a, t.b`, `… failed: index 'name'`, `NOT NULL constraint
    failed: t.a`, `CHECK constraint failed: name-or-expression`."""
    text = str(exc)
    kind = _KINDS.get(getattr(exc, "sqlite_errorcode", -1), ConstraintKind.OTHER)
    detail = text.partition(" constraint failed: ")[2]
    table: str | None = None
    columns: tuple[str, ...] = ()
    constraint: str | None = None
    if kind in (ConstraintKind.UNIQUE, ConstraintKind.NOT_NULL) and detail:
        named = _INDEX.match(detail)
        if named:
            constraint = named.group(1)
        else:
            pairs = [part.partition(".") for part in detail.split(", ")]
            if all(sep and col for _, sep, col in pairs) and len({t for t, _, _ in pairs}) == 1:
                table = pairs[0][0]
                columns = tuple(col for _, _, col in pairs)
    elif kind is ConstraintKind.CHECK and _NAME.match(detail):
        constraint = detail
    return IntegrityError(text, kind, table=table, columns=columns, constraint=constraint)


def _run(conn: sqlite3.Connection, sql: str, params: Params, answer: _Answer[T]) -> T:
    try:
        return answer.read(conn.execute(sql, params))
    except sqlite3.IntegrityError as exc:
        raise integrity_error(exc) from exc
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            raise over_budget() from exc
        raise DatabaseError(str(exc)) from exc
    except OverflowError as exc:
        raise DataValueError(str(exc)) from exc


def _call(
    conn: sqlite3.Connection,
    sql: str,
    params: Params,
    answer: _Answer[T],
    timer: QueryTimer | None,
) -> T:
    if timer is None:
        return _run(conn, sql, params, answer)
    start = perf_counter()
    rows = -1
    try:
        out = _run(conn, sql, params, answer)
        rows = answer.rows(out)
        return out
    finally:
        elapsed = perf_counter() - start
        if elapsed >= timer.threshold:
            timer.slow(sql, elapsed, rows)


class _SQLiteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, timer: QueryTimer | None = None) -> None:
        self._conn = conn
        self.timer = timer

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _call(self._conn, sql, params, ALL, self.timer)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return _call(self._conn, sql, params, ONE, self.timer)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _call(self._conn, sql, params, COUNT, self.timer)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        start = perf_counter()
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise integrity_error(exc) from exc
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc
        timed(self.timer, sql, start, len(rows))


def _busy(exc: BaseException | None) -> bool:
    """SQLITE_BUSY or one of its extended codes (…_RECOVERY, …_SNAPSHOT, …_TIMEOUT)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code or 0) & 0xFF == sqlite3.SQLITE_BUSY


class _Progress:
    """SQLite's progress handler, installed once per connection (installing one per statement
    costs more than the statement): interrupts while `deadline` is set and has passed."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = 0.0

    def __call__(self) -> bool:
        return self.deadline != 0.0 and monotonic() >= self.deadline


class SQLiteDatabase(_SQLiteTx):
    """One connection per process, in WAL mode, autocommit outside explicit transactions.

    Statements never yield to the event loop, so only an open transaction (which may span
    awaits) needs the lock: other coroutines wait for it instead of joining it.
    """

    def __init__(
        self, path: Path | str, busy_timeout_ms: int = 5000, timer: QueryTimer | None = None
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, cached_statements=512
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")
        # no busy handler until a statement meets another process's lock: a write's `BEGIN`
        # must not wait inside the call (`_begin`), and a read waits only when it tries again
        # (`_waiting`), so a write does not switch the handler off and on around its BEGIN
        conn.execute("PRAGMA busy_timeout = 0")
        super().__init__(conn, timer)
        self._lock = asyncio.Lock()
        self._progress = _Progress()
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)

    def _budgeted(self, sql: str, params: Params, answer: _Answer[T]) -> T:
        """A statement outside transactions: under the budget's deadline when there is one
        (an interrupted statement is reset; the connection and any transaction stay usable)."""
        deadline = DEADLINE.get()
        if not deadline:
            return self._waiting(sql, params, answer)
        if monotonic() >= deadline:
            raise over_budget()
        self._progress.deadline = deadline
        try:
            return self._waiting(sql, params, answer)
        finally:
            self._progress.deadline = 0.0

    def _waiting(self, sql: str, params: Params, answer: _Answer[T]) -> T:
        """The statement; met with another process's lock (a checkpoint, a WAL recovery,
        VACUUM), once more with SQLite's busy handler waiting up to the busy timeout."""
        try:
            return _call(self._conn, sql, params, answer, self.timer)
        except DatabaseError as exc:
            if not _busy(exc.__cause__) or self._conn.in_transaction:
                raise
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            return _call(conn, sql, params, answer, self.timer)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        if self._lock.locked():
            tx = joined(self)
            if tx is not None:
                return await tx.fetchall(sql, params)
            async with self._lock:
                return self._budgeted(sql, params, ALL)
        return self._budgeted(sql, params, ALL)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        if self._lock.locked():
            tx = joined(self)
            if tx is not None:
                return await tx.fetchone(sql, params)
            async with self._lock:
                return self._budgeted(sql, params, ONE)
        return self._budgeted(sql, params, ONE)

    async def execute(self, sql: str, params: Params = ()) -> int:
        if self._lock.locked():
            tx = joined(self)
            if tx is not None:
                return await tx.execute(sql, params)
        if _OUTSIDE_TX.match(sql):  # VACUUM, PRAGMA…: not allowed in a transaction
            async with self._lock:
                return self._budgeted(sql, params, COUNT)
        # a write of its own: in a transaction, so that waiting for another process's write
        # lock happens off the event loop too (`_begin`)
        async with self.transaction():
            return self._budgeted(sql, params, COUNT)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    @contextlib.asynccontextmanager
    async def transaction(self, *, share: bool = False) -> AsyncIterator[Executor]:
        """One transaction; with `share`, every statement this task runs on this database
        until the block ends joins it (tools/db_base.py `Shared`). Inside a shared one, a
        savepoint."""
        if self._lock.locked() and joined(self) is not None:
            async with savepoint(self) as tx:
                yield tx
            return
        await self._begin()  # holds self._lock from here
        try:
            async with sharing(self, _SQLiteTx(self._conn, self.timer), share) as tx:
                yield tx
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back already
                self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._lock.release()

    async def _begin(self) -> None:
        """`BEGIN IMMEDIATE` with this process's lock held, without blocking the event loop.

        Another process may hold SQLite's write lock. SQLite's own busy handler would wait for
        it inside the call, up to the busy timeout, and stall every request of this process
        meanwhile. Instead each try does not wait, and between tries the process's lock is
        let go (reads and cached answers go on) while this coroutine sleeps a little longer
        each time (0.5 ms doubling to 20 ms), until the busy timeout has passed."""
        deadline = monotonic() + self.busy_timeout_ms / 1000
        pause = 0.0005
        while True:
            await self._lock.acquire()
            try:
                if self._try_begin(deadline):
                    return
            except BaseException:
                self._lock.release()
                raise
            self._lock.release()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _try_begin(self, deadline: float) -> bool:
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # no busy handler: does not wait
            return True
        except sqlite3.OperationalError as exc:
            if _busy(exc) and monotonic() < deadline:
                return False
            raise DatabaseError(str(exc)) from exc

    async def close(self) -> None:
        self._conn.close()
