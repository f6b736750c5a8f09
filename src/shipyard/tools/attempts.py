"""Failed-attempt counters in the database, for brute-force protection of auth endpoints.

Counters live in a table, not in process memory, so every API process sharing the database
sees the same counts. Each key gets a fixed window that opens at its first attempt. An
attempt is reserved before the password is checked (`reserve`): checking the limit and
counting are one conditional upsert per key, so concurrent attempts from any number of
processes can never get more than the limit through; a successful login takes its attempt
back (`reset`, `release`).

Keys are opaque strings ("login:ip:1.2.3.4", "login:id:users:a@b.c"); the table stores only
their SHA-256 (or HMAC-SHA256 with a secret), so it holds no e-mail addresses or IPs.
Times are wall-clock epoch seconds (`time.time()`), comparable across machines.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence

from shipyard.tools.db import Database

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PG_LOCK_ID = 7413  # advisory lock: one process creates the table at a time


class _Refused(Exception):
    """Rolls back a reservation that a key at its limit refused."""


class AttemptLimiter:
    """Counts attempts per key in `table`; `reserve` refuses one over the limit."""

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

    async def reserve(
        self, limits: Sequence[tuple[str, int]], window_s: float, now: float | None = None
    ) -> float | None:
        """Count one attempt against every key if each is under its limit: all or none.

        Called BEFORE the password is verified, so that no more than `limit` guesses per key
        are ever verified in a window, however many requests race from however many
        processes. Each key is one conditional upsert (`... DO UPDATE ... WHERE count <
        limit RETURNING`): the row lock makes concurrent callers take turns, and a caller
        that finds the key at its limit gets no row back. All keys share one transaction,
        so a refusal on one key undoes the count on the others.

        Returns None when the attempt was counted, else the seconds until the window of the
        blocking key ends (for Retry-After; the longest, if several block). A caller whose
        attempt turns out not to count (the password was right, or it never ran) takes it
        back with `release` or `reset`.
        """
        wanted: dict[str, int] = {}
        for key, limit in limits:
            d = self.digest(key)
            wanted[d] = min(limit, wanted.get(d, limit))
        if not wanted:
            return None
        now = time.time() if now is None else now
        t = self.table
        stale = f'"{t}"."expires" <= excluded."window_start"'
        upsert = (
            f'INSERT INTO "{t}" ("key", "failures", "window_start", "expires") '
            "VALUES (?, 1, ?, ?) "
            'ON CONFLICT ("key") DO UPDATE SET '
            f'"failures" = CASE WHEN {stale} THEN 1 ELSE "{t}"."failures" + 1 END, '
            f'"window_start" = CASE WHEN {stale} THEN excluded."window_start" '
            f'ELSE "{t}"."window_start" END, '
            f'"expires" = CASE WHEN {stale} THEN excluded."expires" ELSE "{t}"."expires" END '
            f'WHERE {stale} OR "{t}"."failures" < ? '
            'RETURNING "failures"'
        )
        blocked: list[float] = []
        try:
            async with self.db.transaction() as tx:
                # sorted: concurrent reservations lock rows in one order (no deadlock)
                for d in sorted(wanted):
                    if await tx.fetchone(upsert, (d, now, now + float(window_s), wanted[d])):
                        continue
                    row = await tx.fetchone(f'SELECT "expires" FROM "{t}" WHERE "key" = ?', (d,))
                    blocked.append(float(row[0]) if row else now)
                if blocked:
                    raise _Refused
        except _Refused:
            pass
        if not blocked:
            return None
        # Clamp: a window opened by a machine whose clock runs ahead must not block longer
        # than one window.
        return min(max(blocked) - now, float(window_s))

    async def release(self, keys: list[str], now: float | None = None) -> None:
        """Take back one reserved attempt of each key (one that did not count as a failure)."""
        digests = self._digests(keys)
        if not digests:
            return
        now = time.time() if now is None else now
        marks = ", ".join("?" * len(digests))
        await self.db.execute(
            f'UPDATE "{self.table}" SET "failures" = "failures" - 1 '
            f'WHERE "key" IN ({marks}) AND "failures" > 0 AND "expires" > ?',
            (*digests, now),
        )

    async def count(self, key: str, now: float | None = None) -> int:
        """Attempts counted against `key` in its current window."""
        now = time.time() if now is None else now
        row = await self.db.fetchone(
            f'SELECT "failures" FROM "{self.table}" WHERE "key" = ? AND "expires" > ?',
            (self.digest(key), now),
        )
        return int(row[0]) if row else 0

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
