"""How an event committed by any process reaches every process: one transport per
deployment, chosen from the settings.

- Redis (`SHIPYARD_REDIS_URL` set): PUBLISH right after the commit (the transaction's
  after-commit hook), on one channel every process SUBSCRIBEs to; Redis keeps the order
  in which the publishes arrived. Events published while Redis is down are lost (logged).
- PostgreSQL: `pg_notify` inside the write's transaction, so PostgreSQL delivers it only
  if and when the transaction commits, and in commit order. A payload over NOTIFY's limit
  (8000 bytes) goes into the `_realtime_events` table in the same transaction and the
  notification carries its id; receivers read it back.
- SQLite: an outbox table, `_realtime_events`, written in the write's transaction: rows
  appear exactly when the write commits, and SQLite's single writer makes the ids the
  commit order. Each process reads the rows past the last id it saw when its own commit
  hook fires, and when `PRAGMA data_version` says another process committed (checked
  every `realtime_poll_interval`). Rows older than `realtime_retention` are deleted.

Every process, the writer included, delivers from the transport, never straight from
the write: one path, one order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from shipyard.tools.db import Database, Executor
from shipyard.tools.redisclient import ResilientRedis

log = logging.getLogger("shipyard.realtime")

Deliver = Callable[[bytes], Awaitable[None]]
CHANNEL = "shipyard_realtime"
NOTIFY_LIMIT = 7900  # bytes: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
_BATCH = 500  # outbox rows read at once
_CLEANUP_EVERY = 10.0  # seconds between looks for expired outbox rows


def _outbox_ddl(dialect: str) -> str:
    key = "BIGSERIAL PRIMARY KEY" if dialect == "postgres" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "DOUBLE PRECISION" if dialect == "postgres" else "REAL"
    return (
        f'CREATE TABLE IF NOT EXISTS "_realtime_events" ("id" {key}, '
        f'"payload" TEXT NOT NULL, "created" {real} NOT NULL)'
    )


def _after_commit(tx: Executor, fn: Callable[[], None]) -> None:
    """Run `fn` once `tx` commits (tools/dbwatch.py); at once if it cannot say when."""
    hook = getattr(tx, "after_commit", None)
    if hook is not None:
        hook(fn)
    else:
        fn()


class Transport(Protocol):
    name: str

    async def migrate(self) -> None: ...

    async def start(self, deliver: Deliver) -> None: ...

    async def stop(self) -> None: ...

    async def publish_in(self, tx: Executor, payload: bytes) -> None:
        """Publish with the transaction: seen by the others only once it commits."""
        ...

    async def publish(self, payload: bytes) -> None:
        """Publish now (no write behind it: a subscription handed to its process)."""
        ...


class _Loop:
    """A background task that is restarted after an unexpected error."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def run(self, body: Callable[[], Awaitable[None]], what: str) -> None:
        async def forever() -> None:
            while True:
                try:
                    await body()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("realtime %s failed, restarting: %s", what, exc)
                    await asyncio.sleep(1.0)

        self.task = asyncio.create_task(forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=5.0)
            self.task = None


class SQLiteOutbox:
    name = "sqlite"

    def __init__(self, db: Database, poll_interval: float, retention: float) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.retention = retention
        self.last = 0
        self.wake = asyncio.Event()
        self._loop = _Loop()
        self._data_version: Any = None
        self._cleaned = 0.0

    async def migrate(self) -> None:
        await self.db.execute(_outbox_ddl("sqlite"))

    async def start(self, deliver: Deliver) -> None:
        row = await self.db.fetchone('SELECT MAX("id") FROM "_realtime_events"')
        self.last = int(row[0] or 0) if row else 0
        self._cleaned = time.monotonic()

        async def body() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_interval)
                woken = self.wake.is_set()
                self.wake.clear()
                if woken or await self._moved():
                    await self._drain(deliver)
                if time.monotonic() - self._cleaned > _CLEANUP_EVERY:
                    await self._cleanup()

        self._loop.run(body, "outbox reader")

    async def _moved(self) -> bool:
        row = await self.db.fetchone("PRAGMA data_version")
        if row is None or row[0] == self._data_version:
            return False
        self._data_version = row[0]
        return True

    async def _drain(self, deliver: Deliver) -> None:
        while True:
            rows = await self.db.fetchall(
                'SELECT "id", "payload" FROM "_realtime_events" WHERE "id" > ? '
                'ORDER BY "id" LIMIT ?',
                (self.last, _BATCH),
            )
            for rid, payload in rows:
                self.last = int(rid)
                await deliver(payload.encode() if isinstance(payload, str) else payload)
            if len(rows) < _BATCH:
                return

    async def _cleanup(self) -> None:
        self._cleaned = time.monotonic()
        cutoff = time.time() - self.retention
        old = await self.db.fetchone(
            'SELECT 1 FROM "_realtime_events" WHERE "created" < ? LIMIT 1', (cutoff,)
        )
        if old is not None:  # a delete that finds nothing would still move data_version
            await self.db.execute('DELETE FROM "_realtime_events" WHERE "created" < ?', (cutoff,))

    async def stop(self) -> None:
        await self._loop.stop()

    async def publish_in(self, tx: Executor, payload: bytes) -> None:
        await tx.execute(
            'INSERT INTO "_realtime_events" ("payload", "created") VALUES (?, ?)',
            (payload.decode(), time.time()),
        )
        _after_commit(tx, self.wake.set)

    async def publish(self, payload: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                'INSERT INTO "_realtime_events" ("payload", "created") VALUES (?, ?)',
                (payload.decode(), time.time()),
            )
        self.wake.set()


