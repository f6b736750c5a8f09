"""What both log writers share: items waiting in memory, written in batches by a
background task. `add` is the hot path (one append; past `max_items` the item is dropped
and counted, never waited for); `close` stops the task and writes what is left."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Generic, TypeVar

from shipyard.tools.metrics import Counter

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, max_items: int, interval: float) -> None:
        self.max_items = max_items
        self.interval = interval
        self.dropped = 0  # items not written (the buffer full, or a failed write)
        self.written = 0
        self._items: list[T] = []
        self._task: asyncio.Task[None] | None = None
        # `shipyard_log_entries_total{log, result}`, brought up to date after each batch
        self.counter: Counter | None = None
        self.label = ""
        self._reported = (0, 0)

    def report(self) -> None:
        if self.counter is not None:
            written, dropped = self._reported
            self.counter.inc((self.label, "written"), self.written - written)
            self.counter.inc((self.label, "dropped"), self.dropped - dropped)
            self._reported = (self.written, self.dropped)

    def add(self, item: T) -> None:
        if len(self._items) >= self.max_items:
            self.dropped += 1
            return
        self._items.append(item)

    def take(self) -> list[T]:
        """Every waiting item, leaving none."""
        items, self._items = self._items, []
        return items

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._items:
                await self.write_batch()
            self.report()

    async def write_batch(self) -> None:
        """Write what `take()` gives; never raises."""
        raise NotImplementedError

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.write_batch()
        self.report()
