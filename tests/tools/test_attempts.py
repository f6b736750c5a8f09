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


@pytest.fixture
def pg_target(pg_admin_url: str, tmp_path: Path) -> Target:
    return fresh_pg_database(pg_admin_url), tmp_path / "unused.db"


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


def test_under_limit_is_allowed(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        assert await lim.check([IP, ID], 3, WINDOW, now=T0) is None  # nothing recorded yet
        await lim.record_failure([IP, ID], WINDOW, now=T0)
        await lim.record_failure([IP, ID], WINDOW, now=T0 + 1)
        assert await lim.check([IP, ID], 3, WINDOW, now=T0 + 2) is None
        assert await lim.check([], 3, WINDOW, now=T0 + 2) is None

    run(target, body)


def test_reaching_limit_gives_retry_after(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for i in range(3):
            await lim.record_failure([ID], WINDOW, now=T0 + i * 10)
        wait = await lim.check([ID], 3, WINDOW, now=T0 + 30)
        assert wait == pytest.approx(30.0)  # the window opened at T0 ends at T0 + 60
        assert wait is not None and 0 < wait <= WINDOW
        # a higher limit (the per-IP one) is not reached by the same count
        assert await lim.check([ID], 4, WINDOW, now=T0 + 30) is None

    run(target, body)


def test_window_expiry_starts_over(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            await lim.record_failure([ID], WINDOW, now=T0)
        assert await lim.check([ID], 3, WINDOW, now=T0 + WINDOW - 0.5) is not None
        assert await lim.check([ID], 3, WINDOW, now=T0 + WINDOW) is None
        # the next failure opens a new window at 1, not 4
        await lim.record_failure([ID], WINDOW, now=T0 + WINDOW + 1)
        assert await failures(lim, ID) == 1
        assert await lim.check([ID], 3, WINDOW, now=T0 + WINDOW + 2) is None
        await lim.record_failure([ID], WINDOW, now=T0 + WINDOW + 2)
        await lim.record_failure([ID], WINDOW, now=T0 + WINDOW + 3)
        wait = await lim.check([ID], 3, WINDOW, now=T0 + WINDOW + 4)
        assert wait == pytest.approx(WINDOW - 3)  # new window ends at T0 + 2*WINDOW + 1

    run(target, body)


def test_reset_clears_only_given_keys(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            await lim.record_failure([IP, ID], WINDOW, now=T0)
        await lim.reset([ID])
        assert await lim.check([ID], 3, WINDOW, now=T0 + 1) is None
        assert await lim.check([IP], 3, WINDOW, now=T0 + 1) is not None
        assert await failures(lim, ID) == 0
        await lim.reset([])  # no-op

    run(target, body)


def test_keys_are_independent(target: Target) -> None:
    other = "login:id:users:bob@example.com"

    async def body(lim: AttemptLimiter) -> None:
        for _ in range(3):
            await lim.record_failure([ID], WINDOW, now=T0)
        await lim.record_failure([other], WINDOW, now=T0)
        assert await lim.check([other], 3, WINDOW, now=T0 + 1) is None
        assert await lim.check([IP], 3, WINDOW, now=T0 + 1) is None
        # any blocked key blocks the request; the longest wait wins
        for _ in range(2):
            await lim.record_failure([other], WINDOW, now=T0 + 20)
        assert await lim.check([other, ID], 3, WINDOW, now=T0 + 30) == pytest.approx(30.0)
        # duplicate keys in one call count once
        await lim.record_failure([IP, IP], WINDOW, now=T0)
        assert await failures(lim, IP) == 1

    run(target, body)


def test_retry_after_never_exceeds_window(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        # a process with a clock running 100 s ahead opened the window
        await lim.record_failure([ID], WINDOW, now=T0 + 100)
        assert await lim.check([ID], 1, WINDOW, now=T0) == WINDOW

    run(target, body)


def test_prune_deletes_expired_rows(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        await lim.record_failure([ID], WINDOW, now=T0)
        await lim.record_failure([IP], WINDOW, now=T0 + 30)
        assert await lim.prune(T0 + WINDOW) == 1
        assert await failures(lim, ID) == 0
        assert await failures(lim, IP) == 1
        assert await lim.prune(T0 + 2 * WINDOW) == 1
        assert await lim.db.fetchall('SELECT * FROM "_attempts"') == []

    run(target, body)


def test_table_holds_no_raw_keys(target: Target) -> None:
    async def body(lim: AttemptLimiter) -> None:
        await lim.ensure_schema()  # idempotent
        await lim.record_failure([IP, ID], WINDOW, now=T0)
        rows = await lim.db.fetchall('SELECT * FROM "_attempts"')
        dump = repr(rows)
        for raw in ("alice", "example.com", "203.0.113.7", "login:"):
            assert raw not in dump
        stored = {r[0] for r in rows}
        assert stored == {hashlib.sha256(k.encode()).hexdigest() for k in (IP, ID)}
        # with a secret the digest is keyed, so it cannot be recomputed from a guess
        keyed = AttemptLimiter(lim.db, secret=b"s3cret")
        assert keyed.digest(ID) != lim.digest(ID) and len(keyed.digest(ID)) == 64

    run(target, body)


def test_bad_table_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        AttemptLimiter(cast(Database, None), table='x"; DROP TABLE y; --')


def test_concurrent_failures_from_two_processes_all_count(pg_target: Target) -> None:
    """Two pools stand in for two API processes; no increment may be lost or deadlock."""

    async def main() -> None:
        a, b = await _open(pg_target), await _open(pg_target)
        try:
            la, lb = AttemptLimiter(a), AttemptLimiter(b)
            await asyncio.gather(la.ensure_schema(), lb.ensure_schema())
            # half list the keys in the other order: rows must still be locked consistently
            calls = [
                (la if i % 2 else lb).record_failure([IP, ID] if i % 3 else [ID, IP], WINDOW)
                for i in range(50)
            ]
            await asyncio.gather(*calls)
            assert await failures(la, ID) == 50
            assert await failures(lb, IP) == 50
            assert await la.check([ID], 50, WINDOW) is not None
            assert await lb.check([ID], 51, WINDOW) is None
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
