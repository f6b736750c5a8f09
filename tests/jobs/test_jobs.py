"""The job system of a process (core/jobs.py) with a team's hooks file, on real SQLite and
real PostgreSQL: transactional enqueue, retries, dead letters, options per job type, leases,
isolation.

The hooks below are written to the test's directory and named by the `hooks` setting, as a
team would. Handlers write what they did to a `trace` table, so tests assert on the database
the way an operator would look at it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from shipyard.jobs.jobs import LeaseLost
from shipyard.kernel.errors import ApiError
from shipyard.kernel.functions import Functions, FunctionsError
from shipyard.records.context import RequestContext
from shipyard.services import Services
from shipyard.settings import Settings, load_settings
from shipyard.tools.worker import AlreadyCompleted
from tests.helpers.wait import wait_until_async

HOOKS = """
import asyncio, ctypes, json, os, time
from shipyard.functions import Discard, Functions

functions = Functions()


async def trace(ctx, event, data=None):
    await ctx.db.execute(
        "INSERT INTO trace (job_id, kind, attempt, event, at, worker, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ctx.job.id, ctx.job.kind, ctx.job.attempt, event, time.time(), ctx.job.worker,
         json.dumps(data)),
    )


@functions.job("ok")
async def ok(ctx, args):
    await trace(ctx, "run", args)
    return {"echo": args}


@functions.job("flaky", max_attempts=4, backoff_base=0.05)
async def flaky(ctx, args):
    job = ctx.job
    await trace(ctx, "run", {
        "scheduled_at": job.scheduled_at,
        "attempted_at": job.attempted_at,
        "previous_failure_at": job.errors[-1]["at"] if job.errors else None,
    })
    if job.attempt <= args["fail_until"]:
        raise RuntimeError(f"flaky failure {job.attempt}")
    return "recovered"


@functions.job("poison", max_attempts=5)
async def poison(ctx, args):
    await trace(ctx, "run")
    raise Discard("cannot use this payload")


@functions.job("sleepy", timeout=0.3, max_attempts=2, backoff_base=0.05)
async def sleepy(ctx, args):
    await trace(ctx, "start")
    await asyncio.sleep(args["sleep"])
    await trace(ctx, "end")


@functions.job("sleepy_sync", timeout=0.3, max_attempts=1)
def sleepy_sync(ctx, args):
    time.sleep(0.8)
    return "too late"


@functions.job("long", timeout=60)
async def long(ctx, args):
    await trace(ctx, "start")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await trace(ctx, "stopped")
        raise


@functions.job("quits", max_attempts=1)
async def quits(ctx, args):
    raise SystemExit(3)


@functions.job("quits_sync", max_attempts=1)
def quits_sync(ctx, args):
    import sys
    sys.exit("bye")


@functions.job("mail", queue="mail")
async def mail(ctx, args):
    await trace(ctx, "run", args)


@functions.job("single", concurrency=1)
async def single(ctx, args):
    await trace(ctx, "start")
    await asyncio.sleep(0.1)
    await trace(ctx, "end")


@functions.job("effect")
async def effect(ctx, args):
    async with ctx.transaction() as tx:
        await tx.execute("INSERT INTO effects (job_id, attempt) VALUES (?, ?)",
                         (ctx.job.id, ctx.job.attempt))


@functions.on_record("posts", "create", "delete")
async def notify(ctx, event):
    await trace(ctx, "event", event)


@functions.on_record("posts", "create", when="before_commit")
async def guard(ctx, event):
    await ctx.enqueue("ok", {"from": "guard"})  # in the write's transaction
    if event["record"]["title"] == "reject":
        raise ctx.reject("Rejected by the guard.")


@functions.on_record("authors", "delete", when="before_commit")
async def keep_locked(ctx, event):
    if event["record"]["name"] == "locked":
        raise ctx.reject("This author is locked.")


@functions.job("iso_ok", isolated=True, memory_mb=256, timeout=10)
def iso_ok(ctx, args):
    print("chatter on stdout")
    return {"sum": args["a"] + args["b"], "attempt": ctx.job["attempt"], "pid": os.getpid()}


