"""The job queue's table (tools/queue.py): its states, its columns and the statements that
create it, and its rows as `Job`s — what the statements of `Queue` share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

PENDING = ("scheduled", "available", "retryable")
FINAL = ("completed", "discarded", "cancelled")
STATES = (*PENDING, "running", *FINAL)
NOTIFY_CHANNEL = "shipyard_jobs"
MAX_ERRORS_KEPT = 20  # per job: the most recent attempts' errors
MAX_ERROR_CHARS = 4000
PENDING_SQL = ", ".join(f"'{state}'" for state in PENDING)  # for `"state" IN (…)`
# what a claim sets: the attempt starts now, held by `worker` until the lease runs out
CLAIM_SETS = (
    '"state" = \'running\', "attempt" = "attempt" + 1, "attempted_at" = ?, '
    '"lease_until" = ?, "worker" = ?'
)
PG_LOCK_ID = 7415  # advisory lock: one process creates the table at a time

COLS = (
    '"id", "kind", "queue", "args", "state", "priority", "attempt", "max_attempts", '
    '"timeout", "created_at", "scheduled_at", "attempted_at", "finished_at", "lease_until", '
    '"worker", "errors", "result", "unique_key", "meta", "cancel"'
)


class QueueError(ValueError):
    """A job could not be enqueued as asked (bad options, arguments not JSON)."""


@dataclass
class Job:
    id: int
    kind: str
    queue: str
    args: Any
    state: str
    priority: int
    attempt: int
    max_attempts: int
    timeout: float
    created_at: float
    scheduled_at: float
    attempted_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    worker: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    unique_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    cancel: bool = False

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> Job:
        return cls(
            id=int(r[0]),
            kind=str(r[1]),
            queue=str(r[2]),
            args=orjson.loads(r[3]),
            state=str(r[4]),
            priority=int(r[5]),
            attempt=int(r[6]),
            max_attempts=int(r[7]),
            timeout=float(r[8]),
            created_at=float(r[9]),
            scheduled_at=float(r[10]),
            attempted_at=None if r[11] is None else float(r[11]),
            finished_at=None if r[12] is None else float(r[12]),
            lease_until=None if r[13] is None else float(r[13]),
            worker=r[14],
            errors=orjson.loads(r[15]) if r[15] else [],
            result=orjson.loads(r[16]) if r[16] is not None else None,
            unique_key=r[17],
            meta=orjson.loads(r[18]) if r[18] else {},
            cancel=bool(r[19]),
        )


@dataclass
class Enqueued:
    id: int
    created: bool  # False: a job with the same unique key existed, `id` is that job


def to_json(value: Any, what: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise QueueError(f"{what} must be JSON-serializable: {exc}") from None


def schema(table: str, pg: bool) -> list[str]:
    """The statements that create the table and its indexes (idempotent)."""
    t = table
    real = "DOUBLE PRECISION" if pg else "REAL"
    ident = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    return [
        f'CREATE TABLE IF NOT EXISTS "{t}" ('
        f'"id" {ident}, '
        '"kind" TEXT NOT NULL, '
        '"queue" TEXT NOT NULL, '
        '"args" TEXT NOT NULL, '
        '"state" TEXT NOT NULL, '
        '"priority" INTEGER NOT NULL, '
        '"attempt" INTEGER NOT NULL DEFAULT 0, '
        '"max_attempts" INTEGER NOT NULL, '
        f'"timeout" {real} NOT NULL, '
        f'"created_at" {real} NOT NULL, '
        f'"scheduled_at" {real} NOT NULL, '
        f'"attempted_at" {real}, '
        f'"finished_at" {real}, '
        f'"lease_until" {real}, '
        '"worker" TEXT, '
        "\"errors\" TEXT NOT NULL DEFAULT '[]', "
        '"result" TEXT, '
        '"unique_key" TEXT UNIQUE, '
        '"keep_unique" INTEGER NOT NULL DEFAULT 0, '
        "\"meta\" TEXT NOT NULL DEFAULT '{}', "
        '"cancel" INTEGER NOT NULL DEFAULT 0)',
        # what a claim reads: pending jobs in priority order, nothing else
        f'CREATE INDEX IF NOT EXISTS "{t}_fetch" ON "{t}" '
        f'("priority", "scheduled_at", "id") WHERE "state" IN ({PENDING_SQL})',
        f'CREATE INDEX IF NOT EXISTS "{t}_lease" ON "{t}" ("lease_until") '
        "WHERE \"state\" = 'running'",
        f'CREATE INDEX IF NOT EXISTS "{t}_state_kind" ON "{t}" ("state", "kind", "id")',
        f'CREATE INDEX IF NOT EXISTS "{t}_finished" ON "{t}" ("finished_at") '
        'WHERE "finished_at" IS NOT NULL',
    ]


def claimed(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """Claimed rows as jobs in claim order (RETURNING does not keep it)."""
    jobs = [Job.from_row(r) for r in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


def with_error(job: Job, error: str, now: float) -> str:
    """The job's error list with this attempt's error added, as stored (the newest kept)."""
    text = error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS] + "…"
    entry = {"attempt": job.attempt, "at": now, "error": text}
    return to_json([*job.errors, entry][-MAX_ERRORS_KEPT:], "errors")
