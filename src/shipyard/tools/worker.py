"""The worker loop over `tools/queue.py`: claim, run, renew leases, finish, housekeep.

One `Worker` per process runs up to `concurrency` jobs at once as asyncio tasks. It claims
as many jobs as it has free slots in one statement, and completes finished jobs in batches
(one UPDATE for everything that finished since the last flush), which is what makes no-op
throughput high. It sleeps until woken: by a PostgreSQL NOTIFY (sent in the enqueueing
transaction, so delivered at commit), by `wake()` from this process (SQLite: a committed
write to the jobs table), by SQLite's `data_version` changing (another process wrote), or
by the next scheduled job falling due — with `poll_interval` as the backstop.

Leases: every running job's lease is renewed every `lease / 3` seconds. A job whose renewal
finds it gone (another worker rescued it after the lease expired — this process stalled or
lost the database) is cancelled here. That keeps two copies of a job from running at once
while every process answers within its lease; a handler that blocks the event loop longer
than the lease can overlap with the rescued copy for up to `lease / 3`, which is why
effects that must happen once commit with the job's completion (`ctx.transaction()` in
jobs/jobs.py). A timed-out handler running in a thread keeps its lease until it returns,
except when the worker stops: then it is released after the shutdown grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from shipyard.tools.queue import NOTIFY_CHANNEL, Job, Queue, backoff

log = logging.getLogger("shipyard.jobs")

PRUNE_BATCH = 1000  # rows deleted per statement
PRUNE_BATCHES = 100  # at most per maintenance round


class Discard(Exception):
    """Raised by a handler: fail this attempt and do not retry (dead-letter it now)."""


class AlreadyCompleted(Exception):
    """Internal: the handler completed its job inside its own transaction."""


@dataclass
class KindPolicy:
    """How jobs of one kind are retried (limits come from `limited_kinds`)."""

    backoff_base: float = 1.0
    backoff_max: float = 3600.0


@dataclass
class WorkerStats:
    """Counters of this process (for metrics and tests)."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    discarded: int = 0
    cancelled: int = 0
    lost: int = 0
    rescued: int = 0
    pruned: int = 0
    analyzed: int = 0  # statistics refreshes after slow claims (PostgreSQL)


Runner = Callable[[Job], Coroutine[Any, Any, Any]]
# told about every finished attempt: (job, state, seconds it ran, its exception or None).
# state: completed, retryable, discarded, cancelled, or lost (its end was not recorded: the
# lease was lost or the database unreachable); cheap and never raising (the worker's loop)
AttemptObserver = Callable[[Job, str, float, BaseException | None], None]


