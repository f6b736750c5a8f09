"""Which tables a committed write touched, for whoever must react (the response cache).

Wraps a Database: reads pass straight through (bound methods, no extra await), writes are
recognised from the statement's first words — Shipyard always writes `INSERT INTO "t"`,
`UPDATE "t"`, `DELETE FROM "t"` — and reported after the commit that made them visible,
so a reader can never see the new version before the data. Inside a shared transaction
(`transaction(share=True)`, tools/db_base.py) the tables written by every nested write and
statement are gathered and reported once, after the shared transaction commits.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from typing import Any

from shipyard.tools.db import Database, Executor, Params, Row

_WRITE_RE = re.compile(r'\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"([^"]+)"', re.IGNORECASE)

OnWrite = Callable[[set[str]], Awaitable[None]]

# the watched database whose shared transaction this task is in, and what it wrote so far
_PENDING: ContextVar[tuple[object, set[str]] | None] = ContextVar(
    "shipyard_watched_pending", default=None
)


def written_table(sql: str) -> str | None:
    m = _WRITE_RE.match(sql)
    return m.group(1) if m else None


class _WatchedTx:
    def __init__(self, tx: Executor, written: set[str]) -> None:
        self._tx = tx
        self._written = written
        self.dialect = tx.dialect

    # inside a transaction a fetch may be a write too (`INSERT … RETURNING`)
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        t = written_table(sql)
        if t:
            self._written.add(t)
        return await self._tx.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        t = written_table(sql)
        if t:
            self._written.add(t)
        return await self._tx.fetchone(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        t = written_table(sql)
        if t:
            self._written.add(t)
        return await self._tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        t = written_table(sql)
        if t:
            self._written.add(t)
        await self._tx.executemany(sql, rows)


class WatchedDatabase:
    """`inner`, telling each subscriber (`subscribe`) which tables a commit wrote."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self._subscribers: list[OnWrite] = []
        self.dialect = inner.dialect
        self.fetchall: Callable[..., Coroutine[Any, Any, list[Row]]] = inner.fetchall
        self.fetchone: Callable[..., Coroutine[Any, Any, Row | None]] = inner.fetchone

    def __getattr__(self, name: str) -> Any:  # dialect, url, pool, … of the real database
        return getattr(self.inner, name)

    def subscribe(self, on_write: OnWrite) -> None:
        """`on_write(tables)` after every commit that wrote to `tables`, in order."""
        self._subscribers.append(on_write)

    async def on_write(self, tables: set[str]) -> None:
        for subscriber in self._subscribers:
            await subscriber(tables)

    def _pending(self) -> set[str] | None:
        """What this task's shared transaction on this database wrote so far, if in one."""
        pending = _PENDING.get()
        return pending[1] if pending is not None and pending[0] is self else None

    async def _wrote(self, sql: str) -> None:
        t = written_table(sql)
        if t:
            pending = self._pending()
            if pending is not None:
                pending.add(t)  # reported when the shared transaction commits
            else:
                await self.on_write({t})

    async def execute(self, sql: str, params: Params = ()) -> int:
        n = await self.inner.execute(sql, params)
        await self._wrote(sql)
        return n

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        await self.inner.executemany(sql, rows)
        await self._wrote(sql)

    @contextlib.asynccontextmanager
    async def transaction(self, *, share: bool = False) -> AsyncIterator[Executor]:
        """A transaction whose writes are reported after it commits; with `share`, the
        engine's shared transaction (tools/db_base.py), reported once for everything in it."""
        pending = self._pending()
        if pending is not None:  # nested in this task's shared transaction: a savepoint
            async with self.inner.transaction() as tx:
                yield _WatchedTx(tx, pending)
            return
        written: set[str] = set()
        token = _PENDING.set((self, written)) if share else None
        try:
            async with self.inner.transaction(share=share) as tx:
                yield _WatchedTx(tx, written)
        finally:
            if token is not None:
                _PENDING.reset(token)
        if written:  # only reached when the transaction committed
            await self.on_write(written)

    async def close(self) -> None:
        await self.inner.close()
