"""Realtime as one object: this process's clients, the fan-out, the transport between
processes, and the shared table of open clients.

A client's `POST /api/realtime` may reach another process than its stream (several
workers behind one port, or a load balancer). So every open client has a row in
`_realtime_clients` (id and bound auth; on SQLite in the auxiliary database, whose writes
move no cache): the process that gets the POST answers 404 or 403 from it, as PocketBase
does, and hands the new subscriptions to the stream's process through the transport,
ordered before any write committed after the POST's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from shipyard.kernel.errors import ApiError, forbidden, not_found
from shipyard.realtime.clients import Client, Hub
from shipyard.realtime.fanout import SECRET, Fanout
from shipyard.realtime.presence import Presence
from shipyard.realtime.shutdown import before_stop
from shipyard.realtime.topics import Topic
from shipyard.realtime.transport import (
    PostgresNotify,
    RedisPubSub,
    SQLiteOutbox,
    Transport,
)
from shipyard.records.auth import ANONYMOUS, Auth
from shipyard.records.codecs import decode_row
from shipyard.records.collections import Collection
from shipyard.records.events import RecordChange, keeps_record
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.db import Database, Executor
from shipyard.tools.redisclient import ResilientRedis

log = logging.getLogger("shipyard.realtime")

CLIENTS_DDL = """CREATE TABLE IF NOT EXISTS "_realtime_clients" (
    "id" TEXT PRIMARY KEY NOT NULL, "auth" TEXT NOT NULL, "created" TEXT NOT NULL
)"""
CHANGED_AUTH = "The current and the previous request authorization don't match."
MISSING_CLIENT = "Missing or invalid client id."
_EVENT = b'{"k":"ev",'  # how `on_change`'s payloads begin (orjson keeps the key order)


def auth_key(auth: Auth) -> str:
    return f"{auth.collection.id}/{auth.id}" if auth.collection is not None else ""


def choose_transport(
    settings: Settings, raw_db: Database, redis: ResilientRedis | None
) -> Transport:
    if redis is not None:
        return RedisPubSub(raw_db, redis, settings.redis_namespace)
    if settings.is_postgres:
        return PostgresNotify(raw_db, settings.database_url, settings.realtime_retention)
    return SQLiteOutbox(raw_db, settings.realtime_poll_interval, settings.realtime_retention)


class Realtime:
    def __init__(
        self,
        settings: Settings,
        store: SchemaStore,
        db: Executor,
        raw_db: Database,
        clients_db: Database,
        redis: ResilientRedis | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clients_db = clients_db
        self.hub = Hub(settings.realtime_max_connections)
        self.fanout = Fanout(store, db, settings, self.hub)
        self.transport = choose_transport(settings, raw_db, redis)
        self.presence = Presence(raw_db, enabled=not settings.is_postgres)
        self._watchdog: asyncio.Task[None] | None = None

    async def migrate(self) -> None:
        await self.transport.migrate()
        await self.presence.migrate()
        await self.clients_db.execute(CLIENTS_DDL)

    async def start(self) -> None:
        await self.transport.start(self.deliver)
        before_stop(asyncio.get_running_loop(), self.close_all)
        self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Idle and stalled streams, checked a few times a second for all clients at once."""
        s = self.settings
        idle, stall = s.realtime_idle_timeout, s.realtime_send_timeout
        step = min(0.5, idle / 4, stall / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(step)
            self.hub.watch(loop.time(), idle, stall)
            if self.hub.clients:
                try:
                    await self.presence.announce()  # a write only when the row is due
                except Exception as exc:
                    log.warning("realtime: could not renew this process's presence: %s", exc)

    def close_all(self) -> None:
        """End every open stream (shut-down: their clients reconnect elsewhere)."""
        for client in list(self.hub.clients.values()):
            client.close("shutdown")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait({self._watchdog}, timeout=5.0)
        await self.transport.stop()
        self.close_all()
        await self.presence.withdraw()

    # ------------------------------------------------------------------ writes

    @keeps_record
    async def on_change(self, tx: Executor, change: RecordChange) -> None:
        """The record-event listener: the change, published with its transaction."""
        rec = {k: v for k, v in change.record.items() if k not in SECRET}
        payload = orjson.dumps({"k": "ev", "c": change.collection.id, "a": change.action, "r": rec})
        await self.transport.publish_in(tx, payload)

    async def deliver(self, payload: bytes) -> None:
        """One message from the transport, in order: an event or a subscription."""
        if not self.hub.clients and payload.startswith(_EVENT):
            # nobody here to tell (nor to rebind): a write burst costs the reader no decode
            # and no turn of the event loop per event
            return
        try:
            msg = orjson.loads(payload)
            if msg.get("k") == "sub":
                await self._apply(msg)
            elif msg.get("k") == "ev":
                await self.fanout.record_event(msg["c"], msg["a"], msg["r"])
        except Exception:
            log.exception("realtime: a message could not be delivered")
        # let the streams write before the next event of a burst: a client's buffer bounds
        # how far it falls behind, not how many events one commit burst holds
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ clients

    async def connect(self) -> Client:
        if self.hub.full:
            raise ApiError(
                503,
                "Too many realtime connections on this server; try again shortly.",
                headers={"Retry-After": "5"},
            )
        # before the client can subscribe: from now on every write publishes (presence.py)
        await self.presence.announce()
        client = Client(self.settings.realtime_buffer)
        self.hub.register(client)
        await self.clients_db.execute(
            'INSERT INTO "_realtime_clients" ("id", "auth", "created") VALUES (?, ?, ?)',
            (client.id, "", time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())),
        )
        return client

    async def disconnect(self, client: Client) -> None:
        await self.clients_db.execute(
            'DELETE FROM "_realtime_clients" WHERE "id" = ?', (client.id,)
        )

    async def subscribe(self, client_id: str, auth: Auth, raw: list[str]) -> None:
        """PocketBase's POST: the auth may only go from none to some; topics replaced."""
        topics = [Topic.parse(t) for t in raw if t]
        key = auth_key(auth)
        client = self.hub.clients.get(client_id)
        if client is not None and not client.closed:
            bound = auth_key(client.auth)
            if bound and bound != key:
                raise forbidden(CHANGED_AUTH)
            client.auth = auth
            self.hub.set_topics(client, topics)
            if bound != key:
                await self._bind(client_id, key)
            return
        row = await self.clients_db.fetchone(
            'SELECT "auth" FROM "_realtime_clients" WHERE "id" = ?', (client_id,)
        )
        if row is None:
            raise not_found(MISSING_CLIENT)
        if row[0] and row[0] != key:
            raise forbidden(CHANGED_AUTH)
        if row[0] != key:
            await self._bind(client_id, key)
        await self.transport.publish(
            orjson.dumps({"k": "sub", "id": client_id, "auth": key, "t": [t.raw for t in topics]})
        )

    async def _bind(self, client_id: str, key: str) -> None:
        await self.clients_db.execute(
            'UPDATE "_realtime_clients" SET "auth" = ? WHERE "id" = ?', (key, client_id)
        )

    async def _apply(self, msg: dict[str, Any]) -> None:
        """Subscriptions another process took for a client of ours."""
        client = self.hub.clients.get(str(msg.get("id")))
        if client is None or client.closed:
            return
        key = str(msg.get("auth") or "")
        if key:
            cid, _, rid = key.partition("/")
            c = self.store.get(cid)
            rec = await self._auth_record(c, rid) if c is not None else None
            client.auth = Auth(collection=c, record=rec) if rec is not None else ANONYMOUS
        else:
            client.auth = ANONYMOUS
        self.hub.set_topics(client, [Topic.parse(t) for t in msg.get("t") or [] if t])

    async def _auth_record(self, c: Collection, rid: str) -> dict[str, Any] | None:
        sh = self.store.shapes.of(c, "internal")
        row = await self.store.db.fetchone(
            f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" = ?', (rid,)
        )
        if row is None:
            return None
        return {k: v for k, v in decode_row(c, sh, row).items() if k not in SECRET}
