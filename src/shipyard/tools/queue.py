"""A durable job queue in the application's own database (SQLite or PostgreSQL).

Jobs are rows of one table, so enqueueing inside a caller's transaction makes a job exist
if and only if that transaction commits (the transactional outbox). Workers claim rows
atomically — PostgreSQL with `FOR UPDATE SKIP LOCKED`, SQLite under its single write lock —
and hold them under a *lease* they renew while the job runs; a job whose lease runs out
(its worker died) is put back for another attempt by whichever worker notices first.

State machine (the names River uses):

    scheduled ─┐
    available ─┼─ claim ─> running ─┬─ ok ───────────> completed
    retryable ─┘    ^               ├─ error, attempts left ─> retryable (at now + backoff)
                    │               ├─ error, no attempts left ─> discarded (dead letter)
                    └─ lease lost ──┤
                                    └─ cancel ───────> cancelled

A `unique_key` deduplicates: a second enqueue with the same key returns the first job. By
default the key is released when the job is finalized; with `keep_unique` it stays for as
long as the row exists (cron ticks use that: a tick fires once however many workers run).

Times are wall-clock epoch seconds from the process that writes them: machines sharing a
database need synchronized clocks (NTP), well within a lease.

The table itself — its states, columns, DDL, and its rows as `Job`s — is described in
tools/queue_table.py; this module holds the statements on it (`Queue`) and re-exports the
names callers import from here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

from shipyard.tools.db import Database, Executor
from shipyard.tools.queue_table import (
    CLAIM_SETS,
    COLS,
    FINAL,
    MAX_ERROR_CHARS,
    MAX_ERRORS_KEPT,
    NOTIFY_CHANNEL,
    PENDING,
    PENDING_SQL,
    PG_LOCK_ID,
    STATES,
    Enqueued,
    Job,
    QueueError,
    claimed,
    schema,
    to_json,
    with_error,
)

__all__ = [
    "FINAL",
    "MAX_ERRORS_KEPT",
    "MAX_ERROR_CHARS",
    "NOTIFY_CHANNEL",
    "PENDING",
    "STATES",
    "Enqueued",
    "Job",
    "Queue",
    "QueueError",
    "backoff",
]

_INT32 = 2**31


def backoff(attempt: int, base: float, cap: float, jitter: float = 0.2) -> float:
    """Seconds before retry `attempt` + 1: base * 2^(attempt - 1), at most `cap`, ±`jitter`
    (so jobs that failed together do not retry in lockstep)."""
    delay = min(cap, base * (2.0 ** max(attempt - 1, 0)))
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))  # noqa: S311 (spreads retries)


# PostgreSQL advisory lock key: claims take it shared, a restore exclusively, so no worker
# claims a job between the restore's load of the table and its hand-back of running jobs
RESTORE_GATE = 0x5348495059415244  # "SHIPYARD"


class Queue:
    """The `_jobs` table and every statement on it. Stateless: any number of processes."""

    def __init__(self, db: Database, table: str = "_jobs") -> None:
        self.db = db
        self.table = table
        self.pg = db.dialect == "postgres"
        self._returning = ", ".join(f'"{table}".{c.strip()}' for c in COLS.split(","))

    # ------------------------------------------------------------------ schema

    async def ensure_schema(self) -> None:
        async with self.db.transaction() as tx:
            if self.pg:
                await tx.execute(f"SELECT pg_advisory_xact_lock({PG_LOCK_ID})")
            for stmt in schema(self.table, self.pg):
                await tx.execute(stmt)

    # ------------------------------------------------------------------ enqueue

    async def enqueue(
        self,
        ex: Executor,
        kind: str,
        args: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 10,
        timeout: float = 60.0,
        run_at: float | None = None,
        unique_key: str | None = None,
        keep_unique: bool = False,
        meta: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Enqueued:
        """Insert a job on `ex` — the caller's open transaction, or the database itself.

        On PostgreSQL a NOTIFY goes with it, delivered to listening workers at commit."""
        if not kind or len(kind) > 200:
            raise QueueError("kind must be 1..200 characters")
        if not queue or len(queue) > 100:
            raise QueueError("queue must be 1..100 characters")
        if not -_INT32 <= priority < _INT32:
            raise QueueError("priority must be a 32-bit integer")
        if not 1 <= max_attempts < _INT32:
            raise QueueError("max_attempts must be at least 1")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise QueueError("timeout must be a finite number of seconds greater than 0")
        if run_at is not None and not math.isfinite(run_at):
            raise QueueError("run_at must be a finite time")
        if unique_key is not None and not 1 <= len(unique_key) <= 500:
            raise QueueError("unique_key must be 1..500 characters")
        now = time.time() if now is None else now
        at = now if run_at is None else float(run_at)
        state = "available" if at <= now else "scheduled"
        row = await ex.fetchone(
            f'INSERT INTO "{self.table}" ("kind", "queue", "args", "state", "priority", '
            '"max_attempts", "timeout", "created_at", "scheduled_at", "unique_key", '
            '"keep_unique", "meta") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
            'ON CONFLICT ("unique_key") DO NOTHING RETURNING "id"',
            (
                kind,
                queue,
                to_json(args, "args"),
                state,
                int(priority),
                int(max_attempts),
                float(timeout),
                now,
                at,
                unique_key,
                1 if keep_unique else 0,
                to_json(meta or {}, "meta"),
            ),
        )
        if row is None:  # the unique key is taken
            found = await ex.fetchone(
                f'SELECT "id" FROM "{self.table}" WHERE "unique_key" = ?', (unique_key,)
            )
            if found is None:  # released between the two statements: try once more
                return await self.enqueue(
                    ex, kind, args, queue=queue, priority=priority, max_attempts=max_attempts,
                    timeout=timeout, run_at=run_at, unique_key=unique_key,
                    keep_unique=keep_unique, meta=meta, now=now,
                )  # fmt: skip
            return Enqueued(int(found[0]), False)
        if self.pg:
            await ex.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, queue))
        return Enqueued(int(row[0]), True)

    # ------------------------------------------------------------------ claiming

    async def claim(
        self,
        worker: str,
        limit: int,
        lease: float,
        *,
        queues: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        exclude_kinds: Sequence[str] = (),
        now: float | None = None,
    ) -> list[Job]:
        """Atomically move up to `limit` due jobs to `running` for `worker`, in priority
        order (lower first), then due time, then id."""
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        where, args = self._due(now, queues, kinds, exclude_kinds)
        t = self.table
        set_args = (now, now + lease, worker)
        if self.pg:
            sql = (
                f'WITH "c" AS (SELECT "id" FROM "{t}" WHERE {where} '
                f'ORDER BY "priority", "scheduled_at", "id" LIMIT ? FOR UPDATE SKIP LOCKED) '
                f'UPDATE "{t}" SET {CLAIM_SETS} FROM "c" WHERE "{t}"."id" = "c"."id" '
                f"RETURNING {self._returning}"
            )
            rows = await self.db.fetchall(sql, (*args, limit, *set_args))
        else:
            rows = await self.db.fetchall(self._claim_sql(where), (*set_args, *args, limit))
        return claimed(rows)

    def _claim_sql(self, where: str) -> str:
        """Claim up to `?` jobs matching `where`, without row locks: SQLite (its write lock
        serializes claims) and PostgreSQL under claim_limited's advisory lock."""
        t = self.table
        return (
            f'UPDATE "{t}" SET {CLAIM_SETS} WHERE "id" IN (SELECT "id" FROM "{t}" '
            f'WHERE {where} ORDER BY "priority", "scheduled_at", "id" LIMIT ?) RETURNING {COLS}'
        )

    async def claim_limited(
        self,
        worker: str,
        kind: str,
        limit: int,
        max_running: int,
        lease: float,
        *,
        queues: Sequence[str] | None = None,
        now: float | None = None,
    ) -> list[Job]:
        """Claim jobs of a kind with a concurrency limit across every worker: at most
        `max_running` of them run at once (PostgreSQL serializes these claims per kind with
        an advisory lock; SQLite's write lock does it for free)."""
        now = time.time() if now is None else now
        t = self.table
        where, args = self._due(now, queues, [kind], ())
        # most claims find nothing of a limited kind due: say so with one read instead of a
        # locking transaction (4 more round trips on PostgreSQL; SQLite's write lock)
        if await self.db.fetchone(f'SELECT 1 FROM "{t}" WHERE {where} LIMIT 1', args) is None:
            return []
        async with self.db.transaction() as tx:
            if self.pg:
                await tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"{t}:{kind}",))
            row = await tx.fetchone(
                f'SELECT COUNT(*) FROM "{t}" WHERE "state" = \'running\' AND "kind" = ?', (kind,)
            )
            room = min(limit, max_running - int(row[0] if row else 0))
            if room <= 0:
                return []
            rows = await tx.fetchall(
                self._claim_sql(where), (now, now + lease, worker, *args, room)
            )
        return claimed(rows)

    def _due(
        self,
        now: float,
        queues: Sequence[str] | None,
        kinds: Sequence[str] | None,
        exclude_kinds: Sequence[str],
    ) -> tuple[str, list[Any]]:
        where = f'"state" IN ({PENDING_SQL}) AND "scheduled_at" <= ?'
        args: list[Any] = [now]
        if queues:
            where += f' AND "queue" IN ({", ".join("?" for _ in queues)})'
            args += list(queues)
        if kinds:
            where += f' AND "kind" IN ({", ".join("?" for _ in kinds)})'
            args += list(kinds)
        if exclude_kinds:
            where += f' AND "kind" NOT IN ({", ".join("?" for _ in exclude_kinds)})'
            args += list(exclude_kinds)
        if self.pg:  # no claim while a restore swaps the table (backups/restore.py)
            # an uncorrelated subquery: evaluated once per claim, not once per row scanned
            where += f" AND (SELECT pg_try_advisory_xact_lock_shared({RESTORE_GATE}))"
        return where, args

    async def analyze(self) -> None:
        """Refresh the planner's statistics of the job table (PostgreSQL; SQLite's plan for
        the claim does not depend on them)."""
        if self.pg:
            await self.db.execute(f'ANALYZE "{self.table}"')

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """When the earliest pending job becomes due (None: nothing pending)."""
        where, args = f'"state" IN ({PENDING_SQL})', []
        if queues:
            where += f' AND "queue" IN ({", ".join("?" for _ in queues)})'
            args += list(queues)
        row = await self.db.fetchone(
            f'SELECT MIN("scheduled_at") FROM "{self.table}" WHERE {where}', args
        )
        return None if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------------ while running

    async def heartbeat(
        self,
        worker: str,
        attempts: Sequence[tuple[int, int]],
        lease: float,
        now: float | None = None,
    ) -> dict[int, bool]:
        """Extend the leases of `worker`'s running attempts, given as (id, attempt) pairs.
        Returns {id: cancel requested} for those it still holds; a missing id was lost —
        rescued after its lease expired, and perhaps claimed again since (even by this same
        worker: the attempt number tells the old copy from the new one)."""
        if not attempts:
            return {}
        now = time.time() if now is None else now
        pairs = ", ".join("(?, ?)" for _ in attempts)
        rows = await self.db.fetchall(
            f'UPDATE "{self.table}" SET "lease_until" = ? WHERE "worker" = ? '
            f'AND "state" = \'running\' AND ("id", "attempt") IN ({pairs}) '
            'RETURNING "id", "cancel"',
            (now + lease, worker, *(v for pair in attempts for v in pair)),
        )
        return {int(r[0]): bool(r[1]) for r in rows}

    # ------------------------------------------------------------------ finishing

    def _final_sets(self) -> str:
        return (
            '"finished_at" = ?, "lease_until" = NULL, '
            '"unique_key" = CASE WHEN "keep_unique" = 1 THEN "unique_key" ELSE NULL END'
        )

    async def complete(
        self,
        ex: Executor | None,
        job: Job,
        result: Any = None,
        now: float | None = None,
    ) -> bool:
        """Mark the attempt completed — on `ex` to commit it together with the handler's own
        writes. False if the attempt no longer holds the job (its lease was lost)."""
        now = time.time() if now is None else now
        n = await (ex or self.db).execute(
            f'UPDATE "{self.table}" SET "state" = \'completed\', "result" = ?, '
            f'{self._final_sets()} WHERE "id" = ? AND "attempt" = ? AND "state" = \'running\'',
            (None if result is None else to_json(result, "result"), now, job.id, job.attempt),
        )
        return n == 1

    async def complete_many(self, done: Sequence[tuple[Job, Any]], now: float | None = None) -> int:
        """Complete many attempts in one statement per distinct result (no-op jobs: one)."""
        if not done:
            return 0
        now = time.time() if now is None else now
        groups: dict[str | None, list[Job]] = {}
        for job, result in done:
            key = None if result is None else to_json(result, "result")
            groups.setdefault(key, []).append(job)
        total = 0
        for result, jobs in groups.items():
            pairs = ", ".join("(?, ?)" for _ in jobs)
            args: list[Any] = [result, now]
            for j in jobs:
                args += [j.id, j.attempt]
            total += await self.db.execute(
                f'UPDATE "{self.table}" SET "state" = \'completed\', "result" = ?, '
                f"{self._final_sets()} WHERE \"state\" = 'running' "
                f'AND ("id", "attempt") IN ({pairs})',
                args,
            )
        return total

    async def fail(
        self,
        job: Job,
        error: str,
        *,
        retry_in: float | None,
        now: float | None = None,
        discard: bool = False,
        state: str | None = None,
    ) -> str | None:
        """Record a failed attempt: back to `retryable` after `retry_in` seconds while
        attempts remain (and `discard` is false), else `discarded`; `state` forces a final
        state (`cancelled`). Returns the new state, None if the attempt had lost the job."""
        now = time.time() if now is None else now
        if state is None:
            last = discard or retry_in is None or job.attempt >= job.max_attempts
            state = "discarded" if last else "retryable"
        if state == "retryable":
            sets = '"scheduled_at" = ?, "lease_until" = NULL, "worker" = NULL'
            args: list[Any] = [now + (retry_in or 0.0)]
        else:
            sets = self._final_sets()
            args = [now]
        n = await self.db.execute(
            f'UPDATE "{self.table}" SET "state" = ?, "errors" = ?, {sets} '
            f'WHERE "id" = ? AND "attempt" = ? AND "state" = \'running\'',
            (state, with_error(job, error, now), *args, job.id, job.attempt),
        )
        return state if n == 1 else None

    async def release(self, job: Job, now: float | None = None) -> bool:
        """Give a running attempt back untouched (its worker is shutting down): due now,
        and the attempt is not counted — a deploy must not dead-letter a job on its last
        attempt. False if the attempt no longer held the job."""
        now = time.time() if now is None else now
        n = await self.db.execute(
            f'UPDATE "{self.table}" SET "state" = \'available\', "attempt" = "attempt" - 1, '
            '"scheduled_at" = ?, "lease_until" = NULL, "worker" = NULL '
            'WHERE "id" = ? AND "attempt" = ? AND "state" = \'running\'',
            (now, job.id, job.attempt),
        )
        if n == 1 and self.pg:
            await self.db.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, job.queue))
        return n == 1

    async def rescue(self, now: float | None = None, limit: int = 500) -> int:
        """Put back running jobs whose lease expired (their worker died or lost the
        database): retryable now, or discarded when that was the last attempt."""
        now = time.time() if now is None else now
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        rows = await self.db.fetchall(
            f'SELECT {COLS} FROM "{self.table}" WHERE "state" = \'running\' '
            f'AND "lease_until" < ? ORDER BY "lease_until" LIMIT ?{lock}',
            (now, limit),
        )
        n = 0
        for r in rows:
            job = Job.from_row(r)
            msg = f"lease expired: worker {job.worker} stopped answering (lost or killed)"
            n += await self._rescue_one(job, msg, now)
        return n

    async def _rescue_one(self, job: Job, msg: str, now: float) -> int:
        last = job.cancel or job.attempt >= job.max_attempts
        # a job someone asked to cancel is not run again because its worker died
        state = "cancelled" if job.cancel else "discarded" if last else "retryable"
        sets = self._final_sets() if last else '"scheduled_at" = ?, "lease_until" = NULL'
        return await self.db.execute(
            f'UPDATE "{self.table}" SET "state" = ?, "errors" = ?, "worker" = NULL, {sets} '
            'WHERE "id" = ? AND "attempt" = ? AND "state" = \'running\' AND "lease_until" < ?',
            (state, with_error(job, msg, now), now, job.id, job.attempt, now),
        )

    # ------------------------------------------------------------------ operators

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetchone(f'SELECT {COLS} FROM "{self.table}" WHERE "id" = ?', (job_id,))
        return None if row is None else Job.from_row(row)

    async def cancel(
        self, job_id: int, now: float | None = None, tx: Executor | None = None
    ) -> str | None:
        """Cancel a pending job now, or ask the worker of a running one to stop it.
        Returns the job's state afterwards (None: no such job). With `tx`, the cancel
        commits (or not) with that transaction and None is returned."""
        now = time.time() if now is None else now
        if tx is not None:
            await tx.execute(
                f'UPDATE "{self.table}" SET "state" = \'cancelled\', {self._final_sets()} '
                f'WHERE "id" = ? AND "state" IN ({PENDING_SQL})',
                (now, job_id),
            )
            return None
        n = await self.db.execute(
            f'UPDATE "{self.table}" SET "state" = \'cancelled\', {self._final_sets()} '
            f'WHERE "id" = ? AND "state" IN ({PENDING_SQL})',
            (now, job_id),
        )
        if n == 0:
            await self.db.execute(
                f'UPDATE "{self.table}" SET "cancel" = 1 WHERE "id" = ? AND "state" = \'running\'',
                (job_id,),
            )
        job = await self.get(job_id)
        return None if job is None else job.state

    async def retry(self, job_id: int, now: float | None = None) -> str | None:
        """Run a finished or waiting job again now; a job that used all its attempts gets
        one more. Running jobs are left alone. Returns the state afterwards."""
        now = time.time() if now is None else now
        states = ", ".join(f"'{s}'" for s in (*PENDING, *FINAL))
        await self.db.execute(
            f'UPDATE "{self.table}" SET "state" = \'available\', "scheduled_at" = ?, '
            '"finished_at" = NULL, "cancel" = 0, "max_attempts" = CASE WHEN '
            '"attempt" >= "max_attempts" THEN "attempt" + 1 ELSE "max_attempts" END '
            f'WHERE "id" = ? AND "state" IN ({states})',
            (now, job_id),
        )
        if self.pg:
            await self.db.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, "retry"))
        job = await self.get(job_id)
        return None if job is None else job.state

    async def prune(
        self,
        completed_before: float,
        discarded_before: float,
        limit: int = 1000,
    ) -> int:
        """Delete completed/cancelled jobs finished before `completed_before`, discarded ones
        before `discarded_before`; at most `limit` rows per call (short transactions)."""
        rows = await self.db.fetchall(
            f'SELECT "id" FROM "{self.table}" WHERE "finished_at" IS NOT NULL AND ('
            "(\"state\" IN ('completed', 'cancelled') AND \"finished_at\" < ?) OR "
            '("state" = \'discarded\' AND "finished_at" < ?)) LIMIT ?',
            (completed_before, discarded_before, limit),
        )
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        return await self.db.execute(
            f'DELETE FROM "{self.table}" WHERE "id" IN ({", ".join("?" for _ in ids)})', ids
        )

    async def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 30,
    ) -> tuple[list[Job], int]:
        """Newest first, with the total count of the filter."""
        where, args = ["1 = 1"], []
        for col, val in (("state", state), ("kind", kind), ("queue", queue)):
            if val:
                where.append(f'"{col}" = ?')
                args.append(val)
        cond = " AND ".join(where)
        total = await self.db.fetchone(f'SELECT COUNT(*) FROM "{self.table}" WHERE {cond}', args)
        rows = await self.db.fetchall(
            f'SELECT {COLS} FROM "{self.table}" WHERE {cond} ORDER BY "id" DESC LIMIT ? OFFSET ?',
            (*args, limit, offset),
        )
        return [Job.from_row(r) for r in rows], int(total[0] if total else 0)

    async def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {state: n}} over the whole table."""
        rows = await self.db.fetchall(
            f'SELECT "kind", "state", COUNT(*) FROM "{self.table}" GROUP BY "kind", "state"'
        )
        out: dict[str, dict[str, int]] = {}
        for kind, state, n in rows:
            out.setdefault(str(kind), {})[str(state)] = int(n)
        return out

    async def oldest_due(self, now: float | None = None) -> float | None:
        """Age in seconds of the longest-waiting due job (queue lag), None when none waits."""
        now = time.time() if now is None else now
        row = await self.db.fetchone(
            f'SELECT MIN("scheduled_at") FROM "{self.table}" '
            f'WHERE "state" IN ({PENDING_SQL}) AND "scheduled_at" <= ?',
            (now,),
        )
        return None if row is None or row[0] is None else max(0.0, now - float(row[0]))

    async def due_by_queue(self, now: float | None = None) -> dict[str, tuple[int, float]]:
        """Per queue with due jobs waiting: how many, and the age in seconds of the oldest
        (the queue's depth and lag, for metrics)."""
        now = time.time() if now is None else now
        rows = await self.db.fetchall(
            f'SELECT "queue", COUNT(*), MIN("scheduled_at") FROM "{self.table}" '
            f'WHERE "state" IN ({PENDING_SQL}) AND "scheduled_at" <= ? GROUP BY "queue"',
            (now,),
        )
        return {str(q): (int(n), max(0.0, now - float(oldest))) for q, n, oldest in rows}
