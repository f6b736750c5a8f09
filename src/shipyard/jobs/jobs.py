"""The job system of one process: registered job types, enqueueing, running handlers.

Built on tools/queue.py (the table) and tools/worker.py (the loop). Handlers are the
functions registered in `Functions` registries — the built-in ones and the team's hooks
module — and run here in-process (`fn(ctx, args)`, async or not) or, when the type is
isolated, in a subprocess with a wall-time and a memory limit (tools/sandbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.jobs.cron import CronScheduler
from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.functions import CronJob, Functions, JobType
from shipyard.kernel.telemetry import Telemetry
from shipyard.records.collections import SUPERUSERS
from shipyard.records.context import RequestContext
from shipyard.records.fields import format_date
from shipyard.tools.db import Database, Executor
from shipyard.tools.queue import Enqueued, Job, Queue, QueueError
from shipyard.tools.sandbox import IsolatedError, run_isolated
from shipyard.tools.tasks import cancel
from shipyard.tools.worker import AlreadyCompleted, Discard, KindPolicy, Worker

if TYPE_CHECKING:
    from shipyard.records.records import Records
    from shipyard.records.schema import SchemaStore
    from shipyard.settings import Settings

log = logging.getLogger("shipyard.jobs")
# seconds: a job may run from milliseconds to its timeout (an hour at most, typically)
JOB_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

__all__ = ["Discard", "JobContext", "Jobs"]


class LeaseLost(Exception):
    """The attempt no longer holds its job: its transaction is rolled back."""


class RecordsFacade:
    """Records operations for job code, as a superuser (rules do not apply)."""

    def __init__(self, store: SchemaStore, records: Records) -> None:
        self._store = store
        self._records = records

    def _ctx(self, query: Mapping[str, str] | None = None) -> RequestContext:
        return RequestContext.system(self._store.require(SUPERUSERS), "jobs", query)

    async def create(self, collection: str, data: dict[str, Any]) -> dict[str, Any]:
        c = self._store.require(collection)
        return await self._records.create(c, data, self._ctx())

    async def update(self, collection: str, rid: str, data: dict[str, Any]) -> dict[str, Any]:
        c = self._store.require(collection)
        return await self._records.update(c, rid, data, self._ctx())

    async def delete(self, collection: str, rid: str) -> None:
        c = self._store.require(collection)
        await self._records.delete(c, rid, self._ctx())

    async def view(self, collection: str, rid: str) -> dict[str, Any] | None:
        c = self._store.require(collection)
        try:
            return await self._records.view(c, rid, self._ctx())
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, collection: str, **params: Any) -> dict[str, Any]:
        """`params` are the list API's query parameters: filter, sort, page, perPage…"""
        c = self._store.require(collection)
        query = {k: str(v) for k, v in params.items()}
        return await self._records.list_page(c, self._ctx(query), self._records.list_query(query))


class JobContext:
    """What an in-process handler gets as `ctx`."""

    def __init__(self, jobs: Jobs, job: Job) -> None:
        self.jobs = jobs
        self.job = job
        self.services = jobs.host
        self.db: Database = jobs.db
        self.records = RecordsFacade(jobs.store, jobs.records)
        self.log = logging.getLogger(f"shipyard.jobs.{job.kind}")
        self.completed = False

    @property
    def settings(self) -> Any:
        return self.jobs.settings

    async def enqueue(self, kind: str, args: Any = None, **options: Any) -> int:
        """Enqueue another job; returns its id."""
        return (await self.jobs.enqueue(kind, args, **options)).id

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """Writes that commit together with this job's completion: if the block commits the
        job is completed, exactly once; if it raises, neither happens. Return soon after."""
        async with self.jobs.db.transaction() as tx:
            yield tx
            if not await self.jobs.queue.complete(tx, self.job):
                raise LeaseLost(f"job {self.job.id} attempt {self.job.attempt} lost its lease")
        self.completed = True


def _iso(epoch: float | None) -> str:
    """An epoch time in the API's date format ("" for none)."""
    return "" if epoch is None else format_date(dt.datetime.fromtimestamp(epoch, dt.UTC))


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it (PocketBase-style dates, camelCase)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "state": job.state,
        "args": job.args,
        "priority": job.priority,
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
        "timeout": job.timeout,
        "created": _iso(job.created_at),
        "scheduledAt": _iso(job.scheduled_at),
        "attemptedAt": _iso(job.attempted_at),
        "finishedAt": _iso(job.finished_at),
        "leaseUntil": _iso(job.lease_until),
        "worker": job.worker or "",
        "errors": [{**e, "at": _iso(e.get("at"))} for e in job.errors],
        "result": job.result,
        "uniqueKey": job.unique_key or "",
        "cancelRequested": job.cancel,
        "waitMs": None
        if job.attempted_at is None
        else round((job.attempted_at - job.scheduled_at) * 1000, 3),
        "runMs": None
        if job.attempted_at is None or job.finished_at is None
        else round((job.finished_at - job.attempted_at) * 1000, 3),
    }


