"""Cron schedules: each tick becomes one job, however many workers run the scheduler.

Every worker process runs `CronScheduler`. At each tick of a schedule (UTC) it enqueues the
cron's job with the unique key `cron:<name>:<tick>`, kept for as long as the job row
exists: the first worker's insert wins and every other worker's insert of the same tick is
a no-op. A tick missed while no worker ran is still fired if it is at most `catch_up`
seconds old (a restart around 03:00 still runs the 03:00 job); older ticks are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.kernel.functions import CronJob
from shipyard.tools.cronexpr import latest_tick, next_tick

log = logging.getLogger("shipyard.cron")

Enqueue = Callable[[CronJob, float], Awaitable[Any]]


class CronScheduler:
    def __init__(self, crons: list[CronJob], enqueue: Enqueue, catch_up: float = 300.0) -> None:
        self.crons = crons
        self.enqueue = enqueue
        self.catch_up = catch_up
        self.fired: dict[str, float] = {}

    async def tick(self, now: float | None = None) -> int:
        """Enqueue every due tick not yet enqueued by this process; returns how many."""
        now = time.time() if now is None else now
        n = 0
        for cj in self.crons:
            try:  # one cron's trouble must not stop the others
                t = latest_tick(cj.schedule, now)
                if now - t > self.catch_up or self.fired.get(cj.name) == t:
                    continue
                await self.enqueue(cj, t)
            except Exception as exc:  # the database is away: try again next round
                log.warning("could not enqueue cron %s: %s", cj.name, exc)
                continue
            self.fired[cj.name] = t
            n += 1
        return n

    async def run(self) -> None:
        while True:
            await self.tick()
            now = time.time()
            wake = min((next_tick(c.schedule, now) for c in self.crons), default=now + 60)
            await asyncio.sleep(min(max(wake - now, 0.05), 60.0))
