"""Response cache: ready response bytes in process memory, kept coherent by version tokens.

A cached response is valid only under the *token* it was computed with: the versions of every
collection the response can read (all that is reachable from its collection, from the asker's
auth collection and from the `@collection` references of its filter; see `scope_of`) plus
the schema version. Writes change the versions after
they commit and before they answer, so a read that starts after a write's response has
arrived reads a new token and cannot be served the old bytes. The token is read *before*
the query runs, so an entry computed while a write commits is filed under the old token.

Where the versions live decides who stays coherent:

* embedded (SQLite, no Redis): counters in this process, plus SQLite's `data_version`, which
  moves whenever another process commits — that flushes everything, coarse but exact;
* Redis (`SHIPYARD_REDIS_URL`): one hash of random tokens shared by every process and
  machine; a hit costs one HMGET round trip and no database query, and lookups made while
  one is in flight share the next (auto-batched). While Redis is down
  nothing is cached or served from cache (it cannot be proven fresh);
* PostgreSQL without Redis: other processes' writes are invisible, so caching is off.

See docs/caching.md for the operator's view.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.records import query
from shipyard.records.auth import Auth
from shipyard.records.collections import Collection
from shipyard.records.query import NO_REFS, Refs
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings, parse_ttls
from shipyard.tools.batching import AutoBatcher
from shipyard.tools.metrics import Registry
from shipyard.tools.redisclient import ResilientRedis

log = logging.getLogger("shipyard.cache")

_RULES = ("listRule", "viewRule", "createRule", "updateRule", "deleteRule")
JITTER = 0.1  # entries live ttl ± 10 % so that keys filled together do not expire together
MAX_SCOPES = 4096  # memoized (collection, asker collection, @collection refs) unions
MAX_BATCH = 256  # version lookups per HMGET: bounds one call's size


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Scope:
    """Tables a response can read, and whether rules make it per request (per schema)."""

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


def incoming_relations(store: SchemaStore) -> dict[str, list[Collection]]:
    """Collection id -> the collections with a relation field pointing to it."""
    out: dict[str, list[Collection]] = {}
    for other in store.all():
        for f in other.relation_fields():
            target = store.get(str(f.options.get("collectionId") or ""))
            if target is not None:
                out.setdefault(target.id, []).append(other)
    return out


def scope_of(
    store: SchemaStore,
    roots: Iterable[Collection],
    incoming: dict[str, list[Collection]] | None = None,
) -> Scope:
    """Every collection reachable from `roots` through relations, followed both ways, and
    through the `@collection` references of the rules (manageRule included) of every
    collection reached, to a fixpoint.

    That is every step the filter compiler and expand can take from a collection:
    relations forward, back-relations `x_via_y` backward, `@collection` jumps, and the
    rules of whatever they reach. The roots add what starts elsewhere: the asker's auth
    collection (`@request.auth.<relation>…` in rules and filters) and a client filter's
    own `@collection` references. Over-approximates on purpose: invalidating too much
    costs hit rate, too little would serve stale data. `rules_vary`: a rule in reach
    reads headers or the clock (or does not parse), so answers are per request."""
    if incoming is None:
        incoming = incoming_relations(store)
    seen: dict[str, Collection] = {}
    todo = list(roots)
    vary = False
    while todo:
        cur = todo.pop()
        if cur.id in seen:
            continue
        seen[cur.id] = cur
        for f in cur.relation_fields():
            target = store.get(str(f.options.get("collectionId") or ""))
            if target is not None:
                todo.append(target)
        todo += incoming.get(cur.id, [])
        for rule in _rules_of(cur):
            refs = query.references(rule)
            if refs is None or refs.headers or refs.clock:
                vary = True
            for name in refs.collections if refs is not None else ():
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
        # concurrent lookups share one HMGET (see _read)
        self.reads: AutoBatcher[tuple[str, ...], tuple[Any, ...]] = AutoBatcher(
            self._read, MAX_BATCH
        )
        redis.on_recover.append(self._replay)

    async def token(self, tables: Iterable[str]) -> Hashable | None:
        names = tuple(tables)
        got = await self.reads.submit(names)
        if got is None:
            return None
        local = await self.local.token(names)
        return (local, *got)

    async def _read(self, batch: list[tuple[str, ...]]) -> list[tuple[Any, ...]] | None:
        """Every token of a batch of lookups in one HMGET over the union of their tables.

        Sent after each lookup in it was made (tools/batching.py), so each sees every bump
        that had reached Redis when it was asked, as a lone HMGET would; and bumps still
        pending (not yet in Redis) are checked here, at send time, for the same reason."""
        if self.pending:
            await self._flush_pending()
            if self.pending:
                return None
        names = list(dict.fromkeys(n for tables in batch for n in tables))
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
        value = dict(zip(names, got, strict=True))
        return [tuple(value[n] for n in tables) for tables in batch]

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
    def __init__(
        self,
        settings: Settings,
        store: SchemaStore,
        versions: Versions | None,
        metrics: Registry | None = None,
    ) -> None:
        self.store = store
        self.versions = versions
        self.default_ttl = settings.cache_ttl
        self.ttls = parse_ttls(settings.cache_ttls)
        self.max_bytes = settings.cache_max_bytes
        self.max_entry = settings.cache_max_entry_bytes
        self.entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self.size = 0
        self._inflight: dict[tuple[Hashable, Hashable], asyncio.Future[Entry]] = {}
        self.limits = query.FilterLimits(  # as Records compiles client filters
            max_length=settings.max_filter_length,
            max_expressions=settings.max_filter_expressions,
            max_relation_depth=settings.max_expand_depth,
        )
        self._incoming: dict[str, list[Collection]] = {}
        self._scopes: dict[tuple[str, str, frozenset[str]], Scope] = {}
        self._refs: dict[str, Refs | None] = {}  # client filter -> Refs (None: uncacheable)
        self._scopes_version = -1
        self.hits = self.misses = self.bypasses = 0
        self.requests = (metrics or Registry()).counter(
            "shipyard_cache_requests_total",
            "Cacheable record reads by the response cache's answer: hit, miss, or bypass "
            "(not cacheable, cache off, or the request asked to skip it).",
            ("result",),
        )
        # counted by the read path (http/gateway.py), which knows each request's answer,
        # as plain ints (a counter's update per read cost more), added to the counter
        # before each snapshot
        self.answers: dict[bytes, int] = dict.fromkeys((b"hit", b"miss", b"bypass"), 0)
        if metrics is not None:
            metrics.collectors.append(self.count_answers)
        self.counts: OrderedDict[Hashable, tuple[Hashable, int]] = OrderedDict()

    def count_answers(self) -> None:
        """The answers counted since the last snapshot, into `shipyard_cache_requests_total`."""
        answers = self.answers
        for answer, n in answers.items():
            if n:
                self.requests.inc((answer.decode(),), n)
                answers[answer] = 0

    @property
    def enabled(self) -> bool:
        return self.versions is not None

    # ------------------------------------------------------------------ what to cache

    def scope(self, c: Collection, asker: Collection | None, refs: Refs) -> Scope:
        """What is reachable from `c`, from the asker's auth collection (rules and filters
        follow `@request.auth.<relation>…` from there) and from the collections a client
        filter names with `@collection`: a superset of every table the answer can read.
        Memoized per schema version, so a hit costs one dictionary lookup."""
        if self._scopes_version != self.store.version:
            self._incoming = incoming_relations(self.store)
            self._scopes = {}
            self._scopes_version = self.store.version
        key = (c.id, asker.id if asker is not None else "", refs.collections)
        got = self._scopes.get(key)
        if got is None:
            roots = [c] if asker is None else [c, asker]
            named = [self.store.get(name) for name in refs.collections]
            roots += (o for o in named if o is not None)
            got = scope_of(self.store, roots, self._incoming)
            if None in named:  # the compile will fail: not worth a memo slot
                return got
            if len(self._scopes) >= MAX_SCOPES:
                self._scopes.clear()
            self._scopes[key] = got
        return got

    def refs(self, params: Mapping[str, str]) -> Refs | None:
        """What the client's filter reads outside relation paths; None when the answer
        differs per request (headers, the clock, `@random`) and must not be cached."""
        sort = params.get("sort")
        if sort and "@random" in sort:
            return None
        filt = params.get("filter")
        if not filt:
            return NO_REFS
        return self._filter_refs(filt)

    def _filter_refs(self, filt: str) -> Refs | None:
        try:
            return self._refs[filt]
        except KeyError:
            pass
        got = query.references(filt, self.limits) if filt.strip() else NO_REFS
        if got is not None and (got.headers or got.clock):
            got = None
        if len(self._refs) >= MAX_SCOPES:
            self._refs.clear()
        self._refs[filt] = got
        return got

    def plan(
        self, c: Collection, target: str, params: Mapping[str, str], auth: Auth
    ) -> Plan | None:
        """The key and dependencies of a GET, or None when its answer must be computed."""
        if self.versions is None:
            return None
        ttl = self.ttls.get(c.name, self.default_ttl)
        if ttl <= 0:
            return None
        refs = self.refs(params) if params else NO_REFS
        if refs is None:
            return None
        asker = auth.collection
        scope = self.scope(c, asker, refs)
        if asker is None:
            who = ""
        elif auth.is_superuser and not refs.auth:
            who = "su"  # rules do not apply to superusers: one entry for all of them
        else:
            who = f"{asker.id}:{auth.id}"
        if scope.rules_vary and not auth.is_superuser:
            return None
        return Plan((target, who), scope.tables, ttl, public=who == "")

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
            ttl = plan.ttl * (1 + random.uniform(-JITTER, JITTER))  # noqa: S311 (spreads expiries)
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
        self,
        c: Collection,
        auth: Auth,
        filt: str,
        key: Hashable,
        compute: Callable[[], Awaitable[int]],
    ) -> int:
        """`totalItems` under the same tokens as responses: a COUNT over a big table runs
        once per version of its scope, not once per request (hits or `no-cache` misses).
        `key` is the COUNT's SQL and parameters, which hold every request value it uses
        (headers and dates included), so only the tables it reads need versions."""
        refs = query.references(filt, self.limits) if filt.strip() else NO_REFS
        scope = self.scope(c, auth.collection, refs) if refs is not None else None
        token = await self.token(scope.tables) if scope is not None else None
        if token is None or scope is None:
            return await compute()
        # askers of other auth collections may send the same SQL with other version sets,
        # and tokens are comparable only over the same tables
        key = (scope.tables, key)
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
