"""Webhook subscriptions and their deliveries.

A subscription (collection or "*", events, URL, secret) lives in `_webhooks`, managed over
`/api/webhooks` and by the declarative file. For every matching record event, a `webhook`
job is enqueued in the write's transaction (webhooks/events.py, a subscriber of the record-event bus); the job signs and POSTs the
event (tools/webhooks.py), logs each attempt in `_webhook_deliveries`, and fails the attempt
on anything but a 2xx so the queue retries it with backoff and finally dead-letters it.
The `webhook-id` is the event's id on every attempt, so receivers can deduplicate.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.kernel.errors import ApiError, bad_request, not_found
from shipyard.records.fields import format_date, now_str
from shipyard.settings import parse_allow_list
from shipyard.tools import webhooks as wh
from shipyard.tools.db import ConstraintKind, Database, Executor, IntegrityError
from shipyard.tools.ids import random_string
from shipyard.tools.metrics import Registry
from shipyard.tools.worker import Discard

if TYPE_CHECKING:
    from shipyard.jobs.jobs import JobContext, Jobs
    from shipyard.records.schema import SchemaStore

ACTIONS = ("create", "update", "delete")
DELIVERY_KIND = "webhook"
_PG_LOCK_ID = 7416


@dataclass
class Webhook:
    id: str
    name: str
    collection: str
    events: list[str]
    url: str
    secret: str
    active: bool
    created: str
    updated: str
    # what is stored: the collection's id (names change) or "*"; `collection` shows its name
    collection_id: str = ""

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "collection": self.collection,
            "events": list(self.events),
            "url": self.url,
            "active": self.active,
            "secretHint": "whsec_…" + self.secret[-4:] if self.secret else "",
            "created": self.created,
            "updated": self.updated,
        }
        if with_secret:
            out["secret"] = self.secret
        return out


_COLS = '"id", "name", "collection", "events", "url", "secret", "active", "created", "updated"'


def _row(r: Any) -> Webhook:
    return Webhook(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        orjson.loads(r[3]),
        str(r[4]),
        str(r[5]),
        bool(r[6]),
        str(r[7]),
        str(r[8]),
        collection_id=str(r[2]),
    )


def _field_error(name: str, message: str, code: str = "validation_invalid_value") -> ApiError:
    return bad_request("Failed to save the webhook.", {name: {"code": code, "message": message}})


def _name_taken(exc: IntegrityError) -> bool:
    return exc.kind is ConstraintKind.UNIQUE and exc.columns == ("name",)


class Webhooks:
    def __init__(
        self, db: Database, store: SchemaStore, jobs: Jobs, metrics: Registry | None = None
    ) -> None:
        self.db = db
        self.deliveries_total = (metrics or Registry()).counter(
            "shipyard_webhook_deliveries_total",
            "Webhook delivery attempts by result: delivered (2xx), failed (another answer or "
            "no answer; retried), refused (the address is not allowed; dead-lettered).",
            ("result",),
        )
        self.store = store
        self.jobs = jobs
        s = jobs.settings
        self.allow = parse_allow_list(s.webhook_allow_private)
        self.timeout = s.webhook_timeout
        self.max_attempts = s.webhook_max_attempts
        # the log explains dead letters: kept as long as they are, then pruned
        self.log_retention = float(s.jobs_discarded_retention)
        self._pruned_at = 0.0

    async def ensure_schema(self) -> None:
        pg = self.db.dialect == "postgres"
        ident = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
        real = "DOUBLE PRECISION" if pg else "REAL"
        async with self.db.transaction() as tx:
            if pg:
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_webhooks" ('
                '"id" TEXT PRIMARY KEY NOT NULL, "name" TEXT UNIQUE NOT NULL, '
                '"collection" TEXT NOT NULL, "events" TEXT NOT NULL, "url" TEXT NOT NULL, '
                '"secret" TEXT NOT NULL, "active" INTEGER NOT NULL, '
                '"created" TEXT NOT NULL, "updated" TEXT NOT NULL)'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_webhooks_collection" ON "_webhooks" ("collection")'
            )
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_webhook_deliveries" ('
                f'"id" {ident}, "webhook" TEXT NOT NULL, "event" TEXT NOT NULL, '
                '"type" TEXT NOT NULL, "job" BIGINT, "attempt" INTEGER NOT NULL, '
                '"status" TEXT NOT NULL, "code" INTEGER, '
                f'"duration_ms" {real} NOT NULL, "error" TEXT NOT NULL, '
                f'"response" TEXT NOT NULL, "at" {real} NOT NULL)'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_webhook_deliveries_webhook" '
                'ON "_webhook_deliveries" ("webhook", "id")'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_webhook_deliveries_at" ON "_webhook_deliveries" ("at")'
            )

    # ------------------------------------------------------------------ subscriptions

    def _named(self, w: Webhook) -> Webhook:
        """`collection` as the collection's current name (kept by id: a rename follows)."""
        c = None if w.collection_id == "*" else self.store.get(w.collection_id)
        if c is not None:
            w.collection = c.name
        return w

    async def all(self) -> list[Webhook]:
        rows = await self.db.fetchall(f'SELECT {_COLS} FROM "_webhooks" ORDER BY "created", "id"')
        return [self._named(_row(r)) for r in rows]

    async def get(self, wid: str) -> Webhook:
        row = await self.db.fetchone(f'SELECT {_COLS} FROM "_webhooks" WHERE "id" = ?', (wid,))
        if row is None:
            raise not_found()
        return self._named(_row(row))

    async def _by_name(self, name: str) -> Webhook | None:
        row = await self.db.fetchone(f'SELECT {_COLS} FROM "_webhooks" WHERE "name" = ?', (name,))
        return None if row is None else self._named(_row(row))

    async def _validate(self, data: Any, old: Webhook | None) -> dict[str, Any]:  # noqa: C901  (one independent check per setting)
        if not isinstance(data, dict):
            raise bad_request("Invalid body: expected a JSON object.")
        known = {"name", "collection", "events", "url", "secret", "active"}
        unknown = sorted(set(data) - known - {"id", "created", "updated", "secretHint"})
        if unknown:
            raise _field_error(unknown[0], "Unknown field.", "validation_unknown_field")
        out: dict[str, Any] = {}
        base = old.to_json(with_secret=True) if old else {}
        name = data.get("name", base.get("name"))
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise _field_error("name", "Must be 1..100 characters.", "validation_required")
        out["name"] = name.strip()
        coll = data.get("collection", base.get("collection"))
        if not isinstance(coll, str) or not coll:
            raise _field_error("collection", "Cannot be blank.", "validation_required")
        if coll != "*":
            c = self.store.get(coll)
            if c is None:
                raise _field_error("collection", "Missing or invalid collection.")
            coll = c.id
        out["collection"] = coll
        events = data.get("events", base.get("events", list(ACTIONS)))
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e in ACTIONS for e in events)
        ):
            raise _field_error("events", f"Must be a non-empty list of {', '.join(ACTIONS)}.")
        out["events"] = [a for a in ACTIONS if a in events]
        url = data.get("url", base.get("url"))
        if not isinstance(url, str) or not url:
            raise _field_error("url", "Cannot be blank.", "validation_required")
        try:
            await wh.resolve_checked(url, self.allow)
        except wh.Refused as exc:
            raise _field_error("url", f"Refused: {exc}.", "validation_url_refused") from None
        out["url"] = url
        secret = data.get("secret", base.get("secret") or None)
        if secret is None or secret == "":
            secret = wh.new_secret()
        key = wh.decode_secret(secret) if isinstance(secret, str) else None
        low, high = wh.SECRET_BYTES
        if key is None or not low <= len(key) <= high:
            # receivers verify with Standard Webhooks libraries, which decode exactly this
            raise _field_error(
                "secret", f"Must be whsec_ followed by the base64 of {low} to {high} random bytes."
            )
        out["secret"] = secret
        active = data.get("active", base.get("active", True))
        if not isinstance(active, bool):
            raise _field_error("active", "Must be true or false.")
        out["active"] = active
        return out

    async def create(self, data: Any) -> Webhook:
        v = await self._validate(data, None)
        now = now_str()
        w = Webhook(random_string(15), created=now, updated=now, collection_id=v["collection"], **v)
        try:
            await self.db.execute(
                f'INSERT INTO "_webhooks" ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (w.id, w.name, w.collection, orjson.dumps(w.events).decode(), w.url, w.secret,
                 1 if w.active else 0, w.created, w.updated),
            )  # fmt: skip
        except IntegrityError as exc:  # "name" is UNIQUE: taken, now or by a concurrent request
            if _name_taken(exc):
                raise _field_error("name", "The name is taken.", "validation_not_unique") from None
            raise
        return self._named(w)

    async def update(self, wid: str, data: Any) -> Webhook:
        old = await self.get(wid)
        v = await self._validate(data, old)
        now = now_str()
        try:
            await self.db.execute(
                'UPDATE "_webhooks" SET "name" = ?, "collection" = ?, "events" = ?, "url" = ?, '
                '"secret" = ?, "active" = ?, "updated" = ? WHERE "id" = ?',
                (v["name"], v["collection"], orjson.dumps(v["events"]).decode(), v["url"],
                 v["secret"], 1 if v["active"] else 0, now, wid),
            )  # fmt: skip
        except IntegrityError as exc:
            if _name_taken(exc):
                raise _field_error("name", "The name is taken.", "validation_not_unique") from None
            raise
        return await self.get(wid)

    async def delete(self, wid: str) -> None:
        """The subscription and its delivery log; its pending deliveries discard themselves."""
        await self.get(wid)
        async with self.db.transaction() as tx:
            await tx.execute('DELETE FROM "_webhooks" WHERE "id" = ?', (wid,))
            await tx.execute('DELETE FROM "_webhook_deliveries" WHERE "webhook" = ?', (wid,))

    async def sync(self, items: Any) -> int:
        """The declarative file's `webhooks`: create or update each by name."""
        n = 0
        for data in resolve_items(items):
            name = str(data.get("name", "")).strip()
            try:
                existing = await self._by_name(name)
                if existing is None:
                    await self.create(data)
                else:
                    await self.update(existing.id, data)
            except ApiError as exc:
                raise ApiError(exc.status, f"Webhook {name!r}: {exc.message}", exc.data) from None
            n += 1
        return n

    # ------------------------------------------------------------------ events

    async def matching(self, tx: Executor, collection: str, action: str) -> list[Webhook]:
        """Active subscriptions for this event, read in the write's transaction."""
        c = self.store.get(collection)
        rows = await tx.fetchall(
            f'SELECT {_COLS} FROM "_webhooks" WHERE "active" = 1 AND "collection" IN (?, ?, \'*\')',
            (c.id if c else collection, collection),
        )
        return [w for w in (_row(r) for r in rows) if action in w.events]

    async def enqueue_delivery(self, tx: Executor, w: Webhook, event: dict[str, Any]) -> None:
        await self.jobs.enqueue(
            DELIVERY_KIND,
            {"webhook": w.id, "event": event},
            tx=tx,
            max_attempts=self.max_attempts,
            timeout=self.timeout + 5,
            meta={"event": event["id"], "webhook": w.id},
        )

    async def deliver(self, ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        """The `webhook` job: one signed POST; a non-2xx answer fails the attempt."""
        event = args.get("event") if isinstance(args, dict) else None
        wid = args.get("webhook") if isinstance(args, dict) else None
        if not isinstance(event, dict) or not isinstance(wid, str):
            raise Discard("webhook: args must be {webhook: <subscription id>, event: {...}}")
        missing = [k for k in ("id", "type", "timestamp", "collection", "collectionId", "action")
                   if not isinstance(event.get(k), str)]  # fmt: skip
        if missing:
            raise Discard(f"webhook: the event lacks {', '.join(missing)}")
        row = await self.db.fetchone(f'SELECT {_COLS} FROM "_webhooks" WHERE "id" = ?', (wid,))
        if row is None:
            raise Discard("the webhook subscription was deleted")
        w = _row(row)
        if not w.active:
            raise Discard("the webhook subscription is inactive")
        body = orjson.dumps(envelope(event))
        headers = wh.signed_headers(w.secret, event["id"], body)
        job = ctx.job
        try:
            d = await wh.post(w.url, body, headers, allow=self.allow, timeout=self.timeout)
        except wh.Refused as exc:
            self.deliveries_total.inc(("refused",))
            await self._log(w, event, job.id, job.attempt, "refused", None, 0.0, str(exc), "")
            raise Discard(f"refused: {exc}") from None
        status = "delivered" if d.ok else "failed"
        self.deliveries_total.inc((status,))
        await self._log(
            w, event, job.id, job.attempt, status, d.status, d.duration_ms, d.error, d.response
        )
        if not d.ok:
            # the host only: a URL's path or query often holds a token, and this is logged
            raise DeliveryFailed(f"{urllib.parse.urlsplit(w.url).hostname}: {d.error}")
        return {"status": d.status, "durationMs": round(d.duration_ms, 3)}

    async def _log(
        self,
        w: Webhook,
        event: dict[str, Any],
        job: int,
        attempt: int,
        status: str,
        code: int | None,
        ms: float,
        error: str,
        response: str,
    ) -> None:
        await self.db.execute(
            'INSERT INTO "_webhook_deliveries" ("webhook", "event", "type", "job", "attempt", '
            '"status", "code", "duration_ms", "error", "response", "at") '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (w.id, event["id"], event.get("type", ""), job, attempt, status, code, ms,
             error, response, time.time()),
        )  # fmt: skip
        now = time.time()
        if now - self._pruned_at > 60:  # at most once a minute per process
            self._pruned_at = now
            await self.db.execute(
                'DELETE FROM "_webhook_deliveries" WHERE "at" < ?', (now - self.log_retention,)
            )

    async def deliveries(
        self, wid: str, *, page: int = 1, per_page: int = 30, event: str | None = None
    ) -> dict[str, Any]:
        await self.get(wid)
        where, args = '"webhook" = ?', [wid]
        if event:
            where += ' AND "event" = ?'
            args.append(event)
        total = await self.db.fetchone(
            f'SELECT COUNT(*) FROM "_webhook_deliveries" WHERE {where}', args
        )
        rows = await self.db.fetchall(
            'SELECT "id", "event", "type", "job", "attempt", "status", "code", "duration_ms", '
            f'"error", "response", "at" FROM "_webhook_deliveries" WHERE {where} '
            'ORDER BY "id" DESC LIMIT ? OFFSET ?',
            (*args, per_page, (page - 1) * per_page),
        )
        n = int(total[0]) if total else 0
        items = [
            {
                "id": r[0], "event": r[1], "type": r[2], "job": r[3], "attempt": r[4],
                "status": r[5], "code": r[6], "durationMs": round(float(r[7]), 3),
                "error": r[8], "response": r[9],
                "at": format_date(datetime.fromtimestamp(float(r[10]), UTC)),
            }
            for r in rows
        ]  # fmt: skip
        return {
            "page": page,
            "perPage": per_page,
            "totalItems": n,
            "totalPages": (n + per_page - 1) // per_page,
            "items": items,
        }


def resolve_items(items: Any) -> list[dict[str, Any]]:
    """The declarative file's `webhooks` with each `secretEnv` (the name of an environment
    variable holding the secret, which keeps secrets out of the file) replaced by the
    secret. Done before anything is applied, so a missing variable changes nothing."""
    if not isinstance(items, list):
        raise bad_request('Invalid webhooks: expected a list under "webhooks".')
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_request("Invalid webhooks: each item must be an object.")
        data = dict(item)
        env = data.pop("secretEnv", None)
        if env is not None:
            name = data.get("name")
            if not isinstance(env, str) or not os.environ.get(env):
                raise bad_request(
                    f"Webhook {name!r}: the environment variable {env!r} named by secretEnv "
                    "is not set.",
                    {"secretEnv": {"code": "validation_required", "message": "Not set."}},
                )
            data["secret"] = os.environ[env]
        out.append(data)
    return out


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx; the attempt is retried with backoff."""


def envelope(event: dict[str, Any]) -> dict[str, Any]:
    """The request body: Standard Webhooks' `{type, timestamp, data}`."""
    return {
        "type": event["type"],
        "timestamp": event["timestamp"],
        "data": {
            "id": event["id"],
            "collection": event["collection"],
            "collectionId": event["collectionId"],
            "action": event["action"],
            "record": event["record"],
            "oldRecord": event["oldRecord"],
        },
    }