class Jobs:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        raw_db: Database,
        store: SchemaStore,
        records: Records,
        functions: Functions,
        hooks_module: tuple[str, str | None] | None,
        host: Any = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """`functions`: the team's hooks; capabilities add theirs with `register`. `host`
        is what handlers see as `ctx.services` (the application's services); `telemetry`
        counts finished attempts and hears of failed ones (kernel/telemetry.py)."""
        self.settings = settings
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        m = self.telemetry.metrics
        self.jobs_total = m.counter(
            "shipyard_jobs_total",
            "Finished job attempts by kind and the state they left the job in: completed, "
            "retryable (failed, retried later), discarded (dead letter), cancelled, lost.",
            ("kind", "state"),
        )
        self.job_duration = m.histogram(
            "shipyard_job_duration_seconds",
            "How long job attempts ran, by kind.",
            ("kind",),
            JOB_BUCKETS,
        )
        self.db = db
        self.store = store
        self.records = records
        self.host = host
        self.functions = functions
        self.hooks_module = hooks_module  # (module name, file) of the team's hooks
        self.types: dict[str, JobType] = dict(functions.jobs)
        # worker bookkeeping on the raw database: job state changes invalidate no cache
        self.queue = Queue(raw_db)
        self.worker: Worker | None = None
        self._cron_task: asyncio.Task[None] | None = None

    def register(self, functions: Functions) -> None:
        """Job kinds, crons and record handlers a capability contributes (before start)."""
        self.functions = functions.merge(self.functions)
        self.types = dict(self.functions.jobs)

    async def ensure_schema(self) -> None:
        await self.queue.ensure_schema()

    # ------------------------------------------------------------------ enqueue

    def job_type(self, kind: str) -> JobType:
        jt = self.types.get(kind)
        if jt is None:
            raise bad_request(
                f"Unknown job kind {kind!r}.",
                {"kind": {"code": "validation_unknown_kind", "message": "No such job type."}},
            )
        return jt

    async def enqueue(
        self,
        kind: str,
        args: Any = None,
        *,
        tx: Executor | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        run_at: float | None = None,
        delay: float | None = None,
        unique_key: str | None = None,
        keep_unique: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Enqueued:
        """Enqueue a registered job type. With `tx` it commits (or not) with that
        transaction; without, it commits now."""
        jt = self.job_type(kind)
        o = jt.options
        s = self.settings
        if delay is not None:
            run_at = time.time() + delay
        try:
            done = await self.queue.enqueue(
                tx or self.db,
                kind,
                args,
                queue=queue or o.queue,
                priority=o.priority if priority is None else priority,
                max_attempts=max_attempts or o.max_attempts or s.jobs_max_attempts,
                timeout=timeout or o.timeout or s.functions_timeout,
                run_at=run_at,
                unique_key=unique_key,
                keep_unique=keep_unique,
                meta=meta,
            )
        except QueueError as exc:
            raise bad_request(f"Invalid job: {exc}.") from None
        if tx is None:  # committed already (in a transaction: woken after its commit)
            self.written({self.queue.table})
        return done

    async def retry(self, job_id: int) -> str | None:
        """Run a finished or waiting job again now (wakes this process's worker)."""
        state = await self.queue.retry(job_id)
        self.written({self.queue.table})
        return state

    async def cancel(self, job_id: int, tx: Executor | None = None) -> str | None:
        """Cancel a job; with `tx`, if and only if that transaction commits."""
        return await self.queue.cancel(job_id, tx=tx)

    async def enqueue_cron(self, cj: CronJob, tick: float) -> Enqueued:
        return await self.enqueue(
            cj.job.name,
            {"tick": _iso(tick), "schedule": cj.schedule},
            run_at=tick,
            unique_key=f"cron:{cj.name}:{int(tick)}",
            keep_unique=True,
        )

    # ------------------------------------------------------------------ running

    def policy(self, kind: str) -> KindPolicy:
        jt = self.types.get(kind)
        s = self.settings
        o = jt.options if jt else None
        return KindPolicy(
            backoff_base=(o.backoff_base if o and o.backoff_base else s.jobs_backoff_base),
            backoff_max=(o.backoff_max if o and o.backoff_max else s.jobs_backoff_max),
        )

    def limited(self) -> dict[str, int]:
        return {k: jt.options.concurrency for k, jt in self.types.items() if jt.options.concurrency}

    def isolated(self, jt: JobType) -> bool:
        if jt.builtin:
            return False
        return (
            self.settings.functions_isolated if jt.options.isolated is None else jt.options.isolated
        )

    async def run(self, job: Job) -> Any:
        """The worker's runner: call the job's handler; its return value is the result."""
        jt = self.types.get(job.kind)
        if jt is None:  # not claimed by this worker (kinds filter); defensive
            raise Discard(f"no handler registered for job kind {job.kind!r}")
        if self.isolated(jt):  # a Discard raised in the subprocess comes back as one
            return await self.call_isolated(
                jt, job.args, job_info(job), job.timeout, reraise=(Discard,)
            )
        ctx = JobContext(self, job)
        result = await call(jt.fn, ctx, job.args)
        if ctx.completed:
            raise AlreadyCompleted()
        try:  # a result the queue cannot store would fail the completion of its whole batch
            orjson.dumps(result)
        except TypeError as exc:
            raise Discard(f"the handler's result is not JSON-serializable: {exc}") from None
        return result

    async def call_isolated(
        self,
        jt: JobType,
        payload: Any,
        info: dict[str, Any],
        timeout: float,
        *,
        reraise: tuple[type[Exception], ...] = (),
    ) -> Any:
        """Run the job type's function in a subprocess. An exception of a class in `reraise`
        is raised as itself; any other failure is an `IsolatedFailure`."""
        module, qualname = jt.fn.__module__, jt.fn.__qualname__
        file = None
        if self.hooks_module and module == self.hooks_module[0]:
            file = self.hooks_module[1]
        try:
            return await run_isolated(
                module,
                qualname,
                [payload],
                module_file=file,
                timeout=timeout,
                memory_mb=jt.options.memory_mb or self.settings.functions_memory_mb,
                context={"job": info, "isolated": True},
                reraise=reraise,
            )
        except IsolatedError as exc:
            raise IsolatedFailure(f"isolated {jt.name}: {exc}", exc) from None

    # ------------------------------------------------------------------ the worker

    def start_worker(
        self, concurrency: int | None = None, queues: list[str] | None = None
    ) -> Worker:
        s = self.settings
        qs = queues if queues is not None else [q for q in s.jobs_queues.split(",") if q.strip()]
        worker = Worker(
            self.queue,
            self.run,
            policies=self.policy,
            limited_kinds=self.limited,
            kinds=sorted(self.types),
            queues=[q.strip() for q in qs] or None,
            concurrency=concurrency or s.jobs_concurrency,
            lease=s.jobs_lease,
            poll_interval=s.jobs_poll_interval,
            retention=s.jobs_retention,
            discarded_retention=s.jobs_discarded_retention,
            # look for expired leases well within a lease: a dead worker's jobs come back
            # about one lease after it stopped renewing them
            maintenance_interval=min(5.0, s.jobs_lease / 2),
            db_url=s.database_url if s.is_postgres else "",
            observe=self.attempt_done,
        )
        worker.start()
        self.worker = worker
        crons = list(self.functions.crons.values())
        if crons:
            sched = CronScheduler(crons, self.enqueue_cron)
            self._cron_task = asyncio.create_task(sched.run())
        log.info("job worker %s started (%d kinds, concurrency %d)",
                 worker.name, len(self.types), worker.concurrency)  # fmt: skip
        return worker

    def attempt_done(
        self, job: Job, state: str, seconds: float, error: BaseException | None
    ) -> None:
        """The worker's report of a finished attempt: counted, and a failed one goes to the
        exception sinks (error tracking), saying whether the job is now dead-lettered."""
        telemetry = self.telemetry
        if telemetry.metrics_enabled:
            self.jobs_total.inc((job.kind, state))
            self.job_duration.observe(seconds, (job.kind,))
        if error is not None:
            telemetry.exception(
                error,
                {
                    "kind": "job",
                    "job_kind": job.kind,
                    "job_id": job.id,
                    "queue": job.queue,
                    "attempt": job.attempt,
                    "dead": state == "discarded",
                },
            )

    def written(self, tables: set[str]) -> None:
        """After a commit in this process: wake the local worker if jobs were enqueued."""
        if self.worker is not None and self.queue.table in tables:
            self.worker.wake()

    async def close(self) -> None:
        await cancel(self._cron_task)
        self._cron_task = None
        if self.worker is not None:
            await self.worker.stop(grace=self.settings.jobs_shutdown_grace)
            self.worker = None


class IsolatedFailure(Exception):
    """An isolated function failed (timeout, memory, exception, crash): the attempt fails.
    `error` is the sandbox's typed account of it (an `IsolatedError` subclass)."""

    def __init__(self, message: str, error: IsolatedError) -> None:
        super().__init__(message)
        self.error = error


def job_info(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
    }


class HandlerExit(Exception):
    """A handler called sys.exit(): that fails its attempt, it does not stop the process."""


async def call(fn: Any, *args: Any) -> Any:
    """Call a handler: await a coroutine function; run a plain function in a thread, and if
    the caller is cancelled (timeout), wait for the thread to end before giving up, so the
    job's lease is held for as long as its code runs. A `SystemExit` from the handler would
    end the event loop — the worker, or the whole `shipyard serve` process — and its job
    would then do the same to the next worker: it is an ordinary failure instead."""
    try:
        return await _call(fn, *args)
    except SystemExit as exc:
        raise HandlerExit(f"the handler called sys.exit({exc.code!r})") from None


async def _call(fn: Any, *args: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, fn, *args)
    try:
        result = await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await fut
        raise
    if inspect.isawaitable(result):
        return await result
    return result
