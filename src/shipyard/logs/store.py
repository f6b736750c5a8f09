"""The `_logs` table: PocketBase's request log (and Shipyard's warnings and errors), on the
raw database, so writing it never invalidates a cached response.

Rows are `(id, created, level, message, data)` as PocketBase keeps them: `created` is the
text `2026-12-05 03:00:00.123Z` (sortable, and the same on both engines), `level` one of
PocketBase's integers (-4 debug, 0 info, 4 warning, 8 error), `data` a JSON object (TEXT
on SQLite, JSONB on PostgreSQL).

Writes never happen on a request: `LogQueue.add` appends to a bounded in-memory queue
(overflow is dropped and counted) and a background task writes the queue every
`interval` seconds with multi-row INSERTs in one transaction. Old rows are deleted by any
process, from time to time (`cleanup`: an idempotent DELETE).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

import orjson

from shipyard.tools.db import Database

from .batch import Batcher

log = logging.getLogger("shipyard.logs")

TABLE = "_logs"
DEBUG, INFO, WARN, ERROR = -4, 0, 4, 8  # PocketBase's (Go slog's) levels
BUILD_SLICE = 500  # rows built between two yields to the event loop
ROWS_PER_INSERT = 500  # 5 parameters a row: well under SQLite's and PostgreSQL's limits
_PG_LOCK_ID = 7415  # advisory lock: one process creates the table at a time

Row = tuple[str, str, int, str, str]  # id, created, level, message, data (JSON text)
# set while the queue is written: what is logged then (a slow INSERT into `_logs`) is not
# recorded in `_logs` again, or every write could cause the next
WRITING: ContextVar[bool] = ContextVar("shipyard_logs_writing", default=False)


_last_second: tuple[int, str] = (-(2**62), "")  # the last whole second formatted


def pb_time(epoch: float) -> str:
    """PocketBase's date text, UTC: `2026-12-05 03:00:00.123Z`."""
    global _last_second
    second = int(epoch // 1)
    cached = _last_second  # one read: threads may replace it meanwhile
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((epoch - second) * 1000):03d}Z"


def clean(text: str) -> str:
    """No NUL characters: PostgreSQL's TEXT and JSONB refuse them."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"
_BYTE_TO_CHAR = bytes(_ALPHABET[b % 36] for b in range(256))  # for bytes.translate


def new_id() -> str:
    """15 characters of [a-z0-9], as PocketBase's ids (a log id needs no more than
    uniqueness: a byte modulo 36 is cheap, and its slight bias harmless)."""
    return os.urandom(15).translate(_BYTE_TO_CHAR).decode()


def make_row(created: float, level: int, message: str, data: dict[str, Any]) -> Row:
    body = orjson.dumps(data, default=str).decode()
    return new_id(), pb_time(created), level, clean(message), clean(body)


async def ensure_schema(db: Database) -> None:
    pg = db.dialect == "postgres"
    data_type = "JSONB" if pg else "TEXT"
    async with db.transaction() as tx:
        if pg:
            await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
        await tx.execute(
            f'CREATE TABLE IF NOT EXISTS "{TABLE}" ('
            '"id" TEXT PRIMARY KEY NOT NULL, '
            '"created" TEXT NOT NULL, '
            '"level" INTEGER NOT NULL DEFAULT 0, '
            "\"message\" TEXT NOT NULL DEFAULT '', "
            f'"data" {data_type} NOT NULL)'
        )
        await tx.execute(f'CREATE INDEX IF NOT EXISTS "idx_logs_created" ON "{TABLE}" ("created")')
        await tx.execute(f'CREATE INDEX IF NOT EXISTS "idx_logs_level" ON "{TABLE}" ("level")')


async def insert(db: Database, rows: Sequence[Row]) -> None:
    """The rows in one transaction, ROWS_PER_INSERT to a statement."""
    cast = "CAST(? AS JSONB)" if db.dialect == "postgres" else "?"
    async with db.transaction() as tx:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            values = ", ".join([f"(?, ?, ?, ?, {cast})"] * len(chunk))
            params = [value for row in chunk for value in row]
            await tx.execute(
                f'INSERT INTO "{TABLE}" ("id", "created", "level", "message", "data") '
                f"VALUES {values}",
                params,
            )


async def cleanup(db: Database, max_days: int, now: float | None = None) -> int:
    """Delete the rows older than `max_days` days (all of them with 0); returns how many."""
    cutoff = pb_time((now if now is not None else time.time()) - max_days * 86400)
    return await db.execute(f'DELETE FROM "{TABLE}" WHERE "created" < ?', (cutoff,))


# an entry waiting in the queue: built into a Row (or dropped) when the queue is written
Pending = Callable[[], Row | None]


class LogQueue(Batcher[Pending]):
    """Entries waiting for `_logs`, written every `interval` seconds: `before_write` (the
    settings refresh) first, then the rows built and inserted."""

    def __init__(
        self,
        db: Database,
        max_pending: int = 10000,
        interval: float = 1.0,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(max_pending, interval)
        self.db = db
        self.before_write = before_write
        self._lock = asyncio.Lock()
        self._warned = False

    async def write_batch(self) -> None:
        await self.flush()

    async def flush(self) -> int:
        """Write what waits; returns the rows written. Never raises: a failed write is
        logged once per outage and its batch dropped."""
        async with self._lock:
            batch = self.take()
            if not batch:
                return 0
            token = WRITING.set(True)
            try:
                if self.before_write is not None:
                    await self.before_write()
                rows: list[Row] = []
                for start in range(0, len(batch), BUILD_SLICE):
                    if start:  # let requests run between slices of a large batch
                        await asyncio.sleep(0)
                    for entry in batch[start : start + BUILD_SLICE]:
                        row = entry()
                        if row is not None:
                            rows.append(row)
                if rows:
                    await insert(self.db, rows)
                self.written += len(rows)
                self._warned = False
                return len(rows)
            except Exception as exc:
                self.dropped += len(batch)
                if not self._warned:
                    self._warned = True
                    log.warning("could not write %d request log entries: %s", len(batch), exc)
                return 0
            finally:
                WRITING.reset(token)


def row_to_json(row: Sequence[Any]) -> dict[str, Any]:
    """A `_logs` row as PocketBase's API returns it."""
    data = row[4]
    if isinstance(data, str | bytes):
        data = orjson.loads(data)
    return {
        "id": row[0],
        "created": row[1],
        "data": data if isinstance(data, dict) else {},
        "message": row[3],
        "level": int(row[2]),
    }


__all__ = [
    "DEBUG",
    "ERROR",
    "INFO",
    "TABLE",
    "WARN",
    "LogQueue",
    "Row",
    "cleanup",
    "ensure_schema",
    "insert",
    "make_row",
    "pb_time",
    "row_to_json",
]
