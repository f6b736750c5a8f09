"""Response cache: ready response bytes in process memory, kept coherent by version tokens.

A cached response is valid only under the *token* it was computed with: the versions of every
collection the response can depend on (its relation neighbourhood, the collections its rules
name, the asker's auth collection) plus the schema version. Writes change the versions after
they commit and before they answer, so a read that starts after a write's response has
arrived reads a new token and cannot be served the old bytes. The token is read *before*
the query runs, so an entry computed while a write commits is filed under the old token.

Where the versions live decides who stays coherent:

* embedded (SQLite, no Redis): counters in this process, plus SQLite's `data_version`, which
  moves whenever another process commits — that flushes everything, coarse but exact;
* Redis (`SHIPYARD_REDIS_URL`): one hash of random tokens shared by every process and
  machine; a hit costs one HMGET round trip and no database query. While Redis is down
  nothing is cached or served from cache (it cannot be proven fresh);
* PostgreSQL without Redis: other processes' writes are invisible, so caching is off.

See docs/caching.md for the operator's view.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from shipyard.core.auth import Auth
from shipyard.core.collections import Collection
from shipyard.core.fields import RelationField
from shipyard.core.schema import SchemaStore
from shipyard.settings import Settings, parse_ttls
from shipyard.tools.redisclient import ResilientRedis

log = logging.getLogger("shipyard.cache")

# Anything with `@` other than @request/@collection is a date macro or @random: time-dependent.
_VOLATILE_RE = re.compile(r"@(?!request\b|collection\b)[A-Za-z]")
_HEADERS_RE = re.compile(r"@request\.headers\b")
_COLLECTION_REF_RE = re.compile(r"@collection\.(\w+)")
_RULES = ("listRule", "viewRule", "createRule", "updateRule", "deleteRule")
JITTER = 0.1  # entries live ttl ± 10 % so that keys filled together do not expire together


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Scope:
    """What the responses of one collection can depend on (per schema version)."""

    tables: tuple[str, ...]
    rules_vary: bool  # a rule in reach reads headers or the clock: per-request answers


@dataclass(frozen=True, slots=True)
class Plan:
    key: Hashable
    tables: tuple[str, ...]
    ttl: int
    public: bool


@dataclass(slots=True)
class Entry:
    status: int
    body: bytes
    etag: str
    token: Hashable
    expires: float


def _rules_of(c: Collection) -> list[str]:
    out = [r for r in (c.rule(a[:-4]) for a in _RULES) if r]
    manage = c.options.get("manageRule") if c.type == "auth" else None
    if isinstance(manage, str) and manage:
        out.append(manage)
    return out


def scope_of(store: SchemaStore, c: Collection) -> Scope:
    """The collection's relation neighbourhood, followed both ways and through the
    `@collection` references of rules, to a fixpoint. Over-approximates on purpose:
    invalidating too much costs hit rate, too little would serve stale data."""
    incoming: dict[str, list[Collection]] = {}
    for other in store.all():
        for f in other.relation_fields():
            incoming.setdefault(str(f.options.get("collectionId")), []).append(other)
    seen: dict[str, Collection] = {}
    todo = [c]
    vary = False
    while todo:
        cur = todo.pop()
        if cur.id in seen:
            continue
        seen[cur.id] = cur
        for field in cur.fields:
            if isinstance(field, RelationField):
                target = store.get(str(field.options.get("collectionId")))
                if target is not None:
                    todo.append(target)
        todo += incoming.get(cur.id, [])
        for rule in _rules_of(cur):
            if _VOLATILE_RE.search(rule) or _HEADERS_RE.search(rule):
                vary = True
            for name in _COLLECTION_REF_RE.findall(rule):
                ref = store.get(name)
                if ref is not None:
                    todo.append(ref)
    return Scope(tuple(sorted(x.table for x in seen.values())), vary)


class LocalVersions:
    """Counters bumped by this process's own commits; SQLite's data_version covers the rest."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self.counters: dict[str, int] = {}

    async def token(self, tables: Iterable[str]) -> Hashable | None:
        c = self.counters
        return (self.store.version, self.store.data_version, *(c.get(t, 0) for t in tables))

    async def bump(self, tables: set[str]) -> None:
        for t in tables:
            self.counters[t] = self.counters.get(t, 0) + 1


class RedisVersions:
    """A Redis hash of random version tokens, one per table, shared by every process.

    Random tokens (not counters) mean a Redis that restarts empty can never hand out a token
    that an old entry was filed under. Bumps that fail while Redis is down are replayed as
    soon as it answers again, before anything is read from it.
    """

    def __init__(self, store: SchemaStore, redis: ResilientRedis, namespace: str) -> None:
        self.key = namespace + ":versions"
        self.store = store
        self.redis = redis
        self.pending: set[str] = set()
        self.local = LocalVersions(store)  # this process's own writes, even during outages
        redis.on_recover.append(self._replay)

    async def token(self, tables: Iterable[str]) -> Hashable | None:
        names = list(tables)
        if self.pending:
            await self._flush_pending()
            if self.pending:
                return None
        got = await self.redis.call(lambda r: r.hmget(self.key, names))
        if got is None:
            return None
        if any(v is None for v in got):
            missing = {
                n: secrets.token_hex(8) for n, v in zip(names, got, strict=True) if v is None
            }

            async def fill(r: Any) -> list[Any]:
                pipe = r.pipeline(transaction=False)
                for name, value in missing.items():
                    pipe.hsetnx(self.key, name, value)
                pipe.hmget(self.key, names)
                return list(await pipe.execute())

            res = await self.redis.call(fill)
            if res is None:
                return None
            got = res[-1]
        local = await self.local.token(names)
        return (local, *got)

    async def bump(self, tables: set[str]) -> None:
        await self.local.bump(tables)
        self.pending |= tables
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        todo = set(self.pending)
        mapping: dict[Any, Any] = {t: secrets.token_hex(8) for t in todo}
        if (
            await self.redis.call(lambda r: r.hset(self.key, mapping=mapping), force=True)
            is not None
        ):
            self.pending -= todo

    async def _replay(self) -> None:
        """On recovery, before the call that noticed it returns."""
        if not self.pending:
            return
        todo = set(self.pending)
        try:
            mapping: dict[Any, Any] = {t: secrets.token_hex(8) for t in todo}
            await self.redis.client.hset(self.key, mapping=mapping)
            self.pending -= todo
        except Exception:  # still unreachable: keep them pending, stay uncached
            log.debug("replaying version bumps failed; will retry")


