"""Failed-attempt counters in the database, for brute-force protection of auth endpoints.

Counters live in a table, not in process memory, so every API process sharing the database
sees the same counts. Each key gets a fixed window that opens at its first failure: one
atomic `INSERT ... ON CONFLICT DO UPDATE` either starts a new window or increments the
current one, so concurrent failures from any number of processes are all counted.

Keys are opaque strings ("login:ip:1.2.3.4", "login:id:users:a@b.c"); the table stores only
their SHA-256 (or HMAC-SHA256 with a secret), so it holds no e-mail addresses or IPs.
Times are wall-clock epoch seconds (`time.time()`), comparable across machines.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable

from shipyard.tools.db import Database

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PG_LOCK_ID = 7413  # advisory lock: one process creates the table at a time


class AttemptLimiter:
    """Counts failures per key in `table`; `check` says how long a blocked caller must wait."""

    def __init__(self, db: Database, table: str = "_attempts", secret: bytes = b"") -> None:
        if not _IDENT.match(table):
            raise ValueError(f"invalid table name {table!r}")
        self.db = db
        self.table = table
        # With a secret the digests cannot be reversed by hashing every IPv4 address or a
        # list of known e-mails; without one they are plain SHA-256.
        self._secret = secret

    def digest(self, key: str) -> str:
        """The stored form of `key` (hex); the raw key is never written."""
        if self._secret:
            return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(key.encode()).hexdigest()

    def _digests(self, keys: Iterable[str]) -> list[str]:
        # Deduplicated (one upsert may not touch a row twice) and sorted, so concurrent
        # multi-key upserts lock rows in the same order and cannot deadlock on PostgreSQL.
        return sorted({self.digest(k) for k in keys})

    async def ensure_schema(self) -> None:
        """Create the table and its expiry index if missing (safe from many processes)."""
        real = "DOUBLE PRECISION" if self.db.dialect == "postgres" else "REAL"
        t = self.table
        async with self.db.transaction() as tx:
            if self.db.dialect == "postgres":
                # Concurrent CREATE ... IF NOT EXISTS can still collide on PostgreSQL.
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            await tx.execute(
                f'CREATE TABLE IF NOT EXISTS "{t}" ('
                '"key" TEXT PRIMARY KEY NOT NULL, '
                '"failures" INTEGER NOT NULL, '
                f'"window_start" {real} NOT NULL, '
                f'"expires" {real} NOT NULL)'
            )
            await tx.execute(f'CREATE INDEX IF NOT EXISTS "{t}_expires" ON "{t}" ("expires")')

    async def check(
        self, keys: list[str], limit: int, window_s: float, now: float | None = None
    ) -> float | None:
        """Seconds to wait (for Retry-After) if any key has `limit` or more failures in its
        current window, else None. With several keys blocked, the longest wait wins."""
        digests = self._digests(keys)
        if not digests:
            return None
        now = time.time() if now is None else now
        marks = ", ".join("?" * len(digests))
        rows = await self.db.fetchall(
            f'SELECT "expires" FROM "{self.table}" '
            f'WHERE "key" IN ({marks}) AND "expires" > ? AND "failures" >= ?',
            (*digests, now, limit),
        )
        if not rows:
            return None
        wait = max(float(r[0]) for r in rows) - now
        # Clamp: a window opened by a machine whose clock runs ahead must not block longer
        # than one window.
        return min(wait, float(window_s))

    async def record_failure(
        self, keys: list[str], window_s: float, now: float | None = None
    ) -> None:
        """Count one failure for each key, atomically, in one statement.

        A row whose window has expired restarts at 1 with a new window; otherwise its count
        goes up by one. The CASE expressions all read the row's values before the update.
        """
        digests = self._digests(keys)
        if not digests:
            return
        now = time.time() if now is None else now
        expires = now + float(window_s)
        t = self.table
        stale = f'"{t}"."expires" <= excluded."window_start"'
        values = ", ".join("(?, 1, ?, ?)" for _ in digests)
        params = [p for d in digests for p in (d, now, expires)]
        await self.db.execute(
            f'INSERT INTO "{t}" ("key", "failures", "window_start", "expires") '
            f"VALUES {values} "
            'ON CONFLICT ("key") DO UPDATE SET '
            f'"failures" = CASE WHEN {stale} THEN 1 ELSE "{t}"."failures" + 1 END, '
            f'"window_start" = CASE WHEN {stale} THEN excluded."window_start" '
            f'ELSE "{t}"."window_start" END, '
            f'"expires" = CASE WHEN {stale} THEN excluded."expires" ELSE "{t}"."expires" END',
            params,
        )

    async def reset(self, keys: list[str]) -> None:
        """Forget the keys' failures (e.g. the identity key after a successful login)."""
        digests = self._digests(keys)
        if not digests:
            return
        marks = ", ".join("?" * len(digests))
        await self.db.execute(f'DELETE FROM "{self.table}" WHERE "key" IN ({marks})', digests)

    async def prune(self, now: float | None = None) -> int:
        """Delete rows whose window has ended, so the table stays small; returns the count."""
        now = time.time() if now is None else now
        return await self.db.execute(f'DELETE FROM "{self.table}" WHERE "expires" <= ?', (now,))
