"""Reading records: a page by offset or by cursor, and one record, each under its rule."""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

import orjson

from shipyard.kernel.errors import bad_request, not_found
from shipyard.records import query
from shipyard.records.auth import Auth
from shipyard.records.codecs import Audience, Shapes, decode_row, rowid_column
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.expand import Expander
from shipyard.records.listquery import ListQuery, ViewQuery
from shipyard.records.rules import Condition, Rules, request_info
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.db import Executor


def filter_limits(settings: Settings) -> query.FilterLimits:
    """What one client filter may cost, from the settings (every path that compiles one)."""
    return query.FilterLimits(
        max_length=settings.max_filter_length,
        max_expressions=settings.max_filter_expressions,
        max_relation_depth=settings.max_expand_depth,
        max_collection_joins=settings.max_filter_collection_joins,
        max_back_relations=settings.max_filter_back_relations,
    )


def visible_where(
    rules: Rules,
    store: SchemaStore,
    c: Collection,
    kind: str,
    ctx: RequestContext,
    filt: str,
    limits: query.FilterLimits,
) -> tuple[list[str], list[Any]]:
    """The conditions (each in parentheses) and arguments a record must meet to be seen by
    `ctx`: the collection's `kind` rule ("list", "view") and the client's `filter`. Raises
    the rule's ApiError when only superusers may see any."""
    where: list[str] = []
    args: list[Any] = []
    rule = rules.sql(c, kind, ctx)
    if rule is not None:
        where.append(f"({rule[0]})")
        args += rule[1]
    if filt.strip():
        sql, fargs = query.compile_filter(
            filt,
            c,
            store,
            store.dialect,
            request=request_info(ctx),
            limits=limits,
            allow_hidden=ctx.auth.is_superuser,
        )
        where.append(f"({sql})")
        args += fargs
    return where, args


class TotalsCache(Protocol):
    """Where list totals may be kept between writes (the response cache implements it)."""

    async def count(
        self,
        c: Collection,
        auth: Auth,
        filt: str,
        key: Hashable,
        compute: Callable[[], Awaitable[int]],
    ) -> int: ...


def _cursor_value(value: Any, kind: str) -> Any:
    """A cursor position as the column holds it (a cursor is the client's to forge: a value of
    another type or out of range must be a 400, not a type error in the database)."""
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "bool" and (isinstance(value, bool) or value in (0, 1)):
        return bool(value)
    if isinstance(value, bool):
        raise ValueError(value)
    if kind == "number" and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if kind == "rowid" and isinstance(value, int) and 0 <= value < 2**63:
        return value
    raise ValueError(value)


