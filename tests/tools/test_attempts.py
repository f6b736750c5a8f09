"""Failed-attempt counters on real SQLite and real PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from shipyard.tools.attempts import AttemptLimiter
from shipyard.tools.db import Database, connect
from tests.helpers.servers import fresh_pg_database

Target = tuple[str, Path]  # (database URL, SQLite path); an empty URL means SQLite
Body = Callable[[AttemptLimiter], Awaitable[None]]

IP = "login:ip:203.0.113.7"
ID = "login:id:users:alice@example.com"
WINDOW = 60.0
T0 = 1_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    sqlite_path = tmp_path / "data.db"
    if request.param == "sqlite":
        return "", sqlite_path
    return fresh_pg_database(request.getfixturevalue("pg_admin_url")), sqlite_path


async def _open(target: Target, max_size: int = 10) -> Database:
    url, path = target
    return await connect(url, path, min_size=1, max_size=max_size)


def run(target: Target, body: Body) -> None:
    """Run `body` with a limiter on a freshly opened database, in its own event loop."""

    async def main() -> None:
        db = await _open(target)
        try:
            limiter = AttemptLimiter(db)
            await limiter.ensure_schema()
            await body(limiter)
        finally:
            await db.close()

    asyncio.run(main())


async def failures(limiter: AttemptLimiter, key: str) -> int:
    row = await limiter.db.fetchone(
        'SELECT "failures" FROM "_attempts" WHERE "key" = ?', (limiter.digest(key),)
    )
    return int(row[0]) if row else 0


def test_reserve_counts_until_the_limit(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for i in range(3):
            assert await lim.reserve([(ID, 3)], WINDOW, now=T0 + i * 10) is None
        assert await failures(lim, ID) == 3
        wait = await lim.reserve([(ID, 3)], WINDOW, now=T0 + 30)
        assert wait == pytest.approx(30.0)  # the window opened at T0 ends at T0 + 60
        assert await failures(lim, ID) == 3  # a refused attempt is not counted
        # a higher limit (the per-IP one) is not reached by the same count
        assert await lim.reserve([(ID, 4)], WINDOW, now=T0 + 30) is None
        assert await lim.count(ID, now=T0 + 30) == 4
        assert await lim.reserve([], WINDOW) is None

    run(target, body)


def test_reserve_is_all_or_none(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for _ in range(2):
            assert await lim.reserve([(ID, 2)], WINDOW, now=T0) is None
        # the identity is at its limit: the address is not charged for the refused attempt
        assert await lim.reserve([(IP, 10), (ID, 2)], WINDOW, now=T0 + 1) is not None
        assert await failures(lim, IP) == 0
        assert await lim.reserve([(IP, 10)], WINDOW, now=T0 + 1) is None
        assert await failures(lim, IP) == 1
        # the same key twice counts once, under the lower limit
        assert await lim.reserve([(IP, 10), (IP, 1)], WINDOW, now=T0 + 2) is not None
        assert await failures(lim, IP) == 1

    run(target, body)


def test_window_expiry_starts_over(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            assert await lim.reserve([(ID, 3)], WINDOW, now=T0) is None
        assert await lim.reserve([(ID, 3)], WINDOW, now=T0 + WINDOW - 0.5) is not None
        # the first attempt after the window opens a new one at 1, not 4
        assert await lim.reserve([(ID, 3)], WINDOW, now=T0 + WINDOW + 1) is None
        assert await failures(lim, ID) == 1
        for i in (2, 3):
            assert await lim.reserve([(ID, 3)], WINDOW, now=T0 + WINDOW + i) is None
        wait = await lim.reserve([(ID, 3)], WINDOW, now=T0 + WINDOW + 4)
        assert wait == pytest.approx(WINDOW - 3)  # new window ends at T0 + 2*WINDOW + 1

    run(target, body)


def test_release_and_reset(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            assert await lim.reserve([(IP, 5), (ID, 3)], WINDOW, now=T0) is None
        await lim.release([IP], now=T0 + 1)
        assert await failures(lim, IP) == 2
        assert await failures(lim, ID) == 3
        await lim.reset([ID])
        assert await failures(lim, ID) == 0
        assert await lim.reserve([(ID, 3)], WINDOW, now=T0 + 1) is None
        await lim.reset([])  # no-op
        await lim.release([])
        # a count never goes below zero, and an expired window is left alone
        for _ in range(3):
            await lim.release([IP], now=T0 + 2)
        assert await failures(lim, IP) == 0
        assert await lim.reserve([(IP, 5)], WINDOW, now=T0 + 3) is None
        await lim.release([IP], now=T0 + WINDOW + 1)
        assert await failures(lim, IP) == 1
        assert await lim.count(IP, now=T0 + WINDOW + 1) == 0

    run(target, body)


def test_keys_are_independent(target: Target) -> None:
    other = "login:id:users:bob@example.com"

    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            assert await lim.reserve([(ID, 3)], WINDOW, now=T0) is None
        assert await lim.reserve([(other, 3)], WINDOW, now=T0) is None
        assert await failures(lim, other) == 1
        assert await failures(lim, IP) == 0
        # any blocked key blocks the request; the longest wait wins
        for _ in range(2):
            assert await lim.reserve([(other, 3)], WINDOW, now=T0 + 20) is None
        wait = await lim.reserve([(other, 3), (ID, 3)], WINDOW, now=T0 + 30)
        assert wait == pytest.approx(30.0)

    run(target, body)


def test_retry_after_never_exceeds_window(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        # a process with a clock running 100 s ahead opened the window
        assert await lim.reserve([(ID, 1)], WINDOW, now=T0 + 100) is None
        assert await lim.reserve([(ID, 1)], WINDOW, now=T0) == WINDOW

    run(target, body)


def test_prune_deletes_expired_rows(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        await lim.reserve([(ID, 5)], WINDOW, now=T0)
        await lim.reserve([(IP, 5)], WINDOW, now=T0 + 30)
        assert await lim.prune(T0 + WINDOW) == 1
        assert await failures(lim, ID) == 0
        assert await failures(lim, IP) == 1
        assert await lim.prune(T0 + 2 * WINDOW) == 1
        assert await lim.db.fetchall('SELECT * FROM "_attempts"') == []

    run(target, body)


def test_table_holds_no_raw_keys(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        await lim.ensure_schema()  # idempotent
        await lim.reserve([(IP, 5), (ID, 5)], WINDOW, now=T0)
        rows = await lim.db.fetchall('SELECT * FROM "_attempts"')
        dump = repr(rows)
        for raw in ("alice", "example.com", "203.0.113.7", "login:"):
            assert raw not in dump
        stored = {r[0] for r in rows}
        assert stored == {hashlib.sha256(k.encode()).hexdigest() for k in (IP, ID)}
        # with a secret the digest is keyed, so it cannot be recomputed from a guess
        keyed = AttemptLimiter(lim.db, secret=b"s3cret")
        assert keyed.digest(ID) != lim.digest(ID)
        assert len(keyed.digest(ID)) == 64

    run(target, body)


def test_bad_table_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid table name"):
        AttemptLimiter(cast(Database, None), table='x"; DROP TABLE y; --')


def test_concurrent_reservations_from_two_pools_stop_at_the_limit(target: Target) -> None:
    """Two connections stand in for two API processes: of 60 racing reservations exactly the
    limit get through, on every key, and none deadlocks (keys listed in either order)."""

    async def main() -> None:
        a, b = await _open(target), await _open(target)
        try:
            la, lb = AttemptLimiter(a), AttemptLimiter(b)
            await asyncio.gather(la.ensure_schema(), lb.ensure_schema())
            limits = [(IP, 9), (ID, 7)]
            calls = [
                (la if i % 2 else lb).reserve(limits if i % 3 else limits[::-1], WINDOW)
                for i in range(60)
            ]
            outcomes = await asyncio.gather(*calls)
            assert sum(1 for w in outcomes if w is None) == 7
            assert all(w is None or 0 < w <= WINDOW for w in outcomes)
            assert await failures(la, ID) == 7
            assert await failures(lb, IP) == 7  # refused attempts charged nothing
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
