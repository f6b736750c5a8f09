"""Access rules to SQL: the condition a collection's rule adds for one request, and which
auth records the requester manages (the manageRule)."""

from __future__ import annotations

from typing import Any

from shipyard.kernel.errors import forbidden
from shipyard.records import query
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.schema import SchemaStore
from shipyard.tools.db import Executor

ONLY_SUPERUSERS = "Only superusers can perform this action."
# the method a rule sees is the action's, whichever HTTP method reached it (HEAD lists too)
_METHODS = {"list": "GET", "view": "GET", "create": "POST", "update": "PATCH", "delete": "DELETE"}

Condition = tuple[str, list[Any]]


def request_info(
    ctx: RequestContext, body: dict[str, Any] | None = None, method: str = "GET"
) -> dict[str, Any]:
    """What `@request.*` resolves to in rules and filters (plain dicts: the compiler walks
    them as JSON-like values)."""
    auth = ctx.auth
    return {
        "auth": (
            {
                **auth.record,
                "collectionId": auth.collection.id,
                "collectionName": auth.collection.name,
            }
            if auth.collection
            else {}
        ),
        "query": dict(ctx.query),
        "headers": dict(ctx.headers),
        "body": body or {},
        "method": method,
    }


class Rules:
    def __init__(self, store: SchemaStore) -> None:
        self.store = store

    def sql(
        self,
        c: Collection,
        action: str,
        ctx: RequestContext,
        body: dict[str, Any] | None = None,
    ) -> Condition | None:
        """The SQL condition a rule adds; None when no condition applies (superuser or "")."""
        if ctx.auth.is_superuser:
            return None
        rule = c.rule(action)
        if rule is None:
            raise forbidden(ONLY_SUPERUSERS)
        if rule.strip() == "":
            return None
        return query.compile_filter(
            rule,
            c,
            self.store,
            self.store.dialect,
            request=request_info(ctx, body, _METHODS[action]),
            limits=None,
            allow_hidden=True,
        )

    async def managed(
        self,
        db: Executor,
        c: Collection,
        ids: list[str],
        ctx: RequestContext,
        body: dict[str, Any] | None = None,
    ) -> frozenset[str]:
        """Which of `ids` the requester manages by the auth collection's manageRule
        (PocketBase: lets e.g. an admin role see and change others' e-mail, password and
        verified state)."""
        manage = c.options.get("manageRule") if c.type == "auth" else None
        if (
            not ids
            or not isinstance(manage, str)
            or not manage.strip()
            or ctx.auth.collection is None
        ):
            return frozenset()
        rule = query.compile_filter(
            manage,
            c,
            self.store,
            self.store.dialect,
            request=request_info(ctx, body, "GET" if body is None else "PATCH"),
            allow_hidden=True,
        )
        marks = ", ".join("?" for _ in ids)
        rows = await db.fetchall(
            f'SELECT "_r"."id" FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks}) '
            f"AND ({rule[0]})",
            [*ids, *rule[1]],
        )
        return frozenset(str(r[0]) for r in rows)

    async def manages(
        self,
        db: Executor,
        c: Collection,
        rid: str,
        ctx: RequestContext,
        body: dict[str, Any],
    ) -> bool:
        if ctx.auth.is_superuser:
            return True
        return rid in await self.managed(db, c, [rid], ctx, body)