class Worker:
    def __init__(
        self,
        queue: Queue,
        run: Runner,
        *,
        policies: Callable[[str], KindPolicy],
        limited_kinds: Callable[[], dict[str, int]] = dict,
        kinds: list[str] | None = None,
        queues: list[str] | None = None,
        concurrency: int = 10,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        retention: float = 86400.0,
        discarded_retention: float = 7 * 86400.0,
        maintenance_interval: float = 5.0,
        db_url: str = "",
        sqlite_change_poll: float = 0.01,
        analyze_after_ms: float = 5.0,
        observe: AttemptObserver | None = None,
    ) -> None:
        self.queue = queue
        self.observe = observe
        self.run_job = run
        self.policies = policies
        self.limited_kinds = limited_kinds
        self.queues = queues or None
        self.kinds = kinds  # only these are claimed (a rolling deploy may add new ones)
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.retention = retention
        self.discarded_retention = discarded_retention
        self.maintenance_interval = maintenance_interval
        self.db_url = db_url
        self.sqlite_change_poll = sqlite_change_poll
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self.active: dict[int, tuple[Job, asyncio.Task[Any]]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._claim_task: asyncio.Task[None] | None = None
        self._completion_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._done: list[tuple[Job, Any]] = []
        self._done_event = asyncio.Event()
        self._claimed_at = 0.0  # when the last claim looked for due jobs
        # PostgreSQL: a claim slower than this refreshes the job table's statistics (at most
        # every 30 s). Without them — a new table, a sudden backlog before autovacuum — the
        # planner sorts every pending job on each claim instead of reading the index in order
        # (measured: 15 ms instead of 0.3 ms per claim at 30,000 pending jobs).
        self.analyze_after = analyze_after_ms / 1000.0
        self._analyzed_at = 0.0
        self._analyze_task: asyncio.Task[None] | None = None
        # (job id, attempt) -> why its task was cancelled: lost, cancel (else: stopping)
        self._why: dict[tuple[int, int], str] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._claim_task = asyncio.create_task(self._claim_loop())
        self._completion_task = asyncio.create_task(self._completion_loop())
        loops = [self._lease_loop(), self._maintenance_loop()]
        if self.queue.pg and self.db_url:
            loops.append(self._listen_loop())
        elif not self.queue.pg:
            loops.append(self._sqlite_change_loop())
        self._tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, give running jobs `grace` seconds, then cancel them; leases of
        cancelled jobs are released for another worker to retry.

        A claim and a batch of completions in flight are let finish rather than cancelled:
        cancelled mid-statement (PostgreSQL), their jobs could stay `running` under this
        worker until the lease expired — then run again, an attempt counted."""
        self._stopping = True
        self._wake.set()
        if self._claim_task is not None:  # it ends after the claim it may be making
            await asyncio.wait({self._claim_task}, timeout=max(grace, 5.0))
            self._claim_task.cancel()
        if self.active:
            tasks = [t for _, t in self.active.values()]
            await asyncio.wait(tasks, timeout=grace)
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=5)
        if self._analyze_task is not None:
            self._tasks.append(self._analyze_task)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._completion_task is not None:
            async with self._flush_lock:  # not in the middle of writing a batch
                self._completion_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._completion_task
        await self._flush_done()

    def wake(self) -> None:
        """New work may be due (an enqueue in this process committed)."""
        self._wake.set()

    async def drain(self, timeout: float = 30.0) -> None:
        """Tests and benchmarks: wait until nothing is due and nothing runs here."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            due = await self.queue.oldest_due()
            if due is None and not self.active and not self._done:
                return
            self.wake()
            await asyncio.sleep(0.02)
        raise TimeoutError("jobs still pending after drain timeout")

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self._claim_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("claiming jobs failed (retrying): %s", exc)
                await asyncio.sleep(self.poll_interval)
            free = self.concurrency - len(self.active)
            if claimed and free > 0:
                continue  # there may be more
            await self._sleep_until_woken(free)

    async def _sleep_until_woken(self, free: int) -> None:
        timeout = self.poll_interval
        if free > 0:
            with contextlib.suppress(Exception):
                due = await self.queue.next_due(self.queues)
                # a job that was already due at the last claim and not taken is not ours
                # to take (a kind at its concurrency limit, a kind this worker does not
                # know): only a job falling due later shortens the sleep — else this loop
                # would query the database a thousand times a second
                if due is not None and due > self._claimed_at:
                    timeout = min(timeout, max(0.0, due - time.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.001))

    async def _claim_once(self) -> int:
        free = self.concurrency - len(self.active)
        if free <= 0 or self._stopping:
            return 0
        limited = self.limited_kinds()
        jobs: list[Job] = []
        self._claimed_at = time.time()
        for kind, max_running in sorted(limited.items()):
            room = free - len(jobs)
            if room <= 0:
                break
            jobs += await self.queue.claim_limited(
                self.name, kind, room, max_running, self.lease, queues=self.queues
            )
        room = free - len(jobs)
        if room > 0:
            started = time.perf_counter()
            jobs += await self.queue.claim(
                self.name,
                room,
                self.lease,
                queues=self.queues,
                kinds=self.kinds,
                exclude_kinds=list(limited),
            )
            if self.queue.pg and time.perf_counter() - started >= self.analyze_after:
                self._maybe_analyze()
        for job in jobs:
            self.stats.claimed += 1
            old = self.active.get(job.id)
            if old is not None:
                # an older attempt still runs here: this process stalled past its lease and
                # the job was rescued and claimed again (by us). Only the new attempt goes on.
                self._lose(*old)
            task = asyncio.create_task(self._execute(job))
            self.active[job.id] = (job, task)
        return len(jobs)

    def _maybe_analyze(self) -> None:
        now = time.monotonic()
        if now - self._analyzed_at < 30.0 or self._analyze_task is not None:
            return
        self._analyzed_at = now

        async def analyze() -> None:
            try:
                await self.queue.analyze()
                self.stats.analyzed += 1
            except Exception as exc:
                log.warning("could not refresh the job table's statistics: %s", exc)
            finally:
                self._analyze_task = None

        self._analyze_task = asyncio.create_task(analyze())

    # ------------------------------------------------------------------ running

    async def _execute(self, job: Job) -> None:
        started = time.perf_counter()
        task: asyncio.Task[Any] = asyncio.create_task(self.run_job(job))
        outcome: tuple[str, Any] = ("ok", None)
        error: BaseException | None = None
        try:
            done, _ = await asyncio.wait({task}, timeout=job.timeout)
            if not done:
                task.cancel()
                # a handler that ignores cancellation (a thread) keeps its lease until it ends
                await asyncio.wait({task})
                outcome = ("error", f"timed out after {job.timeout:g} s")
                error = TimeoutError(f"job {job.kind} timed out after {job.timeout:g} s")
            elif task.cancelled():
                outcome = ("cancelled", "cancelled while running")
            else:
                exc = task.exception()
                if exc is None:
                    outcome = ("ok", task.result())
                elif isinstance(exc, AlreadyCompleted):
                    outcome = ("done", None)
                elif isinstance(exc, Discard):
                    outcome, error = ("discard", _describe(exc)), exc
                else:
                    outcome, error = ("error", _describe(exc)), exc
        except asyncio.CancelledError:
            # this worker is stopping, or the job was cancelled or lost: end the handler too
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=5)
            outcome = ("cancelled", "cancelled while running")
            reason = self._why.pop((job.id, job.attempt), "stopping")
            if reason == "lost":
                self._untrack(job)
                return
            if reason == "stopping":
                outcome = ("release", None)
        await self._finish(job, outcome, time.perf_counter() - started, error)

    def _observed(
        self, job: Job, state: str | None, seconds: float, error: BaseException | None
    ) -> None:
        if self.observe is not None:
            try:
                self.observe(job, state or "lost", seconds, error)
            except Exception:
                log.exception("the job attempt observer failed")

    async def _finish(
        self,
        job: Job,
        outcome: tuple[str, Any],
        seconds: float = 0.0,
        error: BaseException | None = None,
    ) -> None:
        kind, value = outcome
        try:
            if kind == "ok":
                self._done.append((job, value))
                self._done_event.set()
                self.stats.completed += 1
                self._observed(job, "completed", seconds, None)
                return  # leaves `active` when the batch is written
            if kind == "done":
                self.stats.completed += 1
                self._observed(job, "completed", seconds, None)
            elif kind == "release":
                # shutting down: give the attempt back untouched, due now
                await self.queue.release(job)
            elif kind == "cancelled":
                self.stats.cancelled += 1
                self._observed(job, "cancelled", seconds, None)
                await self.queue.fail(job, value, retry_in=None, state="cancelled")
            else:
                pol = self.policies(job.kind)
                delay = backoff(job.attempt, pol.backoff_base, pol.backoff_max)
                state = None
                try:
                    state = await self.queue.fail(
                        job, value, retry_in=delay, discard=kind == "discard"
                    )
                finally:
                    self._observed(job, state, seconds, error or RuntimeError(str(value)))
                self.stats.failed += 1
                if state == "discarded":
                    self.stats.discarded += 1
                    log.warning("job %s (%s) discarded after %s attempt(s): %s",
                                job.id, job.kind, job.attempt, _first_line(value))  # fmt: skip
                else:
                    log.info("job %s (%s) attempt %s failed: %s",
                             job.id, job.kind, job.attempt, _first_line(value))  # fmt: skip
        except Exception as exc:  # the database is gone: the lease will expire and rescue it
            log.warning("could not record the end of job %s: %s", job.id, exc)
        if kind != "ok":
            self._untrack(job)
            self._wake.set()

    def _untrack(self, job: Job) -> None:
        """Forget this attempt — unless a newer attempt of the same job replaced it."""
        cur = self.active.get(job.id)
        if cur is not None and cur[0] is job:
            del self.active[job.id]

    def _lose(self, job: Job, task: asyncio.Task[Any]) -> None:
        """Another attempt owns the job now: stop this copy without recording anything."""
        self.stats.lost += 1
        log.warning("job %s attempt %s lost its lease; stopping it here", job.id, job.attempt)
        self._why[(job.id, job.attempt)] = "lost"
        task.cancel()

    async def _completion_loop(self) -> None:
        while True:
            await self._done_event.wait()
            await asyncio.sleep(0)  # let the other jobs finishing now join the batch
            await self._flush_done()

    async def _flush_done(self) -> None:
        async with self._flush_lock:
            await self._flush_batch()

    async def _flush_batch(self) -> None:
        self._done_event.clear()
        batch, self._done = self._done, []
        if not batch:
            return
        for attempt in range(3):
            try:
                await self.queue.complete_many(batch)
                break
            except Exception as exc:
                if attempt == 2:
                    log.warning(
                        "could not complete %d job(s) (they will rerun): %s", len(batch), exc
                    )
                await asyncio.sleep(0.2 * (attempt + 1))
        for job, _ in batch:
            self._untrack(job)
        self._wake.set()

    # ------------------------------------------------------------------ leases

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            running = [(job, t) for job, t in self.active.values() if not t.done()]
            if not running:
                continue
            try:
                held = await self.queue.heartbeat(
                    self.name, [(job.id, job.attempt) for job, _ in running], self.lease
                )
            except Exception as exc:
                log.warning("could not renew job leases: %s", exc)
                continue
            for job, task in running:
                if task.done() or self.active.get(job.id, (None,))[0] is not job:
                    continue  # ended (or replaced) while we renewed
                if job.id not in held:
                    self._lose(job, task)  # another attempt took it over: stop our copy
                elif held[job.id]:
                    self._why[(job.id, job.attempt)] = "cancel"
                    task.cancel()

    # ------------------------------------------------------------------ housekeeping

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.maintenance_interval)
            try:
                n = await self.queue.rescue()
                if n:
                    self.stats.rescued += n
                    log.warning("rescued %d job(s) whose worker stopped", n)
                    self._wake.set()
                now = time.time()
                pruned = 0
                # batches of short transactions until done: one batch per round would cap
                # pruning at 1000 jobs per interval, below what one worker completes
                for _ in range(PRUNE_BATCHES):
                    n = await self.queue.prune(
                        now - self.retention, now - self.discarded_retention, PRUNE_BATCH
                    )
                    pruned += n
                    if n < PRUNE_BATCH:
                        break
                    await asyncio.sleep(0)
                self.stats.pruned += pruned
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job maintenance failed: %s", exc)

    # ------------------------------------------------------------------ wake-ups

    async def _listen_loop(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.db_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # anything enqueued while we were not listening
                    async for note in conn.notifies():
                        if (
                            self.queues is None
                            or note.payload in self.queues
                            or note.payload == "retry"
                        ):
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job listener lost its connection (polling meanwhile): %s", exc)
                await asyncio.sleep(1.0)

    async def _sqlite_change_loop(self) -> None:
        """Another process's commit changes `PRAGMA data_version` of this connection."""
        last = None
        while True:
            await asyncio.sleep(self.sqlite_change_poll)
            try:
                row = await self.queue.db.fetchone("PRAGMA data_version")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: S112 (polled again in a moment; the poll is only a hint)
                continue
            v = row[0] if row else None
            if last is not None and v != last:
                self._wake.set()
            last = v


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = "".join(traceback.format_tb(exc.__traceback__)[-5:]) if exc.__traceback__ else ""
    return f"{text}\n{tb}".strip()


def _first_line(text: Any) -> str:
    return str(text).splitlines()[0][:300] if text else ""
