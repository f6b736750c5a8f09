"""Cron (core/cron.py): which schedules are accepted, tick arithmetic, and once-per-tick
enqueueing however many schedulers run — on real SQLite and real PostgreSQL.

Several `Services` opened on one database stand for several worker processes; schedulers
tick at explicit times so tick boundaries are exact.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.jobs.cron import CronScheduler
from shipyard.kernel.functions import Functions, FunctionsError
from shipyard.services import Services
from shipyard.settings import Settings, load_settings
from shipyard.tools.cronexpr import CronError, check_schedule, latest_tick, next_tick

HOOKS = """
from shipyard.functions import Functions

functions = Functions()


@functions.cron("*/5 * * * *", name="every5")
async def every5(ctx, args):
    return {"tick": args["tick"], "attempt": ctx.job.attempt}


@functions.cron("0 3 * * *", name="nightly")
async def nightly(ctx, args):
    return args


@functions.cron("* * * * *", name="minutely")
async def minutely(ctx, args):
    return args["tick"]
"""


def at(text: str) -> float:
    """Epoch seconds of a UTC time like '2020-03-10 03:04:30'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


PAST = at("2020-03-11 00:00:00")  # the explicit ticks below are all before this


# ---------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * * *",
        "0 3 * * 1-5",
        "15,45 8-18 * 1,6 *",
        "  30 2 1 * *  ",
        "0 0 29 2 *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ],
)
def test_five_field_schedules_and_macros_register(schedule: str) -> None:
    functions = Functions()

    @functions.cron(schedule, name="job")
    def job(ctx: Any, args: Any) -> None:
        return None

    assert functions.crons["job"].schedule == schedule
    assert "cron:job" in functions.jobs
    now = time.time()
    assert latest_tick(schedule, now) <= now < next_tick(schedule, now)


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * * *",  # six fields (seconds): not standard cron
        "0 */5 * * * *",
        "* * * *",
        "garbage",
        "",
        "61 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "* * * * 8",
        "@reboot",
        "@every 5m",
        "0 0 30 2 *",  # valid fields, but there is no February 30th: never fires
        "0 0 31 4 *",
    ],
)
def test_bad_schedules_are_refused_at_registration(schedule: str) -> None:
    functions = Functions()
    with pytest.raises(FunctionsError) as info:

        @functions.cron(schedule, name="job")
        def job(ctx: Any, args: Any) -> None:
            return None

    assert repr(schedule) in str(info.value)
    assert functions.crons == {}
    assert functions.jobs == {}
    with pytest.raises(CronError):
        check_schedule(schedule)


def test_ticks_are_utc_and_a_tick_time_is_its_own_latest_tick() -> None:
    now = at("2020-03-10 03:04:30")
    assert latest_tick("*/5 * * * *", now) == at("2020-03-10 03:00:00")
    assert next_tick("*/5 * * * *", now) == at("2020-03-10 03:05:00")
    assert latest_tick("0 3 * * *", now) == at("2020-03-10 03:00:00")
    assert latest_tick("0 3 * * *", at("2020-03-10 02:59:59")) == at("2020-03-09 03:00:00")
    assert latest_tick("@hourly", now) == at("2020-03-10 03:00:00")
    assert latest_tick("@midnight", now) == at("2020-03-10 00:00:00")
    assert next_tick("@daily", now) == at("2020-03-11 00:00:00")
    tick = at("2020-03-10 03:05:00")
    assert latest_tick("*/5 * * * *", tick) == tick
    assert next_tick("*/5 * * * *", tick) == at("2020-03-10 03:10:00")


# ---------------------------------------------------------------------- scheduling


@pytest.fixture
def csettings(database_url: str, tmp_path: Path) -> Settings:
    hooks = tmp_path / "cron_hooks.py"
    hooks.write_text(HOOKS)
    return load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        hooks=str(hooks),
        jobs_lease=3,
        jobs_poll_interval=0.05,
        jobs_shutdown_grace=0.5,
    )


def scheduler(svc: Services, *names: str, catch_up: float = 300.0) -> CronScheduler:
    crons = [c for n, c in svc.jobs.functions.crons.items() if not names or n in names]
    return CronScheduler(crons, svc.jobs.enqueue_cron, catch_up=catch_up)


async def cron_jobs(svc: Services, name: str, before: float | None = None) -> list[Any]:
    """The cron's jobs by tick; with `before`, only ticks before then (the test's own
    ticks, not those that a running worker's scheduler fires on the real clock)."""
    jobs, _ = await svc.jobs.queue.list(kind=f"cron:{name}", limit=1000)
    return sorted(
        (j for j in jobs if before is None or j.scheduled_at < before),
        key=lambda j: j.scheduled_at,
    )


