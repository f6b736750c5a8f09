"""Running a batch: every sub-request, in order, inside ONE database transaction.

The transaction is the database's shared one (`transaction(share=True)`, tools/db_base.py):
each record write opens its own `transaction()` as it always does, which joins it as a
savepoint, and every read in between (rules, relation checks, expand) sees the batch's
earlier writes. Record events, the jobs and webhooks they enqueue (a transactional outbox)
and stored uploads happen inside it exactly as for single writes; the response cache hears
of the written tables once, after the commit (tools/dbwatch.py).

Each sub-request runs under its own collection's rules with the batch caller's auth (as
PocketBase: a sub-request's own `Authorization` header changes nothing but what
`@request.headers.*` reads) and is counted against the rate limit rule of its own route.
The first sub-request that fails rolls everything back and is reported under
`data.requests.N` (`batch_request_failed`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.web import DB_ERRORS, db_error
from shipyard.records.auth import Auth
from shipyard.records.context import RequestContext, query_of, rule_headers

from .form import SubRequest

if TYPE_CHECKING:
    from shipyard.services import Services

# PocketBase's four batch actions; anything else fails as "unknown batch request action"
_COLLECTION = re.compile(r"^/api/collections/(?P<c>[^/?]+)/records(?:\?(?P<q>.*))?$")
_RECORD = re.compile(r"^/api/collections/(?P<c>[^/?]+)/records/(?P<id>[^/?]+)(?:\?(?P<q>.*))?$")
_ACTIONS = {"POST": _COLLECTION, "PUT": _COLLECTION, "PATCH": _RECORD, "DELETE": _RECORD}

FAILED = "Batch transaction failed."
TOO_MANY = "Too Many Requests."  # PocketBase's 429 message


class BatchFailed(Exception):
    """Sub-request `index` failed with `error`: the batch is rolled back."""

    def __init__(self, index: int, error: ApiError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error

    def answer(self) -> ApiError:
        """PocketBase's answer: the failing index under `data.requests`."""
        item = {
            "code": "batch_request_failed",
            "message": "Batch request failed.",
            "response": self.error.to_dict(),
        }
        return bad_request(FAILED, {"requests": {str(self.index): item}})


@dataclass(frozen=True)
class Caller:
    """What every sub-request inherits from the batch request."""

    auth: Auth
    scope: Mapping[str, Any]  # the batch request's ASGI scope (client, headers)


def _upsert_id(body: dict[str, Any]) -> str:
    """The id a PUT names (PocketBase casts numbers to text)."""
    value = body.get("id")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return ""


class Batch:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def run(self, subs: list[SubRequest], caller: Caller, timeout: float) -> list[Any]:
        """The results `[{status, body}]`, all committed; or BatchFailed / a timeout's 400
        with nothing written."""
        results: list[dict[str, Any]] = []
        try:
            async with self.svc.db.transaction(share=True):
                async with asyncio.timeout(timeout):
                    for i, sub in enumerate(subs):
                        if i:
                            # SQLite runs in the coroutine: without a pass through the event
                            # loop a long batch would hold it (no cached read served, the
                            # admission heartbeat late, other requests refused with 503)
                            await asyncio.sleep(0)
                        try:
                            results.append(await self._one(sub, caller))
                        except ApiError as err:
                            raise BatchFailed(i, err) from err
                        except DB_ERRORS as exc:
                            raise BatchFailed(i, db_error(exc, sub.method, sub.url)) from exc
        except TimeoutError:
            raise bad_request(FAILED) from None  # PocketBase's answer to its timeout
        return results

    async def _one(self, sub: SubRequest, caller: Caller) -> dict[str, Any]:
        pattern = _ACTIONS.get(sub.method)
        m = pattern.match(sub.url) if pattern is not None else None
        if m is None:
            raise bad_request()  # PocketBase: "Something went wrong while processing…"
        svc = self.svc
        name = m.group("c")
        if svc.store.get(name) is None:
            await svc.store.reload()  # made by another process whose news has not come yet
        c = svc.store.require(name)
        method = sub.method
        rid = m.groupdict().get("id") or ""
        if method == "PUT":  # upsert: an update when the body names an existing record
            rid = _upsert_id(sub.body)
            found = rid and await svc.db.fetchone(
                f'SELECT 1 FROM "{c.table}" WHERE "id" = ?', (rid,)
            )
            method = "PATCH" if found else "POST"
        path = sub.url.partition("?")[0]
        if method == "PATCH" and sub.method == "PUT":
            path = f"{path}/{rid}"
        await self._limit(caller, method, path)
        ctx = self._context(caller, sub, method, m.group("q") or "")
        records = svc.records
        if method == "DELETE":
            await records.delete(c, rid, ctx)
            return {"status": 204, "body": None}
        q = records.view_query(ctx.query)
        if method == "POST":
            return {"status": 200, "body": await records.create(c, sub.body, ctx, q)}
        return {"status": 200, "body": await records.update(c, rid, sub.body, ctx, q)}

    async def _limit(self, caller: Caller, method: str, path: str) -> None:
        """The sub-request counted against its own route's rate limit rule."""
        scope = {**caller.scope, "method": method, "path": path}
        verdict = await self.svc.ratelimits.check(scope)
        if verdict is not None and verdict.denied:
            raise ApiError(429, TOO_MANY)

    @staticmethod
    def _context(caller: Caller, sub: SubRequest, method: str, query: str) -> RequestContext:
        own = [
            (k.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace"))
            for k, v in sub.headers.items()
        ]
        scope = caller.scope
        client = scope.get("client")
        return RequestContext(
            auth=caller.auth,
            headers=rule_headers([*own, *scope["headers"]]),  # the sub-request's own first
            query=query_of(query.encode()),
            ip=str(client[0]) if client else "",
            method=method,
        )
