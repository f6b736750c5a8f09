"""The slow-query log: statements slower than a threshold, logged and counted by shape.

The database seam (tools/db.py) times every statement with two `perf_counter()` calls and
calls `SlowQueryLog.slow()` only for one at or over the threshold. That call logs the SQL
text (logger `shipyard.slowquery`), never the parameter values — they can hold secrets and
personal data — and adds the statement to an in-memory tally keyed by its *shape*: Shipyard
always passes values as `?` parameters, so the SQL text with whitespace normalized (and
`IN (?, ?, …)` lists folded to `IN (?)`) is the shape.

The tally is flushed to the table `_slow_queries` (an upsert that adds counts and keeps the
maximum) by a background task every few seconds and on close, so every process and machine
sharing the database — and `shipyard db advise`, a separate process — sees the same shapes.
Recording is best effort: it never raises into a query, a failed flush is logged once and
its batch dropped, and at most `max_pending` new shapes wait in memory between flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from shipyard.tools.db import Database
from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.slowquery")

TABLE = "_slow_queries"
MAX_SHAPE_CHARS = 8000  # longer statements are stored truncated (and cannot be explained)
MAX_LOG_CHARS = 2000
MAX_ROWS = 1000  # shapes kept in the table: the most recently seen
_PG_LOCK_ID = 7414  # advisory lock: one process creates the table at a time

_SPACE = re.compile(r"\s+")
_IN_LIST = re.compile(r"\bIN \(\?(?:, ?\?)+\)", re.IGNORECASE)


def shape_of(sql: str) -> str:
    """The shape of a statement: whitespace collapsed, `IN (?, ?, …)` folded to `IN (?)`."""
    text = _SPACE.sub(" ", sql).strip()
    if "IN (?," in text or "in (?," in text:
        text = _IN_LIST.sub("IN (?)", text)
    return text


def shape_id(shape: str) -> str:
    return hashlib.sha256(shape.encode()).hexdigest()[:32]


def _ignored(shape: str) -> bool:
    # the log's own writes and the advisor's EXPLAINs are not application queries
    return (
        f'"{TABLE}"' in shape
        or shape[:7].upper() == "EXPLAIN"
        or "_sy_advise_" in shape  # PREPARE/DEALLOCATE of the pre-16 PostgreSQL plan path
        or shape.startswith("SET LOCAL plan_cache_mode")
    )


@dataclass
class Tally:
    sql: str
    calls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    rows: int = -1  # rows of the latest occurrence
    first_seen: float = 0.0
    last_seen: float = 0.0


class SlowQueryLog:
    """Implements tools.db.QueryTimer; `start(db)` creates the table and the flusher."""

    def __init__(
        self, threshold_ms: float, flush_interval: float = 5.0, max_pending: int = 500
    ) -> None:
        self.threshold_ms = float(threshold_ms)
        self.threshold = self.threshold_ms / 1000.0  # seconds, read by tools/db.py
        self.enabled = self.threshold_ms > 0
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.db: Database | None = None
        self.dropped = 0  # occurrences not recorded (pending full, or a failed flush)
        self._pending: dict[str, Tally] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._warned = False

    @property
    def timer(self) -> SlowQueryLog | None:
        """What to give tools.db.connect: nothing at all when the log is off."""
        return self if self.enabled else None

    # ------------------------------------------------------------------ hot path

    def slow(self, sql: str, seconds: float, rows: int) -> None:
        """Called by the database seam for a statement at or over the threshold."""
        try:
            shape = shape_of(sql)
            if _ignored(shape):
                return
            ms = seconds * 1000.0
            text = shape if len(shape) <= MAX_LOG_CHARS else shape[:MAX_LOG_CHARS] + "…"
            log.warning("slow query: %.1f ms, %d rows: %s", ms, rows, text)
            key = shape_id(shape)
            now = time.time()
            tally = self._pending.get(key)
            if tally is None:
                if len(self._pending) >= self.max_pending:
                    self.dropped += 1
                    return
                stored = shape if len(shape) <= MAX_SHAPE_CHARS else shape[:MAX_SHAPE_CHARS]
                tally = self._pending[key] = Tally(stored, first_seen=now)
            tally.calls += 1
            tally.total_ms += ms
            tally.max_ms = max(tally.max_ms, ms)
            tally.rows = rows
            tally.last_seen = now
        except Exception:  # never let bookkeeping break a query
            self.dropped += 1

    # ------------------------------------------------------------------ persistence

    async def start(self, db: Database) -> None:
        """Create `_slow_queries` if missing (also when the log is off, so the advisor can
        read it) and, when on, start the background flusher."""
        self.db = db
        await ensure_schema(db)
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._flusher())

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> int:
        """Write the pending tally to the table; returns the number of shapes written.
        Never raises: a failure is logged once per process and the batch is dropped."""
        if not self._pending or self.db is None:
            return 0
        async with self._flush_lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                await upsert(self.db, batch)
            except Exception as exc:
                self.dropped += sum(t.calls for t in batch.values())
                if not self._warned:
                    self._warned = True
                    log.warning("could not record slow queries (ignored from now on): %s", exc)
                return 0
            return len(batch)

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()


async def ensure_schema(db: Database) -> None:
    real = "DOUBLE PRECISION" if db.dialect == "postgres" else "REAL"
    big = "BIGINT" if db.dialect == "postgres" else "INTEGER"
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
        await tx.execute(
            f'CREATE TABLE IF NOT EXISTS "{TABLE}" ('
            '"id" TEXT PRIMARY KEY NOT NULL, '
            '"sql" TEXT NOT NULL, '
            f'"calls" {big} NOT NULL, '
            f'"total_ms" {real} NOT NULL, '
            f'"max_ms" {real} NOT NULL, '
            f'"rows" {big} NOT NULL, '
            f'"first_seen" {real} NOT NULL, '
            f'"last_seen" {real} NOT NULL)'
        )


async def upsert(db: Database, batch: dict[str, Tally]) -> None:
    """Add a batch to the table in one transaction, then keep only the newest MAX_ROWS."""
    t = TABLE
    sql = (
        f'INSERT INTO "{t}" ("id", "sql", "calls", "total_ms", "max_ms", "rows", '
        '"first_seen", "last_seen") VALUES (?, ?, ?, ?, ?, ?, ?, ?) '
        'ON CONFLICT ("id") DO UPDATE SET '
        f'"calls" = "{t}"."calls" + excluded."calls", '
        f'"total_ms" = "{t}"."total_ms" + excluded."total_ms", '
        f'"max_ms" = CASE WHEN excluded."max_ms" > "{t}"."max_ms" '
        f'THEN excluded."max_ms" ELSE "{t}"."max_ms" END, '
        '"rows" = excluded."rows", '
        '"last_seen" = excluded."last_seen"'
    )
    # sorted: concurrent flushes from several processes lock rows in the same order
    rows = [
        (k, v.sql, v.calls, v.total_ms, v.max_ms, v.rows, v.first_seen, v.last_seen)
        for k, v in sorted(batch.items())
    ]
    await db.executemany(sql, rows)  # one transaction
    # pruning is a separate statement: it must not hold the batch's row locks
    with contextlib.suppress(Exception):
        await db.execute(
            f'DELETE FROM "{t}" WHERE "id" NOT IN '
            f'(SELECT "id" FROM "{t}" ORDER BY "last_seen" DESC LIMIT {MAX_ROWS})'
        )


@dataclass
class Shape:
    """One row of `_slow_queries`."""

    id: str
    sql: str
    calls: int
    total_ms: float
    max_ms: float
    rows: int
    first_seen: float
    last_seen: float

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    @property
    def truncated(self) -> bool:
        return len(self.sql) >= MAX_SHAPE_CHARS

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sql": self.sql,
            "calls": self.calls,
            "totalMs": round(self.total_ms, 3),
            "maxMs": round(self.max_ms, 3),
            "avgMs": round(self.avg_ms, 3),
            "rows": self.rows,
            "firstSeen": _iso(self.first_seen),
            "lastSeen": _iso(self.last_seen),
        }


_ORDER = {"total": '"total_ms"', "max": '"max_ms"', "calls": '"calls"', "avg": '"avg"'}


async def read(db: Database, limit: int = 20, by: str = "total") -> list[Shape]:
    """The recorded shapes, slowest first by `by` (total, max, avg or calls)."""
    order = _ORDER[by]
    rows = await db.fetchall(
        'SELECT "id", "sql", "calls", "total_ms", "max_ms", "rows", "first_seen", "last_seen", '
        '"total_ms" / CASE WHEN "calls" > 0 THEN "calls" ELSE 1 END AS "avg" '
        f'FROM "{TABLE}" ORDER BY {order} DESC, "id" LIMIT ?',
        (int(limit),),
    )
    return [
        Shape(
            str(r[0]),
            str(r[1]),
            int(r[2]),
            float(r[3]),
            float(r[4]),
            int(r[5]),
            float(r[6]),
            float(r[7]),
        )
        for r in rows
    ]


async def reset(db: Database) -> int:
    """Forget every recorded shape; returns how many there were."""
    return await db.execute(f'DELETE FROM "{TABLE}"')


def _iso(epoch: float) -> str:
    """PocketBase's date format, UTC."""
    t = time.gmtime(epoch)
    ms = int((epoch % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms:03d}Z"