async def wait_completed(svc: Services, job_id: int, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await svc.jobs.queue.get(job_id)
        if job is not None and job.state == "completed":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not complete: {job}")


def test_two_schedulers_enqueue_exactly_one_job_per_tick(csettings: Settings) -> None:
    """Two processes' schedulers tick the same schedule, at the same moments and at
    different ones, before and after the tick's job has run: one job per tick."""

    async def main() -> None:
        a = await Services.open(csettings)
        b = await Services.open(csettings)
        try:
            sa, sb = scheduler(a, "every5"), scheduler(b, "every5")
            # both at once, repeatedly, a few seconds after the 03:05 tick
            t1 = at("2020-03-10 03:05:00")

            async def ticking(s: CronScheduler) -> int:
                return sum([await s.tick(now=t1 + 2 + i * 0.5) for i in range(5)])

            # each fires the tick once; one of the two inserts wins
            assert await asyncio.gather(ticking(sa), ticking(sb)) == [1, 1]
            (job,) = await cron_jobs(a, "every5", PAST)
            assert job.unique_key == f"cron:every5:{int(t1)}"
            assert job.args == {"tick": "2020-03-10 03:05:00.000Z", "schedule": "*/5 * * * *"}
            assert job.scheduled_at == t1
            # the tick's job runs and completes…
            a.jobs.start_worker()
            done = await wait_completed(a, job.id)
            assert done.result == {"tick": "2020-03-10 03:05:00.000Z", "attempt": 1}
            # …and a third process starting now still does not fire that tick again
            late = scheduler(b, "every5")
            await late.tick(now=t1 + 200)
            assert [j.id for j in await cron_jobs(a, "every5", PAST)] == [job.id]
            # the next tick is a new job, once
            t2 = at("2020-03-10 03:10:00")
            await asyncio.gather(sa.tick(now=t2 + 1), sb.tick(now=t2 + 1), late.tick(now=t2))
            jobs = await cron_jobs(a, "every5", PAST)
            assert [j.scheduled_at for j in jobs] == [t1, t2]
            await wait_completed(a, jobs[1].id)
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


def test_running_workers_fire_the_current_tick_once(csettings: Settings) -> None:
    """Two real workers (their own cron loops) start within the catch-up window of the
    current minute: its job is enqueued once and runs once."""

    async def main() -> None:
        a = await Services.open(csettings)
        b = await Services.open(csettings)
        try:
            start = time.time()
            a.jobs.start_worker()
            b.jobs.start_worker()
            deadline = time.monotonic() + 15
            done: list[Any] = []
            while not done and time.monotonic() < deadline:
                done = [j for j in await cron_jobs(a, "minutely") if j.state == "completed"]
                await asyncio.sleep(0.05)
            end = time.time()
            jobs = await cron_jobs(a, "minutely")
            # the ticks seen while the test ran: usually one, two across a minute boundary
            seen = {latest_tick("* * * * *", start), latest_tick("* * * * *", end)}
            ticks = [j.scheduled_at for j in jobs]
            assert done
            assert set(ticks) <= seen
            assert len(ticks) == len(set(ticks))  # never two jobs for one tick
            assert all(j.attempt == 1 for j in jobs)
            first = done[0]
            assert first.result == first.args["tick"]  # it ran, once
            # the other schedules' ticks are older than the catch-up window, or fired once
            for name in ("every5", "nightly"):
                for j in await cron_jobs(a, name):
                    assert start - j.scheduled_at <= 300
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


def test_missed_ticks_are_caught_up_only_within_the_window(csettings: Settings) -> None:
    async def main() -> None:
        svc = await Services.open(csettings)
        try:
            tick = at("2020-03-10 03:00:00")
            # a worker starting 4 minutes after 03:00 still runs the nightly job
            assert await scheduler(svc, "nightly").tick(now=tick + 240) == 1
            # one restarting 6 minutes after a tick does not run a tick that old
            other = at("2020-03-11 03:00:00")
            assert await scheduler(svc, "nightly").tick(now=other + 360) == 0
            # a custom window
            assert await scheduler(svc, "nightly", catch_up=600).tick(now=other + 360) == 1
            jobs = await cron_jobs(svc, "nightly")
            assert [j.scheduled_at for j in jobs] == [tick, other]
            # a scheduler only ever fires the latest tick: after a week away, nothing
            assert await scheduler(svc, "nightly").tick(now=other + 7 * 86400 + 301 * 60) == 0
        finally:
            await svc.close()

    asyncio.run(main())
