"""The `_logs` table: PocketBase's request log (and Shipyard's warnings and errors), in
the auxiliary database (tools/db.py `auxiliary`), so writing it never invalidates a cached
response.

Rows are `(id, created, level, message, data)` as PocketBase keeps them: `created` is the
text `2026-12-05 03:00:00.123Z` (sortable, and the same on both engines), `level` one of
PocketBase's integers (-4 debug, 0 info, 4 warning, 8 error), `data` a JSON object (TEXT
on SQLite, JSONB on PostgreSQL).

Writes never happen on a request: the log writer (writer.py) inserts them in batches,
multi-row INSERTs in one transaction. Ids are 15 characters of [a-z0-9] as PocketBase's,
but ordered by time (`new_id`), so inserts append to the primary key's index instead of
landing all over it (measured: 2.8 → 1.7 µs a row). Old rows are deleted by any process,
from time to time (`cleanup`: an idempotent DELETE).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from shipyard.tools.db import Database

log = logging.getLogger("shipyard.logs")

TABLE = "_logs"
DEBUG, INFO, WARN, ERROR = -4, 0, 4, 8  # PocketBase's (Go slog's) levels
ROWS_PER_INSERT = 500  # 5 parameters a row: well under SQLite's and PostgreSQL's limits
_PG_LOCK_ID = 7415  # advisory lock: one process creates the table at a time

Row = tuple[str, str, int, str, str]  # id, created, level, message, data (JSON text)

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


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]  # 2 base-36 digits per entry
# 4 random characters per process, then a counter: ids of one process never collide, and
# two processes collide only with the same prefix in the same millisecond and count (an
# insert then skips the row: ON CONFLICT DO NOTHING)
_PROCESS = "".join(_DIGITS[b % 36] for b in os.urandom(4))
_count = itertools.count()
_last_ms: tuple[int, str] = (-1, "")


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, d = divmod(n, 36)
        out.append(_DIGITS[d])
    return "".join(reversed(out))


_last_day: tuple[int, str, str] = (-(2**62), "", "")


def second_texts(second: int) -> tuple[str, str]:
    """A whole second (epoch) as PocketBase's date text and as RFC 3339, both without the
    fraction: `2026-12-05 03:00:00`, `2026-12-05T03:00:00` (formatted once per second)."""
    global _last_day
    cached = _last_day  # one read: threads may replace it meanwhile
    if cached[0] != second:
        day = time.gmtime(second)
        cached = _last_day = (
            second,
            time.strftime("%Y-%m-%d %H:%M:%S", day),
            time.strftime("%Y-%m-%dT%H:%M:%S", day),
        )
    return cached[1], cached[2]


def id_prefix(ms: int) -> str:
    """The first 13 characters of the ids of one millisecond (see `new_id`)."""
    return _base36(ms, 9) + _PROCESS


def id_suffix() -> str:
    """The last 2 characters of a new id: the counter's (see `new_id`)."""
    return _PAIRS[next(_count) % 1296]


def new_id(epoch: float | None = None) -> str:
    """15 characters of [a-z0-9], as PocketBase's ids: the time in milliseconds (9
    characters), this process's prefix (4) and a counter (2), so ids sort by time."""
    global _last_ms
    ms = int((time.time() if epoch is None else epoch) * 1000)
    cached = _last_ms  # one read: threads may replace it meanwhile
    if cached[0] != ms:
        cached = _last_ms = (ms, _base36(ms, 9))
    return cached[1] + _PROCESS + _PAIRS[next(_count) % 1296]


def make_row(created: float, level: int, message: str, data: dict[str, Any]) -> Row:
    body = orjson.dumps(data, default=str).decode()
    return new_id(created), pb_time(created), level, clean(message), clean(body)


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


def insert_statements(rows: Sequence[Row], dialect: str) -> Iterator[tuple[str, list[Any]]]:
    """The multi-row INSERTs of `rows`, ROWS_PER_INSERT to a statement."""
    cast = "CAST(? AS JSONB)" if dialect == "postgres" else "?"
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        values = ", ".join([f"(?, ?, ?, ?, {cast})"] * len(chunk))
        yield (
            f'INSERT INTO "{TABLE}" ("id", "created", "level", "message", "data") '
            f'VALUES {values} ON CONFLICT ("id") DO NOTHING',
            [value for row in chunk for value in row],
        )


async def insert(db: Database, rows: Sequence[Row]) -> None:
    """The rows in one transaction."""
    async with db.transaction() as tx:
        for sql, params in insert_statements(rows, db.dialect):
            await tx.execute(sql, params)


async def cleanup(db: Database, max_days: int, now: float | None = None) -> int:
    """Delete the rows older than `max_days` days (all of them with 0); returns how many."""
    cutoff = pb_time((now if now is not None else time.time()) - max_days * 86400)
    return await db.execute(f'DELETE FROM "{TABLE}" WHERE "created" < ?', (cutoff,))


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
    "Row",
    "cleanup",
    "ensure_schema",
    "id_prefix",
    "id_suffix",
    "insert",
    "insert_statements",
    "make_row",
    "new_id",
    "pb_time",
    "row_to_json",
    "second_texts",
]
