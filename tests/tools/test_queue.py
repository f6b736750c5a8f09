"""The queue engine (tools/queue.py) and its worker loop (tools/worker.py) on real SQLite and
real PostgreSQL (a fresh database per test).

Queue tests pass explicit times (`now=`) so leases, backoffs and retention are exact; worker
tests run real `Worker` loops with sub-second leases, as tools-level code may.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from shipyard.tools.db import Database, connect
from shipyard.tools.queue import RESTORE_GATE, Job, Queue, QueueError, backoff
from shipyard.tools.worker import Discard, KindPolicy, Worker
from tests.helpers.wait import wait_until_async as wait_for

T0 = 1_000_000.0
Body = Callable[[Queue], Awaitable[None]]


class Target:
    """Where a test's queue lives; `open()` gives another connection to the same database
    (another SQLite connection to the file, another PostgreSQL pool) — like another process."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path

    async def open(self, max_size: int = 10) -> Database:
        return await connect(self.url, self.path, min_size=1, max_size=max_size)


@pytest.fixture
def target(database_url: str, tmp_path: Path) -> Target:
    return Target(database_url, tmp_path / "queue.db")


async def _report_tasks_after(seconds: float) -> None:
    """A test still running after `seconds` (they take one or two) prints what each task
    awaits, before pytest-timeout ends it: an intermittent hang was seen once under load."""
    await asyncio.sleep(seconds)
    me = asyncio.current_task()
    print(f"still running after {seconds:g} s; the tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        if task is not me:
            task.print_stack(file=sys.stderr)


def run(target: Target, body: Body) -> None:
    async def main() -> None:
        watchdog = asyncio.create_task(_report_tasks_after(120.0))
        db = await target.open()
        try:
            q = Queue(db)
            await q.ensure_schema()
            await q.ensure_schema()  # idempotent
            await body(q)
        finally:
            watchdog.cancel()
            await db.close()

    asyncio.run(main())


async def state(q: Queue, job_id: int) -> str:
    job = await q.get(job_id)
    assert job is not None
    return job.state


# ---------------------------------------------------------------------- enqueue


def test_enqueue_commits_or_rolls_back_with_the_callers_transaction(target: Target) -> None:
    class Boom(Exception):
        pass

    async def body(q: Queue) -> None:
        async with q.db.transaction() as tx:
            kept = await q.enqueue(tx, "email", {"to": "a@example.com"})
        lost: list[int] = []

        async def enqueue_then_fail() -> None:
            async with q.db.transaction() as tx:
                job = await q.enqueue(tx, "email", {"to": "b@example.com"})
                lost.append(job.id)
                # visible inside its own transaction…
                row = await tx.fetchone('SELECT COUNT(*) FROM "_jobs" WHERE "id" = ?', (job.id,))
                assert row is not None
                assert row[0] == 1
                raise Boom()

        with pytest.raises(Boom):
            await enqueue_then_fail()
        # …and gone with it
        assert await q.get(lost[0]) is None
        job = await q.get(kept.id)
        assert job is not None
        assert job.state == "available"
        assert job.args == {"to": "a@example.com"}
        jobs, total = await q.list()
        assert total == 1
        assert [j.id for j in jobs] == [kept.id]
        claimed = await q.claim("w", 10, 30)
        assert [j.id for j in claimed] == [kept.id]

    run(target, body)


def test_enqueue_refuses_bad_options(target: Target) -> None:
    async def body(q: Queue) -> None:
        for kwargs in (
            {"kind": ""},
            {"kind": "x" * 201},
            {"queue": ""},
            {"max_attempts": 0},
            {"max_attempts": 2**31},
            {"priority": 2**31},
            {"priority": -(2**31) - 1},
            {"timeout": 0},
            {"timeout": float("inf")},
            {"timeout": float("nan")},
            {"run_at": float("nan")},
            {"unique_key": ""},
            {"args": {"not json": object()}},
        ):
            call = {"kind": "k", **kwargs}
            with pytest.raises(QueueError):
                await q.enqueue(q.db, **call)
        assert (await q.list())[1] == 0
        for prio in (-(2**31), 2**31 - 1):  # the edges of the column fit
            await q.enqueue(q.db, "k", priority=prio, max_attempts=2**31 - 1)
        assert sorted(j.priority for j in (await q.list())[0]) == [-(2**31), 2**31 - 1]

    run(target, body)


# ---------------------------------------------------------------------- claiming


def test_claim_takes_lower_priority_first_then_due_time(target: Target) -> None:
    async def body(q: Queue) -> None:
        ids = {}
        for name, prio, at in (
            ("late-0", 0, T0 + 2),
            ("p5", 5, T0),
            ("early-0", 0, T0 + 1),
            ("urgent", -3, T0 + 3),
            ("p1", 1, T0),
        ):
            ids[(await q.enqueue(q.db, "k", name, priority=prio, run_at=at, now=T0)).id] = name
        order = []
        for _ in range(5):
            (job,) = await q.claim("w", 1, 30, now=T0 + 10)
            order.append(ids[job.id])
        assert order == ["urgent", "early-0", "late-0", "p1", "p5"]
        assert await q.claim("w", 1, 30, now=T0 + 10) == []

    run(target, body)


def test_claim_serves_only_the_named_queues_and_due_jobs(target: Target) -> None:
    async def body(q: Queue) -> None:
        default = await q.enqueue(q.db, "k", 1, now=T0)
        mail = await q.enqueue(q.db, "k", 2, queue="mail", now=T0)
        later = await q.enqueue(q.db, "k", 3, queue="mail", run_at=T0 + 60, now=T0)
        assert await state(q, later.id) == "scheduled"
        assert await q.next_due(["mail"]) == T0
        got = await q.claim("w", 10, 30, queues=["mail"], now=T0 + 1)
        assert [j.id for j in got] == [mail.id]
        assert await q.claim("w", 10, 30, queues=["mail", "other"], now=T0 + 59) == []
        assert await q.next_due(["mail"]) == T0 + 60
        got = await q.claim("w", 10, 30, queues=["mail"], now=T0 + 60)
        assert [j.id for j in got] == [later.id]
        assert await state(q, default.id) == "available"
        got = await q.claim("w", 10, 30, now=T0 + 60)
        assert [j.id for j in got] == [default.id]

    run(target, body)


def test_no_claim_while_a_restore_holds_the_gate(target: Target) -> None:
    """PostgreSQL: while a restore holds RESTORE_GATE (backups/restore.py), claims of every
    kind get nothing; once it lets go, the same jobs are claimed. SQLite needs no gate (the
    restore's swap is one file replace)."""

    async def body(q: Queue) -> None:
        plain = await q.enqueue(q.db, "k", 1, now=T0)
        capped = await q.enqueue(q.db, "capped", 2, now=T0)
        if not q.pg:  # no gate in SQLite's claim; claims go on as ever
            assert "advisory" not in q._due(T0, None, None, ())[0]
            got = await q.claim("w", 10, 30, now=T0 + 1)
            assert {j.id for j in got} == {plain.id, capped.id}
            return
        other = await target.open()
        try:
            async with other.transaction() as tx:
                await tx.execute("SELECT pg_advisory_xact_lock(?)", (RESTORE_GATE,))
                assert await q.claim("w", 10, 30, now=T0 + 1) == []
                assert await q.claim_limited("w", "capped", 10, 5, 30, now=T0 + 1) == []
            got = await q.claim("w", 10, 30, exclude_kinds=["capped"], now=T0 + 1)
            assert [j.id for j in got] == [plain.id]
            got = await q.claim_limited("w", "capped", 10, 5, 30, now=T0 + 1)
            assert [j.id for j in got] == [capped.id]
        finally:
            await other.close()

    run(target, body)


def test_concurrent_claimers_never_get_the_same_job(target: Target) -> None:
    """Four connections claim in parallel until the queue is empty: every job is handed out
    exactly once."""
    n = 300

    async def body(q: Queue) -> None:
        await q.db.executemany(
            'INSERT INTO "_jobs" ("kind", "queue", "args", "state", "priority", '
            '"max_attempts", "timeout", "created_at", "scheduled_at") '
            "VALUES ('k', 'default', ?, 'available', ?, 3, 60, ?, ?)",
            [(str(i), i % 3, T0, T0) for i in range(n)],
        )
        dbs = [await target.open(max_size=3) for _ in range(4)]
        got: list[list[int]] = [[] for _ in dbs]

        async def claimer(i: int) -> None:
            cq = Queue(dbs[i])
            while True:
                jobs = await cq.claim(f"w{i}", random.randint(1, 7), 30)
                if not jobs:
                    return
                got[i] += [j.id for j in jobs]
                await asyncio.sleep(0)

        try:
            await asyncio.gather(*(claimer(i) for i in range(len(dbs))))
        finally:
            for d in dbs:
                await d.close()
        every = [jid for ids in got for jid in ids]
        assert len(every) == n
        assert len(set(every)) == n
        row = await q.db.fetchone(
            'SELECT COUNT(*), MAX("attempt") FROM "_jobs" WHERE "state" = \'running\''
        )
        assert row is not None
        assert tuple(row) == (n, 1)

    run(target, body)


def test_claim_limited_caps_running_jobs_of_a_kind_across_claimers(target: Target) -> None:
    async def body(q: Queue) -> None:
        for i in range(20):
            await q.enqueue(q.db, "resize", i)
        dbs = [await target.open(max_size=3) for _ in range(4)]
        peak, done = 0, 0

        async def claimer(i: int) -> None:
            nonlocal peak, done
            cq = Queue(dbs[i])
            held: list[Job] = []
            deadline = time.monotonic() + 20
            while done < 20 and time.monotonic() < deadline:
                held += await cq.claim_limited(f"w{i}", "resize", 5, 2, 30)
                row = await cq.db.fetchone(
                    'SELECT COUNT(*) FROM "_jobs" WHERE "state" = \'running\''
                )
                assert row is not None
                peak = max(peak, int(row[0]))
                if held and random.random() < 0.5:  # finish one: room opens up again
                    assert await cq.complete(None, held.pop(0))
                    done += 1
                await asyncio.sleep(0)

        try:
            await asyncio.gather(*(claimer(i) for i in range(len(dbs))))
        finally:
            for d in dbs:
                await d.close()
        assert peak == 2
        assert (await q.counts())["resize"] == {"completed": 20}

    run(target, body)


# ---------------------------------------------------------------------- unique keys


def test_unique_key_returns_the_first_job_until_it_is_final(target: Target) -> None:
    async def body(q: Queue) -> None:
        a = await q.enqueue(q.db, "k", 1, unique_key="report:42")
        b = await q.enqueue(q.db, "k", 2, unique_key="report:42")
        assert a.created
        assert not b.created
        assert b.id == a.id
        (job,) = await q.claim("w", 10, 30)
        # still held while running
        assert (await q.enqueue(q.db, "k", 3, unique_key="report:42")).id == a.id
        assert await q.complete(None, job)
        c = await q.enqueue(q.db, "k", 4, unique_key="report:42")
        assert c.created
        assert c.id != a.id
        # keep_unique: the key stays with the job after it completes
        d = await q.enqueue(q.db, "k", 5, unique_key="tick:1", keep_unique=True)
        jobs = await q.claim("w", 10, 30)
        assert {j.id for j in jobs} == {c.id, d.id}
        assert await q.complete_many([(j, None) for j in jobs]) == 2
        again = await q.enqueue(q.db, "k", 6, unique_key="tick:1", keep_unique=True)
        assert not again.created
        assert again.id == d.id
        assert (await q.get(d.id)).state == "completed"  # type: ignore[union-attr]

    run(target, body)


# ---------------------------------------------------------------------- leases


def test_expired_lease_is_rescued_and_the_old_attempt_is_fenced_off(target: Target) -> None:
    async def body(q: Queue) -> None:
        e = await q.enqueue(q.db, "k", None, max_attempts=3, now=T0)
        (a1,) = await q.claim("w1", 1, 0.05, now=T0)  # w1 then never answers
        assert a1.attempt == 1
        assert a1.lease_until == pytest.approx(T0 + 0.05)
        assert await q.claim("w2", 1, 30, now=T0) == []  # running: not claimable
        assert await q.rescue(now=T0 + 0.04) == 0  # lease still valid
        assert await q.rescue(now=T0 + 0.06) == 1
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "retryable"
        assert job.worker is None
        assert "lease expired" in job.errors[0]["error"]
        assert "w1" in job.errors[0]["error"]
        (a2,) = await q.claim("w2", 1, 30, now=T0 + 0.07)
        assert a2.attempt == 2
        # w1 wakes up: its heartbeat finds the job gone, its completion does nothing
        assert await q.heartbeat("w1", [(e.id, 1)], 30, now=T0 + 0.08) == {}
        assert not await q.complete(None, a1)
        assert await q.fail(a1, "late", retry_in=1.0) is None
        # a renewal names the attempt: w2 holding attempt 2 does not renew attempt 1
        assert await q.heartbeat("w2", [(e.id, 1)], 30, now=T0 + 0.08) == {}
        assert await q.heartbeat("w2", [(e.id, 2)], 30, now=T0 + 0.08) == {e.id: False}
        job = await q.get(e.id)
        assert job is not None
        assert job.lease_until == pytest.approx(T0 + 30.08)
        assert await q.complete(None, a2, result={"by": "w2"})
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "completed"
        assert job.result == {"by": "w2"}
        assert len(job.errors) == 1

    run(target, body)


def test_rescue_of_the_last_attempt_discards(target: Target) -> None:
    async def body(q: Queue) -> None:
        e = await q.enqueue(q.db, "k", None, max_attempts=1, now=T0)
        await q.claim("w1", 1, 1, now=T0)
        assert await q.rescue(now=T0 + 2) == 1
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "discarded"
        assert job.finished_at == T0 + 2

    run(target, body)


def test_rescue_of_a_job_asked_to_cancel_cancels_it(target: Target) -> None:
    """Its worker died before it saw the request: the job is not run again."""

    async def body(q: Queue) -> None:
        e = await q.enqueue(q.db, "k", None, max_attempts=5, now=T0)
        await q.claim("w1", 1, 1, now=T0)
        assert await q.cancel(e.id, now=T0) == "running"
        assert await q.rescue(now=T0 + 2) == 1
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "cancelled"
        assert job.finished_at == T0 + 2
        assert await q.claim("w2", 1, 30, now=T0 + 3) == []

    run(target, body)


# ---------------------------------------------------------------------- retries


def test_backoff_doubles_within_jitter_and_stops_at_the_cap() -> None:
    for attempt in range(1, 12):
        nominal = min(100.0, 0.5 * 2 ** (attempt - 1))
        samples = [backoff(attempt, 0.5, 100.0) for _ in range(200)]
        assert all(nominal * 0.8 <= s <= nominal * 1.2 for s in samples), attempt
        assert max(samples) - min(samples) > nominal * 0.1  # jittered, not lockstep
    assert backoff(0, 1.0, 10.0) <= 1.2
    assert backoff(3, 1.0, 10.0, jitter=0) == 4.0


def test_failed_attempts_retry_then_discard_keeping_every_error(target: Target) -> None:
    async def body(q: Queue) -> None:
        e = await q.enqueue(q.db, "k", None, max_attempts=3, now=T0)
        now = T0
        for attempt in (1, 2, 3):
            (job,) = await q.claim("w", 1, 30, now=now)
            assert job.attempt == attempt
            delay = backoff(attempt, 1.0, 60.0)
            new = await q.fail(job, f"error {attempt}", retry_in=delay, now=now + 0.5)
            assert new == ("retryable" if attempt < 3 else "discarded")
            row = await q.get(e.id)
            assert row is not None
            if new == "retryable":
                assert row.scheduled_at == pytest.approx(now + 0.5 + delay)
                assert await q.claim("w", 1, 30, now=row.scheduled_at - 0.01) == []
                now = row.scheduled_at
        job2 = await q.get(e.id)
        assert job2 is not None
        assert job2.state == "discarded"
        assert job2.finished_at is not None
        assert [x["error"] for x in job2.errors] == ["error 1", "error 2", "error 3"]
        assert [x["attempt"] for x in job2.errors] == [1, 2, 3]

    run(target, body)


def test_discard_and_operator_retry_and_cancel(target: Target) -> None:
    async def body(q: Queue) -> None:
        poison = await q.enqueue(q.db, "k", "poison", max_attempts=5)
        waiting = await q.enqueue(q.db, "k", "waiting", run_at=time.time() + 3600)
        (job,) = await q.claim("w", 10, 30)
        assert await q.fail(job, "bad payload", retry_in=1, discard=True) == "discarded"
        # an operator retries the dead letter: one more attempt, now
        assert await q.retry(poison.id) == "available"
        (job,) = await q.claim("w", 10, 30)
        assert job.id == poison.id
        assert job.attempt == 2
        assert job.max_attempts == 5
        assert await q.complete(None, job)
        # a job that used all its attempts gets exactly one more
        spent = await q.enqueue(q.db, "k", "spent", max_attempts=1)
        (job,) = await q.claim("w", 10, 30)
        assert await q.fail(job, "x", retry_in=1) == "discarded"
        assert await q.retry(spent.id) == "available"
        (job,) = await q.claim("w", 10, 30)
        assert (job.attempt, job.max_attempts) == (2, 2)
        assert await q.fail(job, "y", retry_in=1) == "discarded"
        # cancel: a pending job is final at once, a running one is asked to stop
        assert await q.cancel(waiting.id) == "cancelled"
        assert await q.retry(10**9) is None
        assert await q.cancel(10**9) is None
        running = await q.enqueue(q.db, "k", "running")
        (job,) = await q.claim("w", 10, 30)
        assert await q.cancel(running.id) == "running"
        assert await q.heartbeat("w", [(running.id, job.attempt)], 30) == {running.id: True}
        assert await q.fail(job, "cancelled", retry_in=None, state="cancelled") == "cancelled"
        assert await q.claim("w", 10, 30, now=time.time() + 7200) == []

    run(target, body)


# ---------------------------------------------------------------------- retention


def test_prune_deletes_completed_after_retention_and_keeps_discarded_longer(
    target: Target,
) -> None:
    day = 86400.0

    async def body(q: Queue) -> None:
        ids: dict[str, int] = {}
        for name in ("old-done", "new-done", "old-dead", "older-dead", "old-cancelled"):
            ids[name] = (await q.enqueue(q.db, "k", name, max_attempts=1, now=T0)).id
        ids["wait"] = (await q.enqueue(q.db, "k", "wait", max_attempts=3, now=T0)).id
        jobs = {j.args: j for j in await q.claim("w", 10, 30, now=T0)}
        await q.complete(None, jobs["old-done"], now=T0)
        await q.complete(None, jobs["new-done"], now=T0 + 2 * day)
        await q.fail(jobs["old-dead"], "x", retry_in=None, now=T0)
        await q.fail(jobs["older-dead"], "x", retry_in=None, now=T0 - 7 * day)
        await q.fail(jobs["old-cancelled"], "x", retry_in=None, state="cancelled", now=T0)
        assert await q.fail(jobs["wait"], "x", retry_in=10 * day, now=T0) == "retryable"
        now = T0 + 2.5 * day
        # completed/cancelled kept one day, discarded seven
        assert await q.prune(now - day, now - 7 * day) == 3
        left = {j.args for j in (await q.list(limit=100))[0]}
        assert left == {"new-done", "old-dead", "wait"}
        assert await q.prune(now - day, now - 7 * day) == 0
        assert await q.prune(T0 + 9 * day, T0 + 1) == 2
        assert [j.args for j in (await q.list())[0]] == ["wait"]  # pending: never pruned

    run(target, body)


# ---------------------------------------------------------------------- the worker loop


class Trace:
    """What handlers did, in order: (job id, attempt, event, time)."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, str, float]] = []

    def add(self, job: Job, event: str) -> None:
        self.events.append((job.id, job.attempt, event, time.monotonic()))

    def of(self, job_id: int) -> list[tuple[int, str]]:
        return [(a, e) for j, a, e, _ in self.events if j == job_id]


def make_worker(q: Queue, runner: Callable[[Job], Awaitable[Any]], **kw: Any) -> Worker:
    opts: dict[str, Any] = {
        "policies": lambda kind: KindPolicy(backoff_base=0.05, backoff_max=1.0),
        "lease": 0.6,
        "poll_interval": 0.05,
        "maintenance_interval": 0.1,
        "sqlite_change_poll": 0.01,
        **kw,
    }
    return Worker(q, runner, **opts)  # type: ignore[arg-type]


def test_worker_retries_discards_and_times_out(target: Target) -> None:
    async def body(q: Queue) -> None:
        trace = Trace()

        async def runner(job: Job) -> Any:
            trace.add(job, "start")
            if job.args == "fail":
                raise RuntimeError(f"failure {job.attempt}")
            if job.args == "poison":
                raise Discard("unusable")
            if job.args == "slow":
                await asyncio.sleep(5)
            return {"ok": job.args}

        w = make_worker(q, runner, concurrency=4)
        fail = await q.enqueue(q.db, "k", "fail", max_attempts=3)
        poison = await q.enqueue(q.db, "k", "poison", max_attempts=3)
        slow = await q.enqueue(q.db, "k", "slow", max_attempts=1, timeout=0.2)
        ok = await q.enqueue(q.db, "k", "ok")
        w.start()
        try:

            async def settled() -> bool:
                states = [await state(q, i) for i in (fail.id, poison.id, slow.id, ok.id)]
                return all(s in ("completed", "discarded") for s in states)

            await wait_for(settled)
            late = await q.enqueue(q.db, "k", "after")
            w.wake()
            await wait_for(lambda: _is(q, late.id, "completed"))
        finally:
            await w.stop(grace=1)
        job = await q.get(fail.id)
        assert job is not None
        assert job.state == "discarded"
        assert job.attempt == 3
        assert [e["error"].splitlines()[0] for e in job.errors] == [
            f"RuntimeError: failure {i}" for i in (1, 2, 3)
        ]
        job = await q.get(poison.id)
        assert job is not None
        assert job.state == "discarded"
        assert job.attempt == 1
        assert "unusable" in job.errors[0]["error"]
        job = await q.get(slow.id)
        assert job is not None
        assert job.state == "discarded"
        assert job.errors[0]["error"] == "timed out after 0.2 s"
        job = await q.get(ok.id)
        assert job is not None
        assert job.state == "completed"
        assert job.result == {"ok": "ok"}
        assert w.stats.discarded == 3
        assert w.stats.failed == 5

    run(target, body)


async def due_now(q: Queue, job_id: int) -> None:
    """After a rescue with a clock ahead: make the retry due on the real clock."""
    await q.db.execute(
        'UPDATE "_jobs" SET "scheduled_at" = ? WHERE "id" = ?', (time.time(), job_id)
    )


async def _is(q: Queue, job_id: int, want: str) -> bool:
    return await state(q, job_id) == want


def test_long_job_keeps_its_lease_and_runs_once(target: Target) -> None:
    """A job running for several leases is renewed by its worker: a second worker's rescue
    never takes it, so it runs exactly once."""

    async def body(q: Queue) -> None:
        trace = Trace()

        async def runner(job: Job) -> Any:
            trace.add(job, "start")
            await asyncio.sleep(2.0)  # > 3 leases of 0.6 s
            trace.add(job, "end")

        db2 = await target.open()
        w1 = make_worker(q, runner)
        w2 = make_worker(Queue(db2), runner)
        e = await q.enqueue(q.db, "k", None, timeout=30)
        w1.start()
        await wait_for(lambda: _is(q, e.id, "running"))
        w2.start()
        try:
            await wait_for(lambda: _is(q, e.id, "completed"))
        finally:
            await w1.stop(grace=1)
            await w2.stop(grace=1)
            await db2.close()
        assert trace.of(e.id) == [(1, "start"), (1, "end")]
        job = await q.get(e.id)
        assert job is not None
        assert job.attempt == 1
        assert job.errors == []
        assert w1.stats.rescued == w2.stats.rescued == 0

    run(target, body)


def test_worker_stops_its_copy_when_another_worker_took_the_job(target: Target) -> None:
    """Worker 1 stalls past its lease (played by rescuing with a clock an hour ahead): worker
    2 runs the job; worker 1's next renewal finds it lost and stops its copy without writing
    anything."""

    async def body(q: Queue) -> None:
        trace = Trace()

        async def runner(job: Job) -> Any:
            trace.add(job, "start")
            try:
                await asyncio.sleep(1.0 if job.attempt > 1 else 30)
            except asyncio.CancelledError:
                trace.add(job, "stopped")
                raise
            trace.add(job, "end")
            return job.attempt

        db2 = await target.open()
        w1 = make_worker(q, runner, concurrency=1)
        w2 = make_worker(Queue(db2), runner)
        e = await q.enqueue(q.db, "k", None, timeout=60)
        w1.start()
        try:
            await wait_for(lambda: _is(q, e.id, "running"))
            w2.start()
            # the stall: time runs past w1's lease before it renews (w1 has no free slot)
            assert await q.rescue(now=time.time() + 3600) == 1
            await due_now(q, e.id)
            await wait_for(lambda: _is(q, e.id, "completed"))
        finally:
            await w1.stop(grace=1)
            await w2.stop(grace=1)
            await db2.close()
        assert (1, "stopped") in trace.of(e.id)
        assert trace.of(e.id)[-1] == (2, "end")
        job = await q.get(e.id)
        assert job is not None
        assert job.state == "completed"
        assert job.result == 2
        assert len(job.errors) == 1
        assert "lease expired" in job.errors[0]["error"]
        assert w1.stats.lost == 1
        assert w1.stats.completed == 0

    run(target, body)


def test_worker_that_reclaims_its_own_rescued_job_stops_the_old_copy(target: Target) -> None:
    """A stalled worker may rescue its own job and claim it again: the old copy must stop,
    and the new attempt must keep its lease (the old copy's end must not untrack it)."""

    async def body(q: Queue) -> None:
        trace = Trace()

        async def runner(job: Job) -> Any:
            trace.add(job, "start")
            try:
                await asyncio.sleep(30 if job.attempt == 1 else 1.5)
            except asyncio.CancelledError:
                trace.add(job, "stopped")
                raise
            trace.add(job, "end")
            return job.attempt

        w = make_worker(q, runner)
        e = await q.enqueue(q.db, "k", None, timeout=60)
        w.start()
        try:
            await wait_for(lambda: _is(q, e.id, "running"))
            # the stall: time runs past the lease before it renews; the job is rescued and
            # this same worker, the only one, claims it again
            assert await q.rescue(now=time.time() + 3600) == 1
            await due_now(q, e.id)
            await wait_for(lambda: _is(q, e.id, "completed"))
        finally:
            await w.stop(grace=1)
        events = trace.of(e.id)
        assert (1, "stopped") in events, events
        assert events[-1] == (2, "end"), events
        assert events.index((1, "stopped")) < events.index((2, "end"))
        job = await q.get(e.id)
        assert job is not None, job
        assert job.state == "completed", job
        assert job.attempt == 2, job
        assert len(job.errors) == 1, job.errors  # the rescue only: no second rescue

    run(target, body)


def test_worker_cancels_a_running_job_on_request(target: Target) -> None:
    async def body(q: Queue) -> None:
        trace = Trace()

        async def runner(job: Job) -> Any:
            trace.add(job, "start")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                trace.add(job, "stopped")
                raise

        w = make_worker(q, runner)
        e = await q.enqueue(q.db, "k", None, timeout=60)
        w.start()
        try:
            await wait_for(lambda: _is(q, e.id, "running"))
            assert await q.cancel(e.id) in ("running", "cancelled")
            await wait_for(lambda: _is(q, e.id, "cancelled"))
        finally:
            await w.stop(grace=1)
        assert trace.of(e.id) == [(1, "start"), (1, "stopped")]
        assert w.stats.cancelled == 1

    run(target, body)


def test_stopping_worker_gives_the_attempt_back(target: Target) -> None:
    """A graceful shutdown (deploy) does not use up an attempt: a job on its only attempt is
    handed back, not dead-lettered, and another worker runs it."""

    async def body(q: Queue) -> None:
        started = asyncio.Event()

        async def runner(job: Job) -> Any:
            if job.attempt == 1 and not started.is_set():
                started.set()
                await asyncio.sleep(30)
            return "done"

        e = await q.enqueue(q.db, "k", None, max_attempts=1, timeout=60)
        w1 = make_worker(q, runner)
        w1.start()
        await asyncio.wait_for(started.wait(), 10)
        await w1.stop(grace=0.1)
        job = await q.get(e.id)
        assert job is not None, job
        assert job.state == "available", job
        w2 = make_worker(q, runner)
        w2.start()
        try:
            await wait_for(lambda: _is(q, e.id, "completed"))
        finally:
            await w2.stop(grace=1)
        job = await q.get(e.id)
        assert job is not None
        assert job.result == "done"

    run(target, body)


class CountingQueue(Queue):
    """The real queue, counting the worker's claim rounds."""

    claims = 0

    async def claim(self, *args: Any, **kwargs: Any) -> list[Job]:
        self.claims += 1
        return await super().claim(*args, **kwargs)


def test_a_due_job_the_worker_cannot_take_does_not_make_it_spin(target: Target) -> None:
    """A due job of a kind this worker does not run (a rolling deploy), or of a kind at its
    concurrency limit, is not a reason to claim again at once: the worker waits for a
    wake-up or its poll interval, instead of querying in a tight loop."""

    async def body(q: Queue) -> None:
        cq = CountingQueue(q.db)

        spans: list[tuple[float, float]] = []

        async def runner(job: Job) -> Any:
            start = time.monotonic()
            await asyncio.sleep(0.6)
            spans.append((start, time.monotonic()))

        await cq.enqueue(q.db, "from-a-newer-release", {})
        for _ in range(3):
            await cq.enqueue(q.db, "limited", {})
        poll = 0.25
        w = make_worker(
            cq,
            runner,
            kinds=["limited"],
            limited_kinds=lambda: {"limited": 1},
            poll_interval=poll,
        )

        async def limited_done() -> bool:
            return (await q.counts()).get("limited") == {"completed": 3}

        started = time.monotonic()
        w.start()
        try:
            await wait_for(limited_done, timeout=30, what="the three limited jobs completed")
            elapsed, claims = time.monotonic() - started, cq.claims
        finally:
            await w.stop(grace=0.1)
        # one round per poll interval, the first round and wake-ups as jobs finish (13 in
        # 1.8 s here), with slack; a spinning loop makes hundreds per second
        assert claims <= elapsed / poll + 12, (claims, elapsed)
        assert w.stats.completed == 3
        # the limited jobs ran one after the other
        assert len(spans) == 3, spans
        assert all(b[0] >= a[1] for a, b in pairwise(spans)), spans
        job = (await cq.list(kind="from-a-newer-release"))[0][0]
        assert job.state == "available"
        assert job.attempt == 0

    run(target, body)


def test_worker_prunes_every_expired_job_in_one_round(target: Target) -> None:
    """More finished jobs than one delete batch are all pruned in the same maintenance
    round, so retention keeps up with a busy queue."""
    n = 2500

    async def body(q: Queue) -> None:
        old = time.time() - 10_000
        await q.db.executemany(
            'INSERT INTO "_jobs" ("kind", "queue", "args", "state", "priority", '
            '"max_attempts", "timeout", "created_at", "scheduled_at", "finished_at") '
            "VALUES ('k', 'default', 'null', ?, 0, 3, 60, ?, ?, ?)",
            [("completed" if i % 5 else "discarded", old, old, old) for i in range(n)],
        )
        kept = await q.enqueue(q.db, "k", "pending")

        async def runner(job: Job) -> Any:
            return None

        w = make_worker(
            q,
            runner,
            queues=["none"],
            retention=3600,
            discarded_retention=3600,
            maintenance_interval=1.0,
        )
        w.start()
        try:
            await wait_for(lambda: _true(w.stats.pruned > 0))
            assert w.stats.pruned == n
        finally:
            await w.stop()
        assert [j.id for j in (await q.list())[0]] == [kept.id]

    run(target, body)


async def _true(value: bool) -> bool:
    return value


def test_stopping_a_busy_worker_leaves_no_job_running(target: Target) -> None:
    """Stopped at any moment — mid-claim, mid-batch of completions — a worker leaves every
    job completed or handed back, none `running` under a worker that is gone (those would
    wait for their lease to expire, then run again)."""

    async def body(q: Queue) -> None:
        async def runner(job: Job) -> Any:
            return None

        for trial in range(8):
            await q.db.execute('DELETE FROM "_jobs"')
            await q.db.executemany(
                'INSERT INTO "_jobs" ("kind", "queue", "args", "state", "priority", '
                '"max_attempts", "timeout", "created_at", "scheduled_at") '
                "VALUES ('k', 'default', 'null', 'available', 0, 3, 60, 0, 0)",
                [() for _ in range(2000)],
            )
            # a lease well above the loop's stalls on a loaded 2-core machine: with 0.6 s the
            # worker's own maintenance rescued its running jobs (retryable) before a renewal
            # came, twice in full runs; jobs left running would still show as `running`
            w = make_worker(q, runner, concurrency=50, lease=3.0)
            w.start()
            await asyncio.sleep(0.05 + trial * 0.021)  # somewhere in the middle
            await w.stop(grace=5)
            rows = await q.db.fetchall(
                'SELECT "state", "attempt", COUNT(*) FROM "_jobs" GROUP BY "state", "attempt"'
            )
            assert {(str(s), int(a)) for s, a, _ in rows} <= {("completed", 1), ("available", 0)}

    run(target, body)


def test_slow_claims_refresh_the_planner_statistics(target: Target) -> None:
    """PostgreSQL: a claim slower than `analyze_after_ms` makes the worker ANALYZE the job
    table (here with a threshold of 0, so the first claim does); SQLite has nothing to do."""

    async def body(q: Queue) -> None:
        async def runner(job: Job) -> Any:
            return None

        async def last_analyzed() -> Any:
            row = await q.db.fetchone(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = ?", (q.table,)
            )
            return row[0] if row else None

        if q.pg:
            assert await last_analyzed() is None
        for _ in range(5):
            await q.enqueue(q.db, "noop", {})
        w = make_worker(q, runner, analyze_after_ms=0.0)
        w.start()
        try:
            await wait_for(lambda: _done(q, 5))
            if q.pg:
                await wait_for(lambda: _analyzed(w))
                # the statistics collector reports it (asynchronously)
                deadline = time.monotonic() + 10
                while await last_analyzed() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert await last_analyzed() is not None
            else:
                assert w.stats.analyzed == 0
        finally:
            await w.stop(grace=0.1)

    run(target, body)


async def _done(q: Queue, n: int) -> bool:
    jobs, _ = await q.list(state="completed")
    return len(jobs) == n


async def _analyzed(w: Worker) -> bool:
    return w.stats.analyzed >= 1