Versions = LocalVersions | RedisVersions


class ResponseCache:
    def __init__(self, settings: Settings, store: SchemaStore, versions: Versions | None) -> None:
        self.store = store
        self.versions = versions
        self.default_ttl = settings.cache_ttl
        self.ttls = parse_ttls(settings.cache_ttls)
        self.max_bytes = settings.cache_max_bytes
        self.max_entry = settings.cache_max_entry_bytes
        self.entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self.size = 0
        self._inflight: dict[tuple[Hashable, Hashable], asyncio.Future[Entry]] = {}
        self._scopes: dict[str, Scope] = {}
        self._scopes_version = -1
        self.hits = self.misses = self.bypasses = 0
        self.counts: OrderedDict[Hashable, tuple[Hashable, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.versions is not None

    # ------------------------------------------------------------------ what to cache

    def scope(self, c: Collection) -> Scope:
        if self._scopes_version != self.store.version:
            self._scopes = {}
            self._scopes_version = self.store.version
        got = self._scopes.get(c.id)
        if got is None:
            got = self._scopes[c.id] = scope_of(self.store, c)
        return got

    def plan(self, c: Collection, target: str, params: dict[str, str], auth: Auth) -> Plan | None:
        """The key and dependencies of a GET, or None when its answer must be computed."""
        if self.versions is None:
            return None
        ttl = self.ttls.get(c.name, self.default_ttl)
        if ttl <= 0:
            return None
        for name in ("filter", "sort"):
            text = params.get(name)
            if text and _VOLATILE_RE.search(text):
                return None
        scope = self.scope(c)
        tables = scope.tables
        if auth.is_superuser:
            who = "su"
        elif auth.collection is not None:
            if scope.rules_vary:
                return None
            who = f"{auth.collection.id}:{auth.id}"
            if auth.collection.table not in tables:
                tables = (*tables, auth.collection.table)
        else:
            if scope.rules_vary:
                return None
            who = ""
        return Plan((target, who), tables, ttl, public=who == "")

    # ------------------------------------------------------------------ lookups

    async def token(self, tables: Iterable[str]) -> Hashable | None:
        if self.versions is None:
            return None
        return await self.versions.token(tables)

    def get(self, key: Hashable, token: Hashable) -> Entry | None:
        e = self.entries.get(key)
        if e is None:
            return None
        if e.token != token or e.expires < time.monotonic():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return e

    async def fill(
        self, plan: Plan, token: Hashable, compute: Callable[[], Awaitable[tuple[int, bytes]]]
    ) -> Entry:
        """Compute once per key and token however many requests miss together."""
        flight = (plan.key, token)
        waiting = self._inflight.get(flight)
        if waiting is not None:
            return await asyncio.shield(waiting)
        fut: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = fut
        try:
            status, body = await compute()
            ttl = plan.ttl * (1 + random.uniform(-JITTER, JITTER))
            entry = Entry(status, body, etag_of(body), token, time.monotonic() + ttl)
            if status == 200:
                self.put(plan.key, entry)
            fut.set_result(entry)
            return entry
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved here so a key nobody else awaited logs nothing
            raise
        finally:
            del self._inflight[flight]

    def put(self, key: Hashable, entry: Entry) -> None:
        size = len(entry.body) + 200
        if size > self.max_entry:
            return
        self._drop(key)
        self.entries[key] = entry
        self.size += size
        while self.size > self.max_bytes and self.entries:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: Hashable) -> None:
        e = self.entries.pop(key, None)
        if e is not None:
            self.size -= len(e.body) + 200

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0

    # ------------------------------------------------------------------ list totals

    async def count(
        self, c: Collection, key: Hashable, compute: Callable[[], Awaitable[int]]
    ) -> int:
        """`totalItems` under the same tokens as responses: a COUNT over a big table runs
        once per version of its scope, not once per request (hits or `no-cache` misses)."""
        token = await self.token(self.scope(c).tables) if self.versions is not None else None
        if token is None:
            return await compute()
        got = self.counts.get(key)
        if got is not None and got[0] == token:
            self.counts.move_to_end(key)
            return got[1]
        n = await compute()
        self.counts[key] = (token, n)
        if len(self.counts) > 4096:
            self.counts.popitem(last=False)
        return n

    # ------------------------------------------------------------------ writes

    async def written(self, tables: set[str]) -> None:
        """Called after every commit that wrote `tables` (see tools/dbwatch.py)."""
        if self.versions is not None:
            await self.versions.bump(tables)


def build_versions(
    settings: Settings, store: SchemaStore, redis: ResilientRedis | None
) -> Versions | None:
    if settings.cache == "off":
        return None
    if redis is not None:
        return RedisVersions(store, redis, settings.redis_namespace)
    if store.dialect == "sqlite":
        return LocalVersions(store)
    return None  # PostgreSQL without Redis: other processes' writes would go unseen
