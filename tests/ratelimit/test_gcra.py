"""GCRA (tools/ratelimit.py): exact bursts and refills in memory and in a real Redis shared
by several clients at once; a Redis outage decides in memory, logged once, and Redis is
used again when it returns."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from shipyard.tools.ratelimit import MemoryGCRA, RedisGCRA
from shipyard.tools.redisclient import ResilientRedis
from tests.helpers.servers import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_burst_then_one_per_interval() -> None:
    clock = Clock()
    gcra = MemoryGCRA(100, clock)
    got = [gcra.hit("k", 3, 10) for _ in range(5)]
    assert [d.allowed for d in got] == [True, True, True, False, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0, 0]
    # one more every 10/3 s (the Retry-After of the refusal)
    assert got[3].wait == pytest.approx(10 / 3, rel=0.02)
    clock.now += 10 / 3 - 0.1
    assert not gcra.hit("k", 3, 10).allowed
    clock.now += 0.1
    assert gcra.hit("k", 3, 10).allowed
    assert not gcra.hit("k", 3, 10).allowed
    # a quiet key is full again after the period; other keys never shared its budget
    assert gcra.hit("other", 3, 10).remaining == 2
    clock.now += 10
    assert [gcra.hit("k", 3, 10).allowed for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("limit", "period"), [(1, 1), (7, 1), (300, 10), (1000, 1), (10, 3600)])
def test_memory_burst_is_exact(limit: int, period: int) -> None:
    gcra = MemoryGCRA(100, Clock())
    assert sum(gcra.hit("k", limit, period).allowed for _ in range(limit * 2)) == limit


def test_memory_holds_at_most_max_keys() -> None:
    clock = Clock()
    gcra = MemoryGCRA(100, clock)
    for i in range(250):
        gcra.hit(f"k{i}", 5, 10)
        assert len(gcra) <= 100
    clock.now += 11  # everything expired: swept when the bound is reached or a minute passed
    clock.now += 60
    gcra.hit("new", 5, 10)
    assert len(gcra) == 1


async def _redis_gcra(url: str, prefix: str) -> RedisGCRA:
    return RedisGCRA(ResilientRedis(url, 0.5, 0.2), prefix, MemoryGCRA(1000))


def test_redis_bursts_from_two_clients_are_exact(redis_url: str) -> None:
    async def main() -> None:
        prefix = f"t{uuid.uuid4().hex}:"
        a, b = await _redis_gcra(redis_url, prefix), await _redis_gcra(redis_url, prefix)
        try:
            burst = (g.hit("k", 10, 3600) for _ in range(30) for g in (a, b))
            got = await asyncio.gather(*burst)
            assert sum(d.allowed for d in got) == 10
            assert sorted(d.remaining for d in got if d.allowed) == list(range(10))
            refused = [d for d in got if not d.allowed]
            assert all(d.wait == pytest.approx(360, rel=0.02) for d in refused)
            # nothing was decided in memory
            assert len(a.fallback) == 0
            assert not a.local
        finally:
            await a.redis.close()
            await b.redis.close()

    asyncio.run(main())


def test_redis_concurrent_checks_go_in_few_calls_and_stay_exact(redis_url: str) -> None:
    """Checks made while a call is in flight are batched (past MAX_BATCH too), two keys
    with different limits interleaved in each batch, and the counts stay exact."""

    async def main() -> None:
        prefix = f"t{uuid.uuid4().hex}:"
        a, b = await _redis_gcra(redis_url, prefix), await _redis_gcra(redis_url, prefix)
        try:
            hits = [(g, k) for _ in range(300) for g in (a, b) for k in ("k", "j")]
            got = await asyncio.gather(*(g.hit(k, 10 if k == "k" else 500, 3600) for g, k in hits))
            pairs = list(zip((k for _, k in hits), got, strict=True))
            admitted = {k: sum(d.allowed for key, d in pairs if key == k) for k in "kj"}
            assert admitted == {"k": 10, "j": 500}
            remaining = sorted(d.remaining for key, d in pairs if key == "k" and d.allowed)
            assert remaining == list(range(10))
            # 600 checks each: the first alone, the rest in batches of at most 256
            assert a.calls <= 5
            assert b.calls <= 5
            assert len(a.fallback) == 0
            assert len(b.fallback) == 0
        finally:
            await a.redis.close()
            await b.redis.close()

    asyncio.run(main())


def test_redis_cancelled_check_strands_no_other(redis_url: str) -> None:
    """The check whose call is in flight is cancelled (its client hung up): the checks that
    gathered meanwhile are still sent and answered by Redis."""

    async def main() -> None:
        gcra = await _redis_gcra(redis_url, f"t{uuid.uuid4().hex}:")
        try:
            tasks = [asyncio.create_task(gcra.hit("k", 5, 3600)) for _ in range(20)]
            await asyncio.sleep(0)  # all started: the first in flight, the rest waiting
            tasks[0].cancel()
            got = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 10)
            assert sum(d.allowed for d in got) in (4, 5)  # the cancelled one may have counted
            assert len(gcra.fallback) == 0
            assert not gcra.local
            assert (await gcra.hit("k", 5, 3600)).allowed is False
        finally:
            await gcra.redis.close()

    asyncio.run(main())


def test_redis_outage_decides_in_memory_logged_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_outage(redis_server, caplog))


async def _outage(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    gcra = await _redis_gcra(redis_server.url, "out:")
    try:
        assert [(await gcra.hit("k", 2, 3600)).allowed for _ in range(3)] == [True, True, False]
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="shipyard.ratelimit"):
            # per process now: a fresh budget in memory, exact there, no error
            got = [(await gcra.hit("k", 2, 3600)).allowed for _ in range(5)]
            assert got == [True, True, False, False, False]
            assert gcra.local
            redis_server.start()
            # refused from memory (spent there) until a retry reaches Redis, which came
            # back empty: that first Redis decision admits
            deadline = time.monotonic() + 30
            while not (await gcra.hit("k", 2, 3600)).allowed:
                assert gcra.local
                assert time.monotonic() < deadline, "Redis not used again"
                await asyncio.sleep(0.02)
            assert not gcra.local
            got = [(await gcra.hit("k", 2, 3600)).allowed for _ in range(2)]
            assert got == [True, False]
        lines = [r.getMessage() for r in caplog.records if r.name == "shipyard.ratelimit"]
        assert lines == [
            "rate limits are per process until Redis is reachable again",
            "rate limits are shared through Redis again",
        ]
    finally:
        await gcra.redis.close()
