"""Cron schedules: each tick becomes one job, however many workers run the scheduler.

Every worker process runs `CronScheduler`. At each tick of a schedule (UTC) it enqueues the
cron's job with the unique key `cron:<name>:<tick>`, kept for as long as the job row
exists: the first worker's insert wins and every other worker's insert of the same tick is
a no-op. A tick missed while no worker ran is still fired if it is at most `catch_up`
seconds old (a restart around 03:00 still runs the 03:00 job); older ticks are skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from croniter import croniter

from shipyard.kernel.functions import CronJob, FunctionsError

log = logging.getLogger("shipyard.cron")

_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def check_schedule(schedule: str, what: str = "cron") -> None:
    """Accept standard 5-field expressions and the @hourly-style macros only."""
    text = schedule.strip()
    if text in _MACROS:
        return
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise FunctionsError(
            f"{what}: {schedule!r} is not a 5-field cron expression (minute hour day month weekday)"
        )
    try:  # valid but impossible (February 30th) would break the scheduler at every tick
        next_tick(text, time.time())
    except Exception:
        raise FunctionsError(f"{what}: {schedule!r} never fires") from None


def _expr(schedule: str) -> str:
    return "0 0 * * *" if schedule.strip() == "@midnight" else schedule.strip()


def latest_tick(schedule: str, now: float) -> float:
    """The most recent tick at or before `now` (epoch seconds, UTC)."""
    base = dt.datetime.fromtimestamp(now, dt.UTC)
    it = croniter(_expr(schedule), base + dt.timedelta(microseconds=1))
    return float(it.get_prev(float))


def next_tick(schedule: str, now: float) -> float:
    base = dt.datetime.fromtimestamp(now, dt.UTC)
    return float(croniter(_expr(schedule), base).get_next(float))


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
