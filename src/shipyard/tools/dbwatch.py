"""Which tables a committed write touched, for whoever must react (the response cache).

Wraps a Database: reads pass straight through (bound methods, no extra await), writes are
recognised from the statement's first words — Shipyard always writes `INSERT INTO "t"`,
`UPDATE "t"`, `DELETE FROM "t"` — and reported after the commit that made them visible,
so a reader can never see the new version before the data.

A transaction opened here also takes `after_commit(fn)`: `fn()` runs right after the
commit, before anything else on the event loop (so hooks of successive commits run in
commit order), and never when the transaction rolls back. A record-event listener that
must act only on committed data (realtime) registers one from inside the transaction.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from shipyard.tools.db import Database, Executor, Params, Row

_WRITE_RE = re.compile(r'\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"([^"]+)"', re.IGNORECASE)

OnWrite = Callable[[set[str]], Awaitable[None]]


def written_table(sql: str) -> str | None:
    m = _WRITE_RE.match(sql)
    return m.group(1) if m else None


AfterCommit = Callable[[], None]


class _WatchedTx:
    def __init__(self, tx: Executor, written: set[str]) -> None:
        self._tx = tx
        self._written = written
        self.dialect = tx.dialect
        self.hooks: list[AfterCommit] = []

    def after_commit(self, fn: AfterCommit) -> None:
        """Call `fn()` (synchronous, cheap, never raising) once this transaction commits."""
        self.hooks.append(fn)

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

    async def execute(self, sql: str, params: Params = ()) -> int:
        n = await self.inner.execute(sql, params)
        t = written_table(sql)
        if t:
            await self.on_write({t})
        return n

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        await self.inner.executemany(sql, rows)
        t = written_table(sql)
        if t:
            await self.on_write({t})

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        written: set[str] = set()
        async with self.inner.transaction() as tx:
            watched = _WatchedTx(tx, written)
            yield watched
        for hook in watched.hooks:  # synchronously: no other commit can come between
            hook()
        if written:  # only reached when the transaction committed
            await self.on_write(written)

    async def close(self) -> None:
        await self.inner.close()
