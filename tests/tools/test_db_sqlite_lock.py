"""Waiting for SQLite's write lock while another process holds it (tools/db_sqlite.py): the
wait happens between tries, off the event loop, so this process's other requests (reads, the
loop's own timers) go on; past the busy timeout the write fails with a clear error.

"Another process" is another SQLite connection to the same file: SQLite's locks are the
same between connections of one process as between processes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from shipyard.tools.db_base import DatabaseError
from shipyard.tools.db_sqlite import SQLiteDatabase


def test_a_write_waiting_for_the_lock_leaves_the_loop_and_reads_free(tmp_path: Path) -> None:
    async def main() -> list[str]:
        db = SQLiteDatabase(tmp_path / "d.db", busy_timeout_ms=5000)
        await db.execute('CREATE TABLE "t" ("x" INTEGER)')
        other = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the other process is writing
        events: list[str] = []

        async def write() -> None:
            await db.execute('INSERT INTO "t" VALUES (1)')
            events.append("written")

        async def in_tx() -> None:
            async with db.transaction() as tx:
                await tx.execute('INSERT INTO "t" VALUES (2)')
            events.append("tx written")

        tasks = [asyncio.create_task(write()), asyncio.create_task(in_tx())]
        for _ in range(5):
            await asyncio.sleep(0.01)  # the loop's timers run while the writes wait
            events.append("tick")
        row = await db.fetchone('SELECT count(*) FROM "t"')  # and reads are answered
        events.append(f"read {row[0] if row else None}")
        assert not any("written" in e for e in events), events
        other.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        row = await db.fetchone('SELECT count(*) FROM "t"')
        events.append(f"read {row[0] if row else None}")
        other.close()
        await db.close()
        return events

    events = asyncio.run(main())
    assert events[:6] == ["tick"] * 5 + ["read 0"]
    assert set(events[6:8]) == {"written", "tx written"}
    assert events[-1] == "read 2"


def test_past_the_busy_timeout_the_write_fails_clearly(tmp_path: Path) -> None:
    async def main() -> None:
        db = SQLiteDatabase(tmp_path / "d.db", busy_timeout_ms=100)
        await db.execute('CREATE TABLE "t" ("x" INTEGER)')
        other = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseError, match="locked"):
                await asyncio.wait_for(db.execute('INSERT INTO "t" VALUES (1)'), 5)
            other.execute("COMMIT")
            await db.execute('INSERT INTO "t" VALUES (1)')  # the connection is still usable
            assert await db.fetchone('SELECT count(*) FROM "t"') == (1,)
        finally:
            other.close()
            await db.close()

    asyncio.run(main())


def test_a_statement_outside_transactions_waits_for_a_lock_as_before(tmp_path: Path) -> None:
    """The connection has no busy handler between statements (a write's BEGIN must not
    wait inside the call); a statement that meets another process's lock (here VACUUM, which
    needs the write lock) is tried again with the handler, waiting up to the busy timeout."""

    async def main() -> bool:
        db = SQLiteDatabase(tmp_path / "d.db", busy_timeout_ms=5000)
        await db.execute('CREATE TABLE "t" ("x" INTEGER)')
        other = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        releasing = threading.Event()  # set just before the lock goes: VACUUM cannot run sooner

        def commit() -> None:
            releasing.set()
            other.execute("COMMIT")

        timer = threading.Timer(0.3, commit)
        timer.start()
        try:
            await db.execute("VACUUM")
            # it ran only once the other connection let go (without the retry it fails)
            waited = releasing.is_set()
            # the handler is off again: a write's BEGIN still does not wait inside the call
            assert await db.fetchone("PRAGMA busy_timeout") == (0,)
            return waited
        finally:
            timer.join()
            other.close()
            await db.close()

    assert asyncio.run(main())  # it waited for the other connection, then ran
