"""Version lookups in Redis are auto-batched: concurrent lookups share one HMGET, each gets
what a lone lookup would have got, and a lookup made after a write sees it even while an
older call (made before the write) is still in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from shipyard.cache.cache import RedisVersions
from shipyard.tools.redisclient import ResilientRedis


def _versions(url: str, namespace: str) -> RedisVersions:
    store: Any = SimpleNamespace(version=1, data_version=0)
    return RedisVersions(store, ResilientRedis(url, 0.5, 0.2), namespace)


TABLES = [("posts",), ("posts", "users"), ("tags",), ("users",), ("posts", "tags", "users")]


def test_concurrent_lookups_share_calls_and_answer_as_alone(redis_url: str) -> None:
    async def main() -> None:
        ns = "t" + uuid.uuid4().hex
        a, b = _versions(redis_url, ns), _versions(redis_url, ns)
        try:
            asks = [TABLES[i % len(TABLES)] for i in range(60)]
            got = await asyncio.gather(*(a.token(t) for t in asks))
            # the first alone, the other 59 together while it was in flight
            assert a.reads.calls < len(asks)
            assert a.reads.calls <= 3
            assert None not in got
            calls = a.reads.calls
            for tables, token in zip(asks, got, strict=True):
                assert token == await a.token(tables)  # a lone lookup, one call each
                assert token == await b.token(tables)  # the same versions in every process
            assert a.reads.calls == calls + len(asks)
        finally:
            await a.redis.close()
            await b.redis.close()

    asyncio.run(main())


def test_a_write_between_two_batches_is_seen(redis_url: str) -> None:
    """A lookup made after another process's write committed, while a call made before it
    is still in flight, waits for the next call and sees the write."""

    async def main() -> None:
        ns = "t" + uuid.uuid4().hex
        a, writer = _versions(redis_url, ns), _versions(redis_url, ns)
        first_done = asyncio.Event()
        release = asyncio.Event()
        send = a.reads.send

        async def slow_first(batch: list[tuple[str, ...]]) -> Sequence[Any] | None:
            got = await send(batch)
            if not first_done.is_set():  # the first reply is slow to arrive
                first_done.set()
                await release.wait()
            return got

        a.reads.send = slow_first
        try:
            before = await writer.token(("posts", "users"))
            old = asyncio.create_task(a.token(("posts", "users")))
            await first_done.wait()  # read Redis before the write
            await writer.bump({"posts"})  # committed and answered
            new = [asyncio.create_task(a.token(t)) for t in (("posts", "users"), ("posts",))]
            await asyncio.sleep(0)  # both asked while the old call is still in flight
            release.set()
            got_old = await old
            got_new, got_posts = await asyncio.gather(*new)
            assert a.reads.calls == 2  # the old call alone, then the two together
            assert got_old == before  # asked before the write: the old versions
            assert got_new != got_old
            # the shared part; the writer's own counters (its token's first item) moved too
            assert got_new[1:] == (await writer.token(("posts", "users")))[1:]
            assert got_posts[1:] == (await writer.token(("posts",)))[1:]
        finally:
            await a.redis.close()
            await writer.redis.close()

    asyncio.run(main())
