"""Record-change triggers, inside the write's own transaction.

`Records` calls `RecordEvents.emit` after a create, update or delete has been written and
before its transaction commits. Here:

- `before_commit` handlers run at once, in the transaction: raising refuses the write;
- `after_commit` handlers and matching webhook subscriptions become jobs, inserted in the
  same transaction — they exist if and only if the write commits (transactional outbox),
  and run after it with retries.

Built-in webhooks are just another subscriber, like a team's handler (DESIGN principle 3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.functions import RecordHandler, Reject
from shipyard.records.auth import Auth
from shipyard.records.collections import Collection
from shipyard.tools.db import Executor
from shipyard.tools.sandbox import IsolatedTimeout

if TYPE_CHECKING:
    from shipyard.jobs.jobs import Jobs
    from shipyard.webhooks.webhooks import Webhook, Webhooks

_SECRET = frozenset({"password", "tokenKey"})  # never in an event


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _now_iso() -> str:
    d = dt.datetime.now(dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _without(rec: dict[str, Any] | None, names: frozenset[str]) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {k: v for k, v in rec.items() if k not in names}


class BeforeContext:
    """`ctx` of a before_commit handler: the open transaction and a way to refuse."""

    def __init__(self, tx: Executor, event: dict[str, Any], jobs: Jobs) -> None:
        self.tx = tx
        self.event = event
        self.services = jobs.svc
        self._jobs = jobs

    @staticmethod
    def reject(message: str, data: dict[str, Any] | None = None) -> Reject:
        """`raise ctx.reject("…")`: the client gets a 400 with this message."""
        return Reject(message, data)

    async def enqueue(self, kind: str, args: Any = None, **options: Any) -> int:
        """A job that commits with this write (or not at all)."""
        return (await self._jobs.enqueue(kind, args, tx=self.tx, **options)).id


class Subscribers:
    """Who listens to one (collection, action): decided before the record is fetched."""

    def __init__(
        self, before: list[RecordHandler], after: list[RecordHandler], hooks: list[Webhook]
    ) -> None:
        self.before = before
        self.after = after
        self.webhooks = hooks

    def __bool__(self) -> bool:
        return bool(self.before or self.after or self.webhooks)


class RecordEvents:
    def __init__(self, jobs: Jobs, webhooks: Webhooks) -> None:
        self.jobs = jobs
        self.functions = jobs.functions
        self.webhooks = webhooks

    async def subscribers(self, tx: Executor, c: Collection, action: str) -> Subscribers:
        f = self.functions
        before = f.handlers_for(c.name, action, "before_commit")
        after = f.handlers_for(c.name, action, "after_commit")
        hooks = await self.webhooks.matching(tx, c.name, action)
        return Subscribers(before, after, hooks)

    async def emit(
        self,
        tx: Executor,
        subs: Subscribers,
        c: Collection,
        action: str,
        record: dict[str, Any],
        old: dict[str, Any] | None,
        auth: Auth | None,
    ) -> dict[str, Any]:
        event = {
            "id": new_event_id(),
            "type": f"record.{action}",
            "action": action,
            "collection": c.name,
            "collectionId": c.id,
            "record": _without(record, _SECRET),
            "oldRecord": _without(old, _SECRET),
            "timestamp": _now_iso(),
            "auth": None
            if auth is None or auth.collection is None
            else {"collection": auth.collection.name, "id": auth.id},
        }
        for h in subs.before:
            await self._run_before(h, tx, event)
        for h in subs.after:
            assert h.job is not None
            await self.jobs.enqueue(h.job.name, event, tx=tx, meta={"event": event["id"]})
        if subs.webhooks:
            # leaving the server: hidden fields are left out, as the records API leaves them out
            hidden = _SECRET | {f.name for f in c.fields if f.hidden}
            outgoing = {
                **event,
                "record": _without(record, hidden),
                "oldRecord": _without(old, hidden),
            }
            for w in subs.webhooks:
                await self.webhooks.enqueue_delivery(tx, w, outgoing)
        return event

    async def _run_before(self, h: RecordHandler, tx: Executor, event: dict[str, Any]) -> None:
        from shipyard.jobs.jobs import IsolatedFailure, call

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
