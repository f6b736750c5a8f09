"""The queue of writers to one SQLite file (tools/sqlite_writers.py): writers of several
connections and processes take turns through the kernel; a wait leaves the event loop free,
ends with a clear error past the busy timeout, and never leaves the lock taken behind it.

Two `SQLiteDatabase` objects on one file stand for two processes here (`flock` locks
belong to an open file, so they queue as processes do); one test runs real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shipyard.tools.db_base import DatabaseError
from shipyard.tools.db_sqlite import SQLiteDatabase


async def _table(path: Path) -> SQLiteDatabase:
    db = SQLiteDatabase(path, busy_timeout_ms=5000)
    await db.execute('CREATE TABLE IF NOT EXISTS "t" ("x" INTEGER)')
    return db


def test_a_writer_waits_for_the_other_connections_turn_with_the_loop_free(
    tmp_path: Path,
) -> None:
    async def main() -> list[str]:
        a = await _table(tmp_path / "d.db")
        b = SQLiteDatabase(tmp_path / "d.db")
        events: list[str] = []
        holding = asyncio.Event()
        finish = asyncio.Event()

        async def first() -> None:
            async with a.transaction() as tx:
                await tx.execute('INSERT INTO "t" VALUES (1)')
                holding.set()
                await finish.wait()  # the write lock is held across awaits
            events.append("a committed")

        async def second() -> None:
            async with b.transaction() as tx:
                events.append("b began")
                await tx.execute('INSERT INTO "t" VALUES (2)')

        ta = asyncio.create_task(first())
        await holding.wait()
        tb = asyncio.create_task(second())
        for _ in range(5):
            await asyncio.sleep(0.01)  # the loop's timers run while b waits
            events.append("tick")
        row = await b.fetchone('SELECT count(*) FROM "t"')  # and b's reads are answered
        events.append(f"read {row[0] if row else None}")
        finish.set()
        await asyncio.wait_for(asyncio.gather(ta, tb), 5)
        assert await a.fetchone('SELECT count(*) FROM "t"') == (2,)
        await a.close()
        await b.close()
        return events

    events = asyncio.run(main())
    assert events == ["tick"] * 5 + ["read 0", "a committed", "b began"]


def test_past_the_busy_timeout_in_the_queue_the_write_fails_and_the_lock_is_not_kept(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a = await _table(tmp_path / "d.db")
        b = SQLiteDatabase(tmp_path / "d.db", busy_timeout_ms=100)
        c = SQLiteDatabase(tmp_path / "d.db", busy_timeout_ms=2000)
        finish = asyncio.Event()
        holding = asyncio.Event()

        async def hold() -> None:
            async with a.transaction() as tx:
                await tx.execute('INSERT INTO "t" VALUES (1)')
                holding.set()
                await finish.wait()

        ta = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(DatabaseError, match="locked"):
            await asyncio.wait_for(b.execute('INSERT INTO "t" VALUES (2)'), 5)
        waiter = asyncio.create_task(b.execute('INSERT INTO "t" VALUES (3)'))
        await asyncio.sleep(0.02)
        waiter.cancel()  # a writer that gives up while queued
        with pytest.raises(asyncio.CancelledError):
            await waiter
        finish.set()
        await ta
        await asyncio.sleep(0.05)  # the abandoned waits on b's thread get their lock, drop it
        # neither the timed-out nor the cancelled wait kept the lock: c and b write at once
        await asyncio.wait_for(c.execute('INSERT INTO "t" VALUES (4)'), 5)
        await asyncio.wait_for(b.execute('INSERT INTO "t" VALUES (5)'), 5)
        rows = await a.fetchall('SELECT "x" FROM "t" ORDER BY "x"')
        assert [r[0] for r in rows] == [1, 4, 5]
        for db in (a, b, c):
            await db.close()

    asyncio.run(main())


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from shipyard.tools.db_sqlite import SQLiteDatabase

    async def main(path: str, n: int) -> None:
        db = SQLiteDatabase(path, busy_timeout_ms=20000)

        async def bump() -> None:
            async with db.transaction() as tx:  # read, then write: a lost update shows
                row = await tx.fetchone('SELECT "x" FROM "t"')
                await asyncio.sleep(0)
                await tx.execute('UPDATE "t" SET "x" = ?', (row[0] + 1,))

        for _ in range(n // 8):
            await asyncio.gather(*(bump() for _ in range(8)))
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_processes_writing_at_once_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "d.db"

    async def setup() -> None:
        db = await _table(path)
        await db.execute('INSERT INTO "t" VALUES (0)')
        await db.close()

    asyncio.run(setup())
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "400"]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]

    async def count() -> object:
        db = SQLiteDatabase(path)
        row = await db.fetchone('SELECT "x" FROM "t"')
        await db.close()
        return row

    assert asyncio.run(count()) == (1200,)
