"""From one committed record change to the frames each local subscriber may see.

Every process runs this for every event it hears (its own commits and other processes'),
in the order the transport hands them over, so a subscriber's events keep commit order.

A subscriber sees an event when the collection's rule (list rule for `posts/*`, view rule
for `posts/ID`) and the topic's own `filter` accept the record, evaluated as PocketBase
does: against the subscriber's auth and the topic's query and headers. The record is the
one the event carries (a delete's record is already gone from the table), so the rule runs
over a one-row derived table with the record's values, aliased as the table itself
would be: relations, back-relations and `@collection` joins still read the live tables.
Subscribers that would get identical answers (same auth, topic base and options) share one
evaluation, so a thousand anonymous `posts/*` subscribers cost one query per event.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from shipyard.kernel.errors import ApiError
from shipyard.realtime.clients import Client, Hub, frame
from shipyard.realtime.topics import Topic, bases_for
from shipyard.records.auth import ANONYMOUS, Auth
from shipyard.records.codecs import encode_stored
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.expand import Expander
from shipyard.records.listquery import PLAIN, ViewQuery
from shipyard.records.reading import filter_limits, visible_where
from shipyard.records.rules import Rules
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.db import Executor

log = logging.getLogger("shipyard.realtime")
SECRET = frozenset({"password", "tokenKey"})  # never in an event, never in a message


def _column_type(storage: str, dialect: str) -> str:
    if storage == "number":
        return "DOUBLE PRECISION" if dialect == "postgres" else "REAL"
    if storage == "bool":
        return "BOOLEAN" if dialect == "postgres" else "INTEGER"
    return "TEXT"


def derived_row(c: Collection, rec: dict[str, Any], dialect: str) -> tuple[str, list[Any]]:
    """`(SELECT ? AS "f", …)`: the record as a one-row table with the stored column types."""
    cols: list[str] = []
    args: list[Any] = []
    for f in c.fields:
        value = rec.get(f.name)
        args.append(encode_stored(f, f.zero() if value is None else value))
        cols.append(f'CAST(? AS {_column_type(f.storage, dialect)}) AS "{f.name}"')
    return "(SELECT " + ", ".join(cols) + ")", args


class Fanout:
    def __init__(self, store: SchemaStore, db: Executor, settings: Settings, hub: Hub) -> None:
        self.store = store
        self.db = db
        self.settings = settings
        self.hub = hub
        self.rules = Rules(store)
        self.expander = Expander(store, db, store.shapes, self.rules)
        self.filter_limits = filter_limits(settings)
        self.delivered = 0  # frames queued for clients, since start

    async def record_event(self, collection_id: str, action: str, rec: dict[str, Any]) -> None:
        c = self.store.get(collection_id)
        if c is None:  # created by another process a moment ago
            await self.store.reload()
            c = self.store.get(collection_id)
            if c is None:
                return
        if c.type == "auth":
            self._rebind(c, action, rec)
        targets: list[tuple[Client, Topic, str]] = []
        for base, kind in bases_for(c.id, c.name, str(rec.get("id", ""))):
            targets += [(client, t, kind) for client, t in self.hub.subscribed(base)]
        if not targets:
            return
        answers: dict[Any, bytes | None] = {}
        for client, topic, kind in targets:
            auth = client.auth
            key = (
                auth.collection.id if auth.collection else "",
                auth.id,
                kind,
                topic.base,
                topic.key,
            )
            if key not in answers:
                try:
                    answers[key] = await self.message(c, action, rec, auth, kind, topic)
                except ApiError:
                    answers[key] = None
                except Exception:  # one bad subscription must not stop the others' events
                    log.exception("realtime: evaluating %s for a subscriber failed", topic.base)
                    answers[key] = None
            data = answers[key]
            if data is not None and client.offer(frame(client.id, topic.raw, data)):
                self.delivered += 1

    def _rebind(self, c: Collection, action: str, rec: dict[str, Any]) -> None:
        """An auth record changed: its clients' rules see the new record (PocketBase), or
        no auth at all once it is deleted."""
        for client in self.hub.with_auth(c.id, str(rec.get("id", ""))):
            if action == "delete":
                client.auth, client.authed = ANONYMOUS, False
            else:
                client.auth = Auth(
                    collection=c,
                    record={k: v for k, v in rec.items() if k not in SECRET},
                    refreshable=client.auth.refreshable,
                )

    async def message(
        self,
        c: Collection,
        action: str,
        rec: dict[str, Any],
        auth: Auth,
        kind: str,
        topic: Topic,
    ) -> bytes | None:
        """The `data:` of the event for this subscriber, or None when it may not see it."""
        ctx = RequestContext(auth=auth, headers=topic.headers, query=topic.query, method="GET")
        conds, args = visible_where(  # ApiError (superusers only): not visible
            self.rules, self.store, c, kind, ctx, topic.query.get("filter", ""),
            self.filter_limits,
        )  # fmt: skip
        if conds:
            table, targs = derived_row(c, rec, self.store.dialect)
            where = " AND ".join(conds)
            row = await self.db.fetchone(
                f'SELECT 1 FROM {table} AS "_r" WHERE {where}', [*targs, *args]
            )
            if row is None:
                return None
        names = self.store.shapes.of(c, auth.is_superuser).names
        item: dict[str, Any] = {"collectionId": c.id, "collectionName": c.name}
        for name in names:
            if name in rec and name not in SECRET:
                item[name] = rec[name]
        try:
            q = ViewQuery.parse(topic.query, self.settings)
        except ApiError:
            q = PLAIN  # PocketBase sends the record without what it could not apply
        try:
            items = [item]
            await self.expander.finish(c, items, q, ctx)
            item = items[0]
        except ApiError:
            items = [item]
            await self.expander.finish(c, items, PLAIN, ctx)
            item = items[0]
        return orjson.dumps({"action": action, "record": item})