@functions.job("iso_loop", isolated=True, timeout=1, max_attempts=1)
def iso_loop(ctx, args):
    while True:
        pass


@functions.job("iso_mem", isolated=True, memory_mb=128, max_attempts=1)
def iso_mem(ctx, args):
    return len(bytearray(1024 * 1024 * 1024))


@functions.job("iso_segv", isolated=True, max_attempts=1)
def iso_segv(ctx, args):
    ctypes.string_at(0)


@functions.job("iso_exit", isolated=True, max_attempts=1)
def iso_exit(ctx, args):
    os._exit(7)


@functions.job("iso_raise", isolated=True, max_attempts=1)
def iso_raise(ctx, args):
    raise KeyError("missing-thing")
"""

Body = Callable[[Services], Awaitable[Any]]


@pytest.fixture
def jsettings(database_url: str, tmp_path: Path) -> Settings:
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    return load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        hooks=str(hooks),
        jobs_lease=3,
        jobs_poll_interval=0.05,
        jobs_shutdown_grace=0.5,
        jobs_backoff_base=0.05,
    )


async def open_services(settings: Settings) -> Services:
    svc = await Services.open(settings)
    for ddl in (
        "CREATE TABLE IF NOT EXISTS trace (job_id INTEGER, kind TEXT, attempt INTEGER, "
        "event TEXT, at DOUBLE PRECISION, worker TEXT, data TEXT)",
        "CREATE TABLE IF NOT EXISTS effects (job_id INTEGER, attempt INTEGER)",
    ):
        await svc.db.execute(ddl)
    return svc


def run(settings: Settings, body: Body) -> Any:
    async def main() -> Any:
        svc = await open_services(settings)
        try:
            return await body(svc)
        finally:
            await svc.close()

    return asyncio.run(main())


async def trace(svc: Services, job_id: int | None = None) -> list[dict[str, Any]]:
    where, args = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    rows = await svc.db.fetchall(
        f"SELECT job_id, kind, attempt, event, at, worker, data FROM trace {where} "
        "ORDER BY at, attempt",
        args,
    )
    keys = ("job_id", "kind", "attempt", "event", "at", "worker", "data")
    return [{**dict(zip(keys, r, strict=True)), "data": orjson.loads(r[6])} for r in rows]


async def wait_state(svc: Services, job_id: int, *states: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = await svc.jobs.queue.get(job_id)
        assert job is not None
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.state}, not {states}: {job}")
        await asyncio.sleep(0.02)


async def jobs_of(svc: Services, kind: str) -> list[Any]:
    jobs, _ = await svc.jobs.queue.list(kind=kind, limit=1000)
    return jobs


def superuser(svc: Services) -> RequestContext:
    return RequestContext.system(svc.store.require("_superusers"), "tests")


# ---------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"concurrency": 0},
        {"memory_mb": "512"},
        {"timeout": -1},
        {"timeout": float("inf")},
        {"backoff_base": 0},
        {"priority": "high"},
        {"priority": 1.5},
        {"queue": "bad queue"},
        {"queue": 5},
        {"isolated": "yes"},
        {"retries": 3},  # no such option
    ],
)
def test_bad_job_options_are_refused_at_registration(options: dict[str, Any]) -> None:
    functions = Functions()
    with pytest.raises(FunctionsError):

        @functions.job("resize", **options)
        def resize(ctx: Any, args: Any) -> None:
            return None

    assert functions.jobs == {}


def test_names_are_registered_once() -> None:
    functions = Functions()
    functions.job("resize", priority=-1, timeout=2.5, isolated=True)(lambda ctx, a: None)
    assert functions.jobs["resize"].options.priority == -1
    with pytest.raises(FunctionsError):
        functions.job("resize")(lambda ctx, a: None)
    with pytest.raises(FunctionsError):
        functions.job("bad name!")(lambda ctx, a: None)


# ---------------------------------------------------------------------- 1. transactional enqueue


def test_enqueue_in_a_transaction_exists_only_if_it_commits(jsettings: Settings) -> None:
    class Boom(Exception):
        pass

    async def body(svc: Services) -> None:
        async with svc.db.transaction() as tx:
            kept = await svc.jobs.enqueue("ok", {"n": 1}, tx=tx)
        lost: list[int] = []

        async def enqueue_then_fail() -> None:
            async with svc.db.transaction() as tx:
                lost.append((await svc.jobs.enqueue("ok", {"n": 2}, tx=tx)).id)
                raise Boom()

        with pytest.raises(Boom):
            await enqueue_then_fail()
        assert await svc.jobs.queue.get(lost[0]) is None
        assert [j.id for j in await jobs_of(svc, "ok")] == [kept.id]
        svc.jobs.start_worker()
        job = await wait_state(svc, kept.id, "completed")
        assert job.result == {"echo": {"n": 1}}
        assert [t["data"] for t in await trace(svc)] == [{"n": 1}]
        with pytest.raises(ApiError) as info:
            await svc.jobs.enqueue("no-such-kind", {})
        assert info.value.status == 400

    run(jsettings, body)


def test_record_writes_enqueue_event_jobs_only_when_they_commit(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        su = superuser(svc)
        authors = await svc.store.create(
            {"name": "authors", "fields": [{"name": "name", "type": "text"}]}
        )
        posts = await svc.store.create(
            {
                "name": "posts",
                "fields": [
                    {"name": "title", "type": "text", "required": True},
                    {
                        "name": "author",
                        "type": "relation",
                        "collectionId": authors.id,
                        "cascadeDelete": True,
                        "maxSelect": 1,
                    },
                ],
            }
        )
        locked = await svc.records.create(authors, {"name": "locked"}, su)
        # committed: the event job exists, with the event, and runs
        rec = await svc.records.create(posts, {"title": "hello", "author": locked["id"]}, su)
        (event_job,) = await jobs_of(svc, "event:posts.notify")
        assert event_job.args["type"] == "record.create"
        assert event_job.args["record"]["id"] == rec["id"]
        assert event_job.meta == {"event": event_job.args["id"]}
        assert len(await jobs_of(svc, "ok")) == 1  # the guard's, committed with the write
        # validation fails: nothing is written, nothing is enqueued
        with pytest.raises(ApiError) as info:
            await svc.records.create(posts, {"title": ""}, su)
        assert info.value.status == 400
        # the guard enqueues, then refuses: its job goes with the rolled-back write
        with pytest.raises(ApiError) as info:
            await svc.records.create(posts, {"title": "reject"}, su)
        assert info.value.status == 400
        assert info.value.message == "Rejected by the guard."
        # deleting the author cascades to the post (its delete event is enqueued), then the
        # author's own handler refuses: the post's event job is rolled back with everything
        with pytest.raises(ApiError) as info:
            await svc.records.delete(authors, locked["id"], su)
        assert info.value.message == "This author is locked."
        assert await svc.records.view(posts, rec["id"], su) is not None
        assert [j.id for j in await jobs_of(svc, "event:posts.notify")] == [event_job.id]
        assert len(await jobs_of(svc, "ok")) == 1
        svc.jobs.start_worker()
        await wait_state(svc, event_job.id, "completed")
        events = [t for t in await trace(svc) if t["event"] == "event"]
        assert [(t["data"]["type"], t["data"]["record"]["title"]) for t in events] == [
            ("record.create", "hello")
        ]

    run(jsettings, body)


# ---------------------------------------------------------------------- 2. retries


def test_failing_handler_retries_with_growing_backoff_then_is_discarded(
    jsettings: Settings,
) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        e = await svc.jobs.enqueue("flaky", {"fail_until": 99})
        job = await wait_state(svc, e.id, "discarded")
        assert job.attempt == job.max_attempts == 4
        assert [x["attempt"] for x in job.errors] == [1, 2, 3, 4]
        assert [x["error"].splitlines()[0] for x in job.errors] == [
            f"RuntimeError: flaky failure {i}" for i in (1, 2, 3, 4)
        ]
        runs = [t["data"] for t in await trace(svc, e.id)]
        assert len(runs) == 4
        gaps = []
        for n, r in enumerate(runs[1:], start=1):
            # retry n was scheduled base * 2^(n-1) ± 20% after failure n, and not run early
            gap = r["scheduled_at"] - r["previous_failure_at"]
            nominal = 0.05 * 2 ** (n - 1)
            assert nominal * 0.8 - 1e-6 <= gap <= nominal * 1.2 + 1e-6, (n, gap)
            assert r["attempted_at"] >= r["scheduled_at"]
            gaps.append(gap)
        assert gaps == sorted(gaps)
        assert len(set(gaps)) == 3

    run(jsettings, body)


def test_retried_handler_that_recovers_completes(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        e = await svc.jobs.enqueue("flaky", {"fail_until": 2})
        job = await wait_state(svc, e.id, "completed")
        assert job.attempt == 3
        assert job.result == "recovered"
        assert len(job.errors) == 2

    run(jsettings, body)


def test_discard_dead_letters_at_once(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        e = await svc.jobs.enqueue("poison", {})
        job = await wait_state(svc, e.id, "discarded")
        assert job.attempt == 1
        assert job.max_attempts == 5
        assert "Discard: cannot use this payload" in job.errors[0]["error"]
        assert len(await trace(svc, e.id)) == 1

    run(jsettings, body)


def test_retry_of_a_discarded_job_runs_it_once_more(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        w = svc.jobs.start_worker()
        e = await svc.jobs.enqueue("flaky", {"fail_until": 4}, max_attempts=2)
        job = await wait_state(svc, e.id, "discarded")
        assert job.attempt == 2
        # the state right after: "available", or already taken by the worker (PG NOTIFY)
        assert await svc.jobs.queue.retry(e.id) in ("available", "running", "discarded")
        w.wake()
        job = await wait_state(svc, e.id, "discarded", "completed")
        assert job.state == "discarded"
        assert job.attempt == 3  # exactly one more attempt
        assert [x["attempt"] for x in job.errors] == [1, 2, 3]  # earlier errors kept
        assert await svc.jobs.queue.retry(e.id) in ("available", "running", "discarded")
        w.wake()
        job = await wait_state(svc, e.id, "discarded", "completed")
        assert job.state == "discarded"
        assert job.attempt == 4
        assert len(await trace(svc, e.id)) == 4

    run(jsettings, body)


def test_cancelled_pending_job_never_runs(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        w = svc.jobs.start_worker()
        e = await svc.jobs.enqueue("ok", {"n": 1}, delay=1.0)
        assert (await svc.jobs.queue.get(e.id)).state == "scheduled"  # type: ignore[union-attr]
        assert await svc.jobs.queue.cancel(e.id) == "cancelled"
        await asyncio.sleep(1.1)  # past its due time
        later = await svc.jobs.enqueue("ok", {"n": 2})
        await wait_state(svc, later.id, "completed")
        await w.drain(10)
        job = await svc.jobs.queue.get(e.id)
        assert job is not None
        assert job.state == "cancelled"
        assert job.attempt == 0
        assert [t["job_id"] for t in await trace(svc)] == [later.id]

    run(jsettings, body)


def test_cancel_of_a_running_job_stops_it(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        e = await svc.jobs.enqueue("long", {})
        await wait_state(svc, e.id, "running")
        await wait_until_async(lambda: trace(svc, e.id), what="the handler started")
        # asked to stop (the worker may have seen the request already)
        assert await svc.jobs.queue.cancel(e.id) in ("running", "cancelled")
        job = await wait_state(svc, e.id, "cancelled", "completed", "discarded")
        assert job.state == "cancelled"
        assert job.attempt == 1
        assert [t["event"] for t in await trace(svc, e.id)] == ["start", "stopped"]
        await asyncio.sleep(0.2)
        assert (await svc.jobs.queue.get(e.id)).state == "cancelled"  # type: ignore[union-attr]

    run(jsettings, body)


# ---------------------------------------------------------------------- 3. options per job type


def test_timeout_fails_the_attempt_and_the_worker_keeps_working(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker(concurrency=2)
        slow = await svc.jobs.enqueue("sleepy", {"sleep": 30})
        blocking = await svc.jobs.enqueue("sleepy_sync", {})
        job = await wait_state(svc, slow.id, "discarded")
        assert [x["error"] for x in job.errors] == ["timed out after 0.3 s"] * 2
        assert [t["event"] for t in await trace(svc, slow.id)] == ["start", "start"]
        job = await wait_state(svc, blocking.id, "discarded")
        assert job.errors[0]["error"] == "timed out after 0.3 s"
        assert job.result is None
        # the same job type within its time, and other jobs, still run on this worker
        quick = await svc.jobs.enqueue("sleepy", {"sleep": 0.01})
        after = await svc.jobs.enqueue("ok", {"n": 3})
        assert (await wait_state(svc, quick.id, "completed")).attempt == 1
        assert (await wait_state(svc, after.id, "completed")).result == {"echo": {"n": 3}}

    run(jsettings, body)


def test_sys_exit_in_a_handler_fails_the_attempt_not_the_process(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        a = await svc.jobs.enqueue("quits", {})
        b = await svc.jobs.enqueue("quits_sync", {})
        job = await wait_state(svc, a.id, "discarded")
        assert "the handler called sys.exit(3)" in job.errors[0]["error"]
        job = await wait_state(svc, b.id, "discarded")
        assert "the handler called sys.exit('bye')" in job.errors[0]["error"]
        after = await svc.jobs.enqueue("ok", {"n": 1})
        assert (await wait_state(svc, after.id, "completed")).result == {"echo": {"n": 1}}

    run(jsettings, body)


def test_lower_priority_runs_first(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        ids = {}
        for prio in (5, -3, 0, 1):
            ids[(await svc.jobs.enqueue("ok", {"p": prio}, priority=prio)).id] = prio
        w = svc.jobs.start_worker(concurrency=1)
        await w.drain(15)
        assert [t["data"]["p"] for t in await trace(svc)] == [-3, 0, 1, 5]

    run(jsettings, body)


def test_worker_takes_only_its_queues(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        default = await svc.jobs.enqueue("ok", {"q": "default"})
        mail = await svc.jobs.enqueue("mail", {"q": "mail"})  # the type's queue option
        moved = await svc.jobs.enqueue("ok", {"q": "moved"}, queue="mail")
        assert (await svc.jobs.queue.get(mail.id)).queue == "mail"  # type: ignore[union-attr]
        svc.jobs.start_worker(concurrency=1, queues=["mail"])
        await wait_state(svc, mail.id, "completed")
        await wait_state(svc, moved.id, "completed")
        await asyncio.sleep(0.2)  # polls keep happening: the default job stays put
        job = await svc.jobs.queue.get(default.id)
        assert job is not None
        assert job.state == "available"
        assert job.attempt == 0
        assert {t["data"]["q"] for t in await trace(svc)} == {"mail", "moved"}

    run(jsettings, body)


def test_concurrency_limit_holds_across_two_workers(jsettings: Settings) -> None:
    async def main() -> None:
        a = await open_services(jsettings)
        b = await open_services(jsettings)
        try:
            ids = [(await a.jobs.enqueue("single", {"i": i})).id for i in range(8)]
            fillers = [(await a.jobs.enqueue("ok", {"i": i})).id for i in range(4)]
            a.jobs.start_worker(concurrency=4)
            b.jobs.start_worker(concurrency=4)
            for jid in ids + fillers:
                await wait_state(a, jid, "completed", timeout=30)
            spans: dict[int, list[float]] = {}
            workers = set()
            for t in await trace(a):
                if t["kind"] == "single":
                    spans.setdefault(t["job_id"], []).append(t["at"])
                    workers.add(t["worker"])
            ordered = sorted((s, e) for s, e in spans.values())
            assert len(ordered) == 8
            for (_, end), (start, _) in itertools.pairwise(ordered):
                assert start >= end, "two `single` jobs ran at the same time"
            print(f"single jobs ran on {len(workers)} worker(s)")
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


def test_unique_key_gives_the_first_job_until_it_completes(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        first = await svc.jobs.enqueue("ok", {"n": 1}, unique_key="daily-report")
        dup = await svc.jobs.enqueue("ok", {"n": 2}, unique_key="daily-report")
        assert first.created
        assert not dup.created
        assert dup.id == first.id
        kept = await svc.jobs.enqueue("ok", {"n": 3}, unique_key="once", keep_unique=True)
        w = svc.jobs.start_worker()
        await w.drain(15)
        await wait_state(svc, first.id, "completed")
        await wait_state(svc, kept.id, "completed")
        again = await svc.jobs.enqueue("ok", {"n": 4}, unique_key="daily-report")
        assert again.created
        assert again.id != first.id  # free again after completion
        still = await svc.jobs.enqueue("ok", {"n": 5}, unique_key="once", keep_unique=True)
        assert not still.created
        assert still.id == kept.id  # kept for the job's lifetime
        await wait_state(svc, again.id, "completed")
        assert sorted(t["data"]["n"] for t in await trace(svc)) == [1, 3, 4]

    run(jsettings, body)


# ---------------------------------------------------------------------- 4. leases


def test_expired_lease_is_rescued_and_run_by_another_worker(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        e = await svc.jobs.enqueue("effect", {})
        (ghost,) = await svc.jobs.queue.claim("ghost-worker", 1, lease=0.2)  # then dies
        assert ghost.id == e.id
        w = svc.jobs.start_worker()
        job = await wait_state(svc, e.id, "completed")
        assert job.attempt == 2
        assert job.worker == w.name
        assert "lease expired" in job.errors[0]["error"]
        assert "ghost-worker" in job.errors[0]["error"]
        assert w.stats.rescued == 1
        rows = await svc.db.fetchall("SELECT job_id, attempt FROM effects")
        assert [tuple(r) for r in rows] == [(e.id, 2)]

    run(jsettings, body)


def test_a_lost_attempt_cannot_commit_its_transaction(jsettings: Settings) -> None:
    """The stale copy's effects roll back: `ctx.transaction()` commits only with the attempt
    that still holds the job — exactly one completion, exactly one effect."""

    async def body(svc: Services) -> None:
        e = await svc.jobs.enqueue("effect", {})
        q = svc.jobs.queue
        (stale,) = await q.claim("stalled", 1, lease=30)
        assert await q.rescue(now=time.time() + 60) == 1  # its lease ran out meanwhile
        await svc.db.execute('UPDATE "_jobs" SET "scheduled_at" = 0 WHERE "id" = ?', (e.id,))
        (fresh,) = await q.claim("healthy", 1, lease=30)
        assert (stale.attempt, fresh.attempt) == (1, 2)
        with pytest.raises(LeaseLost):
            await svc.jobs.run(stale)
        assert await svc.db.fetchall("SELECT job_id FROM effects") == []
        with pytest.raises(AlreadyCompleted):  # completed inside its own transaction
            await svc.jobs.run(fresh)
        rows = await svc.db.fetchall("SELECT job_id, attempt FROM effects")
        assert [tuple(r) for r in rows] == [(e.id, 2)]
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "completed"
        assert job.attempt == 2

    run(jsettings, body)


# ---------------------------------------------------------------------- 7. isolation


def test_isolated_functions_through_jobs(jsettings: Settings) -> None:
    async def body(svc: Services) -> None:
        svc.jobs.start_worker()
        ids = {
            kind: (await svc.jobs.enqueue(kind, {"a": 2, "b": 3})).id
            for kind in ("iso_ok", "iso_loop", "iso_mem", "iso_segv", "iso_exit", "iso_raise")
        }
        done = {k: await wait_state(svc, i, "completed", "discarded") for k, i in ids.items()}
        ok = done.pop("iso_ok")
        assert ok.state == "completed"
        assert ok.result["sum"] == 5
        assert ok.result["attempt"] == 1
        assert ok.result["pid"] != os.getpid()  # another process
        for job in done.values():
            assert job.state == "discarded", job
        err = {k: j.errors[0]["error"] for k, j in done.items()}
        assert "timed out after 1 s" in err["iso_loop"]
        assert "memory limit of 128 MB exceeded" in err["iso_mem"]
        assert "killed by SIGSEGV" in err["iso_segv"]
        assert "exited with status 7" in err["iso_exit"]
        assert "KeyError: 'missing-thing'" in err["iso_raise"]
        # the worker survived all of it
        after = await svc.jobs.enqueue("ok", {"after": True})
        assert (await wait_state(svc, after.id, "completed")).result == {"echo": {"after": True}}

    run(jsettings, body)
