"""The thumbnail pool: never more generations at once than its bound, one generation per
key however many ask, and a clear PoolBusy when no slot frees up in time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shipyard.images import PoolBusy, ThumbnailPool, demo_images, thumbnail


class Gate:
    """A blocking job that records how many copies of it run at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def job(self, value: str) -> str:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.open.wait(30), "the test never opened the gate"
            return value.upper()
        finally:
            with self.lock:
                self.running -= 1


async def _until(condition: object, what: str) -> None:
    for _ in range(3000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_a_burst_runs_at_most_the_bound() -> None:
    async def main() -> list[str]:
        pool = ThumbnailPool(concurrency=2)
        gate = Gate()
        tasks = [asyncio.create_task(pool.run(f"k{i}", gate.job, f"v{i}")) for i in range(8)]
        await _until(lambda: gate.running == 2, "two running")
        assert pool.running == 2
        assert gate.calls == 2
        gate.open.set()
        results = await asyncio.gather(*tasks)
        assert gate.peak == 2
        assert gate.calls == 8
        assert pool.started == 8
        pool.close()
        return results

    assert asyncio.run(main()) == [f"V{i}" for i in range(8)]


def test_concurrent_requests_for_one_thumbnail_share_one_generation() -> None:
    async def main() -> None:
        pool = ThumbnailPool(concurrency=4)
        gate = Gate()
        tasks = [asyncio.create_task(pool.run("same", gate.job, "x")) for _ in range(10)]
        await _until(lambda: gate.running == 1, "one running")
        gate.open.set()
        assert await asyncio.gather(*tasks) == ["X"] * 10
        assert gate.calls == 1
        # once finished, the key may be generated again (e.g. after the stored one was deleted)
        assert await pool.run("same", gate.job, "y") == "Y"
        assert gate.calls == 2
        pool.close()

    asyncio.run(main())


def test_a_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    calls = []

    def broken() -> bytes:
        calls.append(1)
        return thumbnail(b"not an image", "10x10", "png")

    async def main() -> None:
        pool = ThumbnailPool(concurrency=1)
        results = await asyncio.gather(
            *(pool.run("bad", broken) for _ in range(3)), return_exceptions=True
        )
        assert all(type(r).__name__ == "UnsupportedImage" for r in results)
        with pytest.raises(Exception, match="not an image"):
            await pool.run("bad", broken)
        pool.close()

    asyncio.run(main())
    assert len(calls) == 2


def test_a_caller_going_away_does_not_cancel_the_shared_generation() -> None:
    async def main() -> None:
        pool = ThumbnailPool(concurrency=1)
        gate = Gate()
        first = asyncio.create_task(pool.run("k", gate.job, "v"))
        second = asyncio.create_task(pool.run("k", gate.job, "v"))
        await _until(lambda: gate.running == 1, "running")
        first.cancel()
        gate.open.set()
        assert await second == "V"
        assert gate.calls == 1
        pool.close()

    asyncio.run(main())


def test_no_free_slot_within_the_wait_is_pool_busy() -> None:
    async def main() -> None:
        pool = ThumbnailPool(concurrency=1, max_wait=0.05)
        gate = Gate()
        busy = asyncio.create_task(pool.run("a", gate.job, "a"))
        await _until(lambda: gate.running == 1, "running")
        with pytest.raises(PoolBusy) as caught:
            await pool.run("b", gate.job, "b")
        assert caught.value.status == 503
        gate.open.set()
        assert await busy == "A"
        pool.close()

    asyncio.run(main())


def test_real_thumbnails_through_the_pool() -> None:
    ((_, photo),) = demo_images(1)

    async def main() -> list[bytes]:
        pool = ThumbnailPool(concurrency=2)
        specs = ["100x100", "320x0", "640x0", "100x100f"]
        out = await asyncio.gather(*(pool.run(s, thumbnail, photo, s, "webp") for s in specs))
        pool.close()
        return out

    assert all(data[8:12] == b"WEBP" for data in asyncio.run(main()))
