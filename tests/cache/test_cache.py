"""ResponseCache mechanics that HTTP tests cannot show: one recompute per key under a
stampede, memory bounds, TTL jitter, and what a response depends on (the version set and
key of its plan)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shipyard.cache.cache import JITTER, LocalVersions, Plan, ResponseCache, scope_of
from shipyard.records.auth import Auth
from shipyard.records.collections import collection_from_dict
from shipyard.records.query import Refs, references
from shipyard.settings import load_settings


class _Store:
    """Just enough of SchemaStore for the cache: a fixed schema version and collections."""

    version = 1
    data_version = 0

    def __init__(self, collections: list[Any] | None = None) -> None:
        self._c = {c.id: c for c in collections or []}

    def all(self) -> list[Any]:
        return list(self._c.values())

    def get(self, key: str) -> Any:
        return self._c.get(key) or next((c for c in self._c.values() if c.name == key), None)


def _cache(tmp_path: Path, **kw: Any) -> ResponseCache:
    settings = load_settings(env={}, data_dir=str(tmp_path), **kw)
    store: Any = _Store()
    return ResponseCache(settings, store, LocalVersions(store))


def test_a_stampede_computes_once(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    plan = Plan("k", ("posts",), 60, True)
    calls = 0

    async def compute() -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 200, b"body"

    async def main() -> list[Any]:
        token = await cache.token(plan.tables)
        return await asyncio.gather(*(cache.fill(plan, token, compute) for _ in range(50)))

    entries = asyncio.run(main())
    assert calls == 1
    assert {e.body for e in entries} == {b"body"}


def test_a_failed_compute_reaches_every_waiter_and_is_not_cached(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    plan = Plan("k", ("posts",), 60, True)

    async def compute() -> tuple[int, bytes]:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    async def main() -> list[Any]:
        token = await cache.token(plan.tables)
        return await asyncio.gather(
            *(cache.fill(plan, token, compute) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert cache.entries == {}


def test_new_token_after_a_write_misses(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    plan = Plan("k", ("posts",), 60, True)

    async def main() -> tuple[Any, Any]:
        t1 = await cache.token(plan.tables)
        await cache.fill(plan, t1, _ok)
        hit = cache.get("k", t1)
        await cache.written({"posts"})
        t2 = await cache.token(plan.tables)
        return hit, cache.get("k", t2)

    hit, after = asyncio.run(main())
    assert hit is not None
    assert after is None


async def _ok() -> tuple[int, bytes]:
    return 200, b"x" * 1000


def test_memory_is_bounded_and_big_bodies_are_not_kept(tmp_path: Path) -> None:
    cache = _cache(tmp_path, cache_max_bytes=12_000, cache_max_entry_bytes=2_000)

    async def main() -> None:
        token = await cache.token(("posts",))
        for i in range(50):
            await cache.fill(Plan(i, ("posts",), 60, True), token, _ok)

        async def big() -> tuple[int, bytes]:
            return 200, b"y" * 5_000

        await cache.fill(Plan("big", ("posts",), 60, True), token, big)

    asyncio.run(main())
    assert cache.size <= 12_000
    assert "big" not in cache.entries
    assert 49 in cache.entries
    assert 0 not in cache.entries  # least recently used went first


def test_ttl_has_jitter(tmp_path: Path) -> None:
    cache = _cache(tmp_path)

    async def main() -> list[float]:
        token = await cache.token(("posts",))
        out = []
        for i in range(40):
            e = await cache.fill(Plan(i, ("posts",), 100, True), token, _ok)
            out.append(e.expires)
        return out

    expires = asyncio.run(main())
    spread = max(expires) - min(expires)
    assert spread > 1  # not all entries expire together
    assert spread <= 2 * JITTER * 100 + 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("posts", {"posts", "users", "comments", "teams"}),
        ("tags", {"tags"}),
        ("audit", {"audit", "posts", "users", "comments", "teams"}),
    ],
)
def test_scope_follows_relations_both_ways_and_collection_refs(
    name: str, expected: set[str]
) -> None:
    def coll(cid: str, cname: str, fields: list[dict[str, Any]], **rules: Any) -> Any:
        return collection_from_dict({"id": cid, "name": cname, "fields": fields, **rules})

    def rel(fname: str, target: str) -> dict[str, Any]:
        return {"name": fname, "type": "relation", "collectionId": target}

    store: Any = _Store(
        [
            coll("c_teams", "teams", [{"name": "name", "type": "text"}]),
            coll("c_users", "users", [rel("team", "c_teams")]),
            coll("c_posts", "posts", [rel("author", "c_users")]),
            coll("c_comments", "comments", [rel("post", "c_posts")]),
            coll("c_tags", "tags", [{"name": "label", "type": "text"}]),
            coll(
                "c_audit",
                "audit",
                [{"name": "x", "type": "text"}],
                listRule="@collection.posts.id != ''",
            ),
        ]
    )
    scope = scope_of(store, [store.get(name)])
    assert set(scope.tables) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title = 'x'", Refs()),
        ("author.team.name = 'x' && posts_via_author.id != ''", Refs()),
        ("@collection.flags.on ?= true", Refs(frozenset({"flags"}))),
        (
            "@collection.flags:f.on ?= true || @collection.c_x.a.b = 1",
            Refs(frozenset({"flags", "c_x"})),
        ),
        ("@request.auth.team.org.open = true", Refs(auth=True)),
        ("@request.auth.id:isset = true", Refs(auth=True)),
        ("@request.headers.x_a = 'b'", Refs(headers=True)),
        ("created > @now", Refs(clock=True)),
        ("@request.query.a = 1 && @request.method = 'GET' && @request.body.b = 2", Refs()),
        # text is not an identifier: e-mail addresses and look-alikes inside strings
        ("email = 'a@now.com' && note = '@collection.x.y' && h = '@request.headers.a'", Refs()),
        ("title = (", None),
    ],
)
def test_references_come_from_the_compilers_own_parse(text: str, expected: Refs | None) -> None:
    assert references(text) == expected


def _auth_schema() -> Any:
    def coll(cid: str, fields: list[dict[str, Any]], **extra: Any) -> Any:
        body = {"id": "c_" + cid, "name": cid, "fields": fields, **extra}
        return collection_from_dict(body, trusted=True)

    def rel(fname: str, target: str) -> dict[str, Any]:
        return {"name": fname, "type": "relation", "collectionId": "c_" + target}

    text = [{"name": "t", "type": "text"}]
    return _Store(
        [
            coll("orgs", text),
            coll("teams", [rel("org", "orgs")]),
            coll("members", [rel("team", "teams")]),
            coll("users", [rel("team", "teams")], type="auth"),
            coll("_superusers", text, type="auth"),
            coll("docs", text, listRule="@request.auth.team.active = true"),
            coll("people", text),
            coll("flags", [rel("owner", "people")], listRule=""),
            coll("notes", text, listRule=""),
            coll("signals", text, listRule="@request.headers.x_a = 'b'"),
        ]
    )


@pytest.mark.parametrize(
    ("coll", "asker", "filt", "tables", "who"),
    [
        ("docs", "", "", {"docs"}, ""),
        # the asker's relations, forward and backward, at any depth
        ("docs", "users", "", {"docs", "users", "teams", "orgs", "members"}, "c_users:u1"),
        ("notes", "", "@collection.flags.t ?= 'x'", {"notes", "flags", "people"}, ""),
        ("notes", "", "@collection.c_flags:f.t ?= 'x'", {"notes", "flags", "people"}, ""),
        ("notes", "_superusers", "t = 'x'", {"notes", "_superusers"}, "su"),
        # a superuser's filter on their own record is their own answer
        (
            "notes",
            "_superusers",
            "@request.auth.id = 'x'",
            {"notes", "_superusers"},
            "c__superusers:u1",
        ),
    ],
)
def test_plan_covers_every_collection_in_reach(
    tmp_path: Path, coll: str, asker: str, filt: str, tables: set[str], who: str
) -> None:
    store = _auth_schema()
    cache = ResponseCache(
        load_settings(env={}, data_dir=str(tmp_path)), store, LocalVersions(store)
    )
    auth = Auth(store.get(asker), {"id": "u1"}) if asker else Auth()
    plan = cache.plan(store.get(coll), "/x", {"filter": filt} if filt else {}, auth)
    assert plan is not None
    assert (set(plan.tables), plan.key) == (tables, ("/x", who))


@pytest.mark.parametrize(
    ("coll", "asker", "params"),
    [
        ("notes", "", {"filter": "@request.headers.x_a = 'b'"}),
        ("notes", "users", {"filter": "@request.headers.x_a = 'b'"}),
        ("notes", "", {"filter": "t > @todayStart"}),
        ("notes", "", {"sort": "-t,@random"}),
        ("signals", "", {}),  # its own rule reads headers
        ("notes", "", {"filter": "@collection.signals.t ?= 'x'"}),  # a rule in reach does
    ],
)
def test_answers_that_differ_per_request_are_not_planned(
    tmp_path: Path, coll: str, asker: str, params: dict[str, str]
) -> None:
    store = _auth_schema()
    cache = ResponseCache(
        load_settings(env={}, data_dir=str(tmp_path)), store, LocalVersions(store)
    )
    auth = Auth(store.get(asker), {"id": "u1"}) if asker else Auth()
    assert cache.plan(store.get(coll), "/x", params, auth) is None


def test_list_totals_are_kept_apart_per_version_set(tmp_path: Path) -> None:
    """One COUNT statement can come from askers with other version sets; their tokens must
    never be compared (here the second token equals the first although `notes` moved)."""
    text = [{"name": "t", "type": "text"}]
    store: Any = _Store(
        [
            collection_from_dict({"id": "c_n", "name": "notes", "fields": text}),
            collection_from_dict({"id": "c_z", "name": "zz", "type": "auth", "fields": text}),
            collection_from_dict({"id": "c_a", "name": "aa", "type": "auth", "fields": text}),
        ]
    )
    cache = ResponseCache(
        load_settings(env={}, data_dir=str(tmp_path)), store, LocalVersions(store)
    )
    notes = store.get("notes")

    def counted(n: int) -> Any:
        async def compute() -> int:
            return n

        return compute

    async def main() -> tuple[int, int]:
        await cache.written({"zz"})  # tokens over (notes, zz): (0, 1)
        first = await cache.count(notes, Auth(store.get("zz"), {"id": "u"}), "", "SQL", counted(5))
        await cache.written({"notes"})  # tokens over (aa, notes): (0, 1) too
        second = await cache.count(notes, Auth(store.get("aa"), {"id": "u"}), "", "SQL", counted(6))
        return first, second

    assert asyncio.run(main()) == (5, 6)
