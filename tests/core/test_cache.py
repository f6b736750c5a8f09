"""ResponseCache mechanics that HTTP tests cannot show: one recompute per key under a
stampede, memory bounds, TTL jitter, and the dependency scope of a collection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.cache import JITTER, Plan, ResponseCache, scope_of
from shipyard.core.collections import collection_from_dict
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
    from shipyard.core.cache import LocalVersions

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
    assert hit is not None and after is None


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
    assert 49 in cache.entries and 0 not in cache.entries  # least recently used went first


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
    scope = scope_of(store, store.get(name))
    assert set(scope.tables) == expected
