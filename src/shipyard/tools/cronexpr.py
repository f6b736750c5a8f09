"""Cron expressions: validation and tick arithmetic in UTC (5 fields or @hourly-style
macros), on croniter."""

from __future__ import annotations

import datetime as dt
import time

from croniter import croniter


class CronError(ValueError):
    """Not a usable schedule."""


_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def check_schedule(schedule: str, what: str = "cron") -> None:
    """Accept standard 5-field expressions and the @hourly-style macros only."""
    text = schedule.strip()
    if text in _MACROS:
        return
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise CronError(
            f"{what}: {schedule!r} is not a 5-field cron expression (minute hour day month weekday)"
        )
    try:  # valid but impossible (February 30th) would break the scheduler at every tick
        next_tick(text, time.time())
    except Exception:
        raise CronError(f"{what}: {schedule!r} never fires") from None


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