class Reader:
    def __init__(
        self,
        store: SchemaStore,
        db: Executor,
        settings: Settings,
        shapes: Shapes,
        rules: Rules,
        expander: Expander,
        totals: TotalsCache | None,
    ) -> None:
        self.store = store
        self.db = db
        self.shapes = shapes
        self.rules = rules
        self.expander = expander
        self.cache = totals  # keeps list totals between writes
        self.filter_limits = filter_limits(settings)
        self._rowid = rowid_column(store.dialect)

    async def list_page(self, c: Collection, q: ListQuery, ctx: RequestContext) -> dict[str, Any]:
        auth = ctx.auth
        page, per_page = q.page, q.per_page
        where, args = visible_where(
            self.rules, self.store, c, "list", ctx, q.filter, self.filter_limits
        )
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""

        if q.cursor is not None:
            return await self._cursor_page(c, q, q.cursor, ctx, where, args)

        sorts = q.sorts
        order = query.compile_sort(
            sorts, c, self.store, self.store.dialect, allow_hidden=auth.is_superuser
        )
        # the insertion-order tie-breaker follows the last key's direction, which lets SQLite
        # walk an index backwards instead of adding a sort step
        last_desc = bool(sorts) and sorts[-1].descending
        order_sql = (
            f" ORDER BY {order + ', ' if order else ''}{self._rowid}{' DESC' if last_desc else ''}"
        )
        if query.is_random(sorts):
            order_sql = f" ORDER BY {order}"

        sh = self.shapes.of(c, auth.is_superuser)
        offset = (page - 1) * per_page
        fetch = per_page + 1 if q.skip_total else per_page
        rows = await self.db.fetchall(
            f'SELECT {sh.columns} FROM "{c.table}" AS "_r"{where_sql}{order_sql} LIMIT ? OFFSET ?',
            (*args, fetch, offset),
        )
        if q.skip_total:
            total, pages = -1, -1
            rows = rows[:per_page]
        elif page == 1 and len(rows) < per_page:
            total = len(rows)
            pages = 1 if total else 0
        else:
            count_sql = f'SELECT COUNT(*) FROM "{c.table}" AS "_r"{where_sql}'

            async def count() -> int:
                row = await self.db.fetchone(count_sql, args)
                return int(row[0]) if row else 0

            if self.cache is None:
                total = await count()
            else:
                total = await self.cache.count(c, auth, q.filter, (count_sql, *args), count)
            pages = math.ceil(total / per_page) if per_page else 0
        items = [decode_row(c, sh, r) for r in rows]
        await self.expander.finish(c, items, q, ctx)
        return {
            "items": items,
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": pages,
        }

    async def _cursor_page(
        self,
        c: Collection,
        q: ListQuery,
        cursor: str,
        ctx: RequestContext,
        where: list[str],
        args: list[Any],
    ) -> dict[str, Any]:
        """Keyset pagination (a Shipyard extension): `?cursor=` starts, each page returns
        `nextCursor` (null on the last page). Cost per page stays flat however deep, because
        the database seeks to the last row seen instead of counting past OFFSET rows.
        Sorting is limited to the collection's own fields; totals are not computed."""
        per_page = q.per_page
        sort_text = q.sort
        cols: list[tuple[str, bool]] = []
        kinds: list[str] = []  # what each position holds, to check a cursor's values
        for name, desc, kind, _ in q.sorts:
            f = c.field(name) if kind is query.SortKind.FIELD else None
            hidden = f is not None and (f.hidden or (c.type == "auth" and name == "email"))
            if f is None or f.type == "password" or (hidden and not ctx.auth.is_superuser):
                raise bad_request(
                    f"Invalid sort for cursor pagination: {name!r} — only the collection's "
                    "own visible fields can be used."
                )
            cols.append((f'"_r"."{name}"', desc))
            kinds.append(f.storage)
        last_desc = cols[-1][1] if cols else False
        cols.append((self._rowid, last_desc))  # the tie-breaker makes every position unique
        kinds.append("rowid")
        if cursor:
            try:
                signed, values = orjson.loads(base64.urlsafe_b64decode(cursor + "=="))
                if signed != sort_text or len(values) != len(cols):
                    raise ValueError(cursor)
                values = [_cursor_value(v, k) for v, k in zip(values, kinds, strict=True)]
            except (ValueError, TypeError, orjson.JSONDecodeError):
                raise bad_request(
                    "Invalid cursor: pass back the nextCursor of the previous page with the "
                    "same sort."
                ) from None
            ors: list[str] = []
            for i, (col, desc) in enumerate(cols):
                eqs = [f"{cols[j][0]} = ?" for j in range(i)]
                ors.append("(" + " AND ".join([*eqs, f"{col} {'<' if desc else '>'} ?"]) + ")")
                args = [*args, *values[:i], values[i]]
            where = [*where, "(" + " OR ".join(ors) + ")"]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        order_sql = ", ".join(f"{col}{' DESC' if desc else ''}" for col, desc in cols)
        sh = self.shapes.of(c, ctx.auth.is_superuser)
        extra = ", ".join(col for col, _ in cols)
        rows = await self.db.fetchall(
            f'SELECT {sh.columns}, {extra} FROM "{c.table}" AS "_r"{where_sql} '
            f"ORDER BY {order_sql} LIMIT ?",
            (*args, per_page + 1),
        )
        more = len(rows) > per_page
        rows = rows[:per_page]
        n = len(cols)
        next_cursor = None
        if more and rows:
            last = [v if not isinstance(v, bool) else bool(v) for v in rows[-1][-n:]]
            next_cursor = (
                base64.urlsafe_b64encode(orjson.dumps([sort_text, last])).decode().rstrip("=")
            )
        items = [decode_row(c, sh, r[:-n]) for r in rows]
        await self.expander.finish(c, items, q, ctx)
        return {
            "items": items,
            "page": 1,
            "perPage": per_page,
            "totalItems": -1,
            "totalPages": -1,
            "nextCursor": next_cursor,
        }

    async def view(
        self, c: Collection, rid: str, q: ViewQuery, ctx: RequestContext
    ) -> dict[str, Any]:
        rule = self.rules.sql(c, "view", ctx)
        rec = await self.fetch_one(c, rid, ctx, rule)
        if rec is None:
            raise not_found()
        items = [rec]
        await self.expander.finish(c, items, q, ctx)
        return items[0]

    async def fetch_one(
        self,
        c: Collection,
        rid: str,
        ctx: RequestContext,
        rule: Condition | None,
        db: Executor | None = None,
        audience: Audience | None = None,
    ) -> dict[str, Any] | None:
        """One record by id under `rule`, as `ctx`'s asker sees it (or as `audience`)."""
        sh = self.shapes.of(c, ctx.auth.is_superuser if audience is None else audience)
        sql = f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" = ?'
        args: list[Any] = [rid]
        if rule is not None:
            sql += f" AND ({rule[0]})"
            args += rule[1]
        row = await (db or self.db).fetchone(sql, args)
        return decode_row(c, sh, row) if row else None