class PostgresNotify:
    name = "postgres"

    def __init__(self, db: Database, url: str, retention: float) -> None:
        self.db = db
        self.url = url
        self.retention = retention
        self._loop = _Loop()
        self._cleaner = _Loop()

    async def migrate(self) -> None:
        await self.db.execute(_outbox_ddl("postgres"))

    async def start(self, deliver: Deliver) -> None:
        import psycopg

        ready = asyncio.Event()

        async def body() -> None:
            async with await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=10
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                ready.set()
                async for note in conn.notifies():
                    await deliver(await self._payload(note.payload))

        async def clean() -> None:
            while True:
                await asyncio.sleep(_CLEANUP_EVERY)
                await self.db.execute(
                    'DELETE FROM "_realtime_events" WHERE "created" < ?',
                    (time.time() - self.retention,),
                )

        self._loop.run(body, "listener")
        self._cleaner.run(clean, "outbox cleanup")
        with contextlib.suppress(TimeoutError):  # listening before the server answers
            await asyncio.wait_for(ready.wait(), 10.0)

    async def _payload(self, text: str) -> bytes:
        if not text.startswith("@"):
            return text.encode()
        row = await self.db.fetchone(
            'SELECT "payload" FROM "_realtime_events" WHERE "id" = ?', (int(text[1:]),)
        )
        return str(row[0]).encode() if row else b"{}"

    async def stop(self) -> None:
        await self._loop.stop()
        await self._cleaner.stop()

    async def _notify(self, ex: Executor, payload: bytes) -> None:
        if len(payload) <= NOTIFY_LIMIT:
            await ex.fetchone("SELECT pg_notify(?, ?)", (CHANNEL, payload.decode()))
            return
        row = await ex.fetchone(
            'INSERT INTO "_realtime_events" ("payload", "created") VALUES (?, ?) RETURNING "id"',
            (payload.decode(), time.time()),
        )
        await ex.fetchone("SELECT pg_notify(?, ?)", (CHANNEL, f"@{row[0] if row else 0}"))

    async def publish_in(self, tx: Executor, payload: bytes) -> None:
        await self._notify(tx, payload)

    async def publish(self, payload: bytes) -> None:
        async with self.db.transaction() as tx:
            await self._notify(tx, payload)


class RedisPubSub:
    name = "redis"

    def __init__(self, db: Database, redis: ResilientRedis, namespace: str) -> None:
        self.db = db
        self.redis = redis
        self.channel = f"{namespace}:realtime"
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = _Loop()
        self._publisher = _Loop()

    async def migrate(self) -> None:
        pass

    async def start(self, deliver: Deliver) -> None:
        ready = asyncio.Event()

        async def body() -> None:
            pubsub = self.redis.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                ready.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        await deliver(bytes(msg["data"]))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

        async def publisher() -> None:
            lost = 0  # events not published in the current outage: logged once, then counted
            while True:
                payload = await self._out.get()
                done = await self.redis.call(
                    lambda r, p=payload: r.publish(self.channel, p),  # type: ignore[misc]
                    True,
                )
                if done is None:
                    if not lost:
                        log.warning("realtime: events are not published while Redis is down")
                    lost += 1
                elif lost:
                    log.warning("realtime: Redis is back; %d events were not published", lost)
                    lost = 0

        self._loop.run(body, "Redis subscriber")
        self._publisher.run(publisher, "Redis publisher")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 10.0)

    async def stop(self) -> None:
        await self._loop.stop()
        await self._publisher.stop()

    async def publish_in(self, tx: Executor, payload: bytes) -> None:
        # queued in commit order by the hook, published in that order by one task
        _after_commit(tx, lambda: self._out.put_nowait(payload))

    async def publish(self, payload: bytes) -> None:
        await self.redis.call(lambda r: r.publish(self.channel, payload), True)
