"""Record-change triggers of the team's functions, inside the write's own transaction.

A subscriber of the record-event bus (records/events.py), like any extension's:

- `before_commit` handlers run at once, in the transaction: raising refuses the write;
- `after_commit` handlers become jobs, inserted in the same transaction — they exist if
  and only if the write commits (transactional outbox), and run after it with retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.jobs.jobs import IsolatedFailure, Jobs, call
from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.functions import RecordHandler, Reject
from shipyard.records.collections import Collection
from shipyard.records.events import Listener, RecordChange, keeps_record
from shipyard.tools.db import Executor
from shipyard.tools.sandbox import IsolatedTimeout


class BeforeContext:
    """`ctx` of a before_commit handler: the open transaction and a way to refuse."""

    def __init__(self, tx: Executor, event: dict[str, Any], jobs: Jobs) -> None:
        self.tx = tx
        self.event = event
        self.services = jobs.host
        self._jobs = jobs

    @staticmethod
    def reject(message: str, data: dict[str, Any] | None = None) -> Reject:
        """`raise ctx.reject("…")`: the client gets a 400 with this message."""
        return Reject(message, data)

    async def enqueue(self, kind: str, args: Any = None, **options: Any) -> int:
        """A job that commits with this write (or not at all)."""
        return (await self._jobs.enqueue(kind, args, tx=self.tx, **options)).id


class FunctionTriggers:
    """The bus subscriber of the functions registered for record events."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.functions = jobs.functions

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None:
        before = self.functions.handlers_for(c.name, action, "before_commit")
        after = self.functions.handlers_for(c.name, action, "after_commit")
        if not before and not after:
            return None

        async def run(tx: Executor, change: RecordChange) -> None:
            for h in before:
                await self._run_before(h, tx, change.event)
            for h in after:
                assert h.job is not None  # noqa: S101  (narrows a type for mypy; established above)
                event = change.event
                await self.jobs.enqueue(h.job.name, event, tx=tx, meta={"event": event["id"]})

        # a before_commit hook may change the record (ctx.tx); enqueueing alone does not
        return run if before else keeps_record(run)

    async def _run_before(self, h: RecordHandler, tx: Executor, event: dict[str, Any]) -> None:
        timeout = (
            h.job.options.timeout if h.job and h.job.options.timeout else None
        ) or self.jobs.settings.functions_timeout
        late = ApiError(
            503, f"The {h.name} hook did not finish in {timeout:g} s; nothing was saved."
        )
        try:
            # only when the handler asks: SHIPYARD_FUNCTIONS_ISOLATED would take ctx.tx and
            # ctx.reject away from every before_commit handler written for them
            if h.job is not None and h.job.options.isolated:
                info = {"handler": h.name, "event": event["id"]}
                # a Reject raised in the subprocess comes back as one (caught below)
                await self.jobs.call_isolated(h.job, event, info, timeout, reraise=(Reject,))
            else:
                ctx = BeforeContext(tx, event, self.jobs)
                await asyncio.wait_for(call(h.fn, ctx, event), timeout=timeout)
        except Reject as exc:
            raise bad_request(exc.message, exc.data) from None
        except IsolatedFailure as exc:
            if isinstance(exc.error, IsolatedTimeout):
                raise late from None
            raise
        except TimeoutError:
            raise late from None
