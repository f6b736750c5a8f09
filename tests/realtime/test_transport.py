"""The transports between processes, on real engines: each process's reader hears every
committed write of another connection, in commit order, and nothing of a rollback
(SQLite's outbox on two connections to one file; Redis pub/sub on a real server); and
the dbwatch after-commit hooks they rely on."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from shipyard.realtime.clients import Client, Hub
from shipyard.realtime.topics import Topic, bases_for
from shipyard.realtime.transport import RedisPubSub, SQLiteOutbox
from shipyard.tools.db import SQLiteDatabase
from shipyard.tools.dbwatch import WatchedDatabase
from shipyard.tools.redisclient import ResilientRedis
from tests.helpers.wait import wait_until_async


class Boom(Exception):
    pass


async def _rolled_back(db: WatchedDatabase, transport: SQLiteOutbox | RedisPubSub) -> None:
    async with db.transaction() as tx:
        await transport.publish_in(tx, b"rolled back")
        raise Boom


async def _hook_then_fail(db: WatchedDatabase, seen: list[str]) -> None:
    async with db.transaction() as tx:
        tx.after_commit(lambda: seen.append("rolled back"))  # type: ignore[attr-defined]
        raise Boom


async def _writes(db: WatchedDatabase, transport: SQLiteOutbox | RedisPubSub) -> None:
    """Three commits and one rollback between them."""
    for i in range(3):
        async with db.transaction() as tx:
            await transport.publish_in(tx, f"m{i}".encode())
        if i == 1:
            with pytest.raises(Boom):
                await _rolled_back(db, transport)


def test_after_commit_hooks_run_in_commit_order_and_never_on_rollback(tmp_path: Path) -> None:
    async def main() -> list[str]:
        db = WatchedDatabase(SQLiteDatabase(tmp_path / "d.db"))
        await db.execute('CREATE TABLE "t" ("x" TEXT)')
        seen: list[str] = []
        async with db.transaction() as tx:
            tx.after_commit(lambda: seen.append("first"))  # type: ignore[attr-defined]
            await tx.execute('INSERT INTO "t" VALUES (?)', ("a",))
            assert seen == []  # not before the commit
        with pytest.raises(Boom):
            await _hook_then_fail(db, seen)
        async with db.transaction() as tx:
            tx.after_commit(lambda: seen.append("second"))  # type: ignore[attr-defined]
        await db.close()
        return seen

    assert asyncio.run(main()) == ["first", "second"]


def test_sqlite_outbox_between_two_connections(tmp_path: Path) -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        path = tmp_path / "data.db"
        writer_db = SQLiteDatabase(path)
        reader_db = SQLiteDatabase(path)
        writer = SQLiteOutbox(writer_db, 0.01, 60)
        reader = SQLiteOutbox(reader_db, 0.01, 60)
        await writer.migrate()
        got_w, got_r = await _exchange(writer_db, writer, reader)
        await writer_db.close()
        await reader_db.close()
        return got_w, got_r

    got_w, got_r = asyncio.run(main())
    assert got_r == got_w == [b"m0", b"m1", b"m2"]


def test_redis_pubsub_between_two_processes(tmp_path: Path, redis_url: str) -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        ns = "rt" + uuid.uuid4().hex[:8]
        db = SQLiteDatabase(tmp_path / "data.db")
        redis_a = ResilientRedis(redis_url, 2.0, 1.0)
        redis_b = ResilientRedis(redis_url, 2.0, 1.0)
        a, b = RedisPubSub(db, redis_a, ns), RedisPubSub(db, redis_b, ns)
        got_a, got_b = await _exchange(db, a, b)
        for r in (redis_a, redis_b):
            await r.close()
        await db.close()
        return got_a, got_b

    got_a, got_b = asyncio.run(main())
    assert got_a == got_b == [b"m0", b"m1", b"m2"]


async def _exchange(
    db: SQLiteDatabase, sender: SQLiteOutbox | RedisPubSub, other: SQLiteOutbox | RedisPubSub
) -> tuple[list[bytes], list[bytes]]:
    """Three committed writes published through `sender`: what `sender` and `other` (as if
    in another process) each delivered, once both have all three."""
    got: tuple[list[bytes], list[bytes]] = ([], [])
    for transport, into in ((sender, got[0]), (other, got[1])):

        async def deliver(p: bytes, into: list[bytes] = into) -> None:
            into.append(p)

        await transport.start(deliver)
    await _writes(WatchedDatabase(db), sender)
    await wait_until_async(lambda: _len(got[1], 3), what="the other process's events")
    await wait_until_async(lambda: _len(got[0], 3), what="the writer's own events")
    for t in (sender, other):
        await t.stop()
    return got


async def _len(items: list[bytes], n: int) -> bool:
    return len(items) >= n


def test_topics_as_pocketbase_reads_them() -> None:
    t = Topic.parse(
        'posts/*?options={"query":{"expand":"owner","page":2,"f":true},"headers":{"X-Token":"a"}}'
    )
    assert (t.base, dict(t.query), dict(t.headers)) == (
        "posts/*",
        {"expand": "owner", "page": "2", "f": "true"},
        {"x_token": "a"},
    )
    assert Topic.parse("posts/*?options=not-json").query == {}
    assert Topic.parse("posts").base == "posts"
    # URL-encoded options, as the JS SDK sends them
    assert Topic.parse("posts/abc?options=%7B%22query%22%3A%7B%22a%22%3A%22b%22%7D%7D").query == {
        "a": "b"
    }
    kinds = dict(bases_for("pbc_1", "posts", "abc"))
    assert kinds == {
        "posts/abc": "view",
        "pbc_1/abc": "view",
        "posts/*": "list",
        "pbc_1/*": "list",
        "posts": "list",
        "pbc_1": "list",
    }


def test_disabled(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from shipyard.app import create_app
    from shipyard.settings import load_settings

    s = load_settings(env={}, data_dir=str(tmp_path / "d"), realtime_enabled=False)
    with TestClient(create_app(s)) as c:
        assert c.post("/api/realtime", json={"clientId": "x"}).status_code == 404


def test_a_stop_signal_ends_the_streams_before_the_servers_handler() -> None:
    """granian drains open connections on SIGTERM before it stops the app: the streams
    must be closed first, then its own handler runs (realtime/shutdown.py)."""
    import os
    import signal

    from shipyard.realtime.shutdown import before_stop

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        done = asyncio.Event()

        def server_handler() -> None:  # what granian installs on the worker's loop
            seen.append("server")
            done.set()

        loop.add_signal_handler(signal.SIGTERM, server_handler)
        try:
            assert before_stop(loop, lambda: seen.append("streams closed"))
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(done.wait(), 5)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        return seen

    assert asyncio.run(main()) == ["streams closed", "server"]
    # without a server handler on the loop nothing is wrapped
    assert asyncio.run(_wraps_nothing()) is False


async def _wraps_nothing() -> bool:
    from shipyard.realtime.shutdown import before_stop

    return before_stop(asyncio.get_running_loop(), lambda: None)


def test_the_transport_follows_the_settings(tmp_path: Path, redis_url: str) -> None:
    from shipyard.realtime.service import choose_transport
    from shipyard.settings import load_settings

    async def main() -> list[str]:
        db = SQLiteDatabase(tmp_path / "data.db")
        redis = ResilientRedis(redis_url, 1.0, 1.0)
        s = load_settings(env={}, data_dir=str(tmp_path))
        pg = load_settings(env={}, data_dir=str(tmp_path), database_url="postgresql://x/y")
        names = [
            choose_transport(s, db, None).name,
            choose_transport(pg, db, None).name,
            choose_transport(s, db, redis).name,  # Redis wins over either database
            choose_transport(pg, db, redis).name,
        ]
        await redis.close()
        await db.close()
        return names

    assert asyncio.run(main()) == ["sqlite", "postgres", "redis", "redis"]


def test_a_client_past_its_buffer_is_cut_off() -> None:
    hub = Hub(10)
    slow, fast = Client(buffer=3), Client(buffer=3)
    for c in (slow, fast):
        hub.register(c)
        hub.set_topics(c, [Topic.parse("posts/*")])
    for i in range(3):
        assert slow.offer(b"e%d" % i)
    assert not slow.offer(b"e3")  # the fourth frame: it stopped reading
    assert (slow.closed, slow.reason, list(slow.queue)) == (True, "stalled", [])
    assert fast.offer(b"e0")  # the others are untouched
    assert [c for c, _ in hub.subscribed("posts/*")] == [fast]
    hub.unregister(slow)
    assert hub.stalled == 1


def test_the_watchdog_cuts_a_blocked_write_and_ends_idle_streams() -> None:
    async def main() -> tuple[Client, Client, Client, bool]:
        hub = Hub(10)
        blocked, idle, busy = Client(8), Client(8), Client(8)
        for c in (blocked, idle, busy):
            hub.register(c)
        blocked.task = asyncio.create_task(asyncio.sleep(60))  # a write that never returns
        blocked.sending_since = 100.0
        idle.last_write = 100.0
        busy.last_write = 104.5
        hub.watch(now=105.0, idle_timeout=4.0, send_timeout=2.0)
        await asyncio.sleep(0)
        return blocked, idle, busy, blocked.task.cancelled()

    blocked, idle, busy, cancelled = asyncio.run(main())
    assert (blocked.reason, cancelled) == ("stalled", True)
    assert idle.reason == "idle"
    assert not busy.closed


def test_after_commit_hooks_in_a_shared_transaction(tmp_path: Path) -> None:
    """POST /api/batch's shared transaction: the hooks of its nested writes run once, at its
    commit, and not for a savepoint that rolled back, nor when the whole one rolls back."""

    async def main() -> list[str]:
        db = WatchedDatabase(SQLiteDatabase(tmp_path / "d.db"))
        seen: list[str] = []
        async with db.transaction(share=True) as outer:
            outer.after_commit(lambda: seen.append("outer"))  # type: ignore[attr-defined]
            async with db.transaction() as tx:
                tx.after_commit(lambda: seen.append("kept"))  # type: ignore[attr-defined]
            with pytest.raises(Boom):
                await _hook_then_fail(db, seen)  # a savepoint rolled back
            assert seen == []  # nothing before the commit
        with pytest.raises(Boom):
            await _shared_then_fail(db, seen)
        await db.close()
        return seen

    assert asyncio.run(main()) == ["outer", "kept"]


async def _shared_then_fail(db: WatchedDatabase, seen: list[str]) -> None:
    async with db.transaction(share=True) as tx:
        tx.after_commit(lambda: seen.append("whole rolled back"))  # type: ignore[attr-defined]
        raise Boom
