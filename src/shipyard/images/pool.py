"""Bounded thumbnail generation: at most `concurrency` images decoded at once per process,
off the event loop, and one generation per thumbnail however many requests ask for it.

A burst of new thumbnail URLs therefore costs `concurrency` decoded images of memory and as
many CPU threads (Pillow releases the GIL while it decodes, resizes and encodes); the rest
wait up to `max_wait` seconds and then get `PoolBusy` (a 503: PocketBase instead serves the
original). Requests for a thumbnail already being made wait for that one result
(single-flight, as PocketBase's singleflight.Group). Across processes two may make the same
thumbnail at once; both write the same bytes, which is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from shipyard.images.errors import PoolBusy

T = TypeVar("T")


class ThumbnailPool:
    """Runs CPU-heavy image work in a bounded thread pool, deduplicated by key."""

    def __init__(self, concurrency: int = 2, max_wait: float = 30.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.max_wait = max_wait
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="thumbs")
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[str, asyncio.Task[Any]] = {}
        self.running = 0  # generations in progress now (for metrics and tests)
        self.waiting = 0  # generations waiting for a slot
        self.started = 0  # generations started since creation

    async def run(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, once per `key` at a time: concurrent callers with
        the same key share its result or its exception. A caller that goes away (a closed
        connection) does not stop the generation the others wait for."""
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._generate(fn, *args))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled():
            task.exception()  # retrieved: no warning when every caller has gone

    async def _generate(self, fn: Callable[..., T], *args: Any) -> T:
        self.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait):  # no lost slot, unlike 3.11's wait_for
                await self._slots.acquire()
        except TimeoutError:
            raise PoolBusy("too many thumbnails are being generated; retry shortly") from None
        finally:
            self.waiting -= 1
        self.running += 1
        self.started += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self.running -= 1
            self._slots.release()

    def close(self, wait: bool = True) -> None:
        """Stop the worker threads once the running generations finish (`wait=False`: do not
        block for them, e.g. from the event loop at shutdown)."""
        self._executor.shutdown(wait=wait)
