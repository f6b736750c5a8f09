"""What shapes a returned record after it is read: e-mail visibility, `expand` of forward
and back relations (each under the target's view rule), and the `fields` projection."""

from __future__ import annotations

from typing import Any

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.records.codecs import Shapes, decode_row, hide_emails, rowid_column
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.decorate import RecordDecorator
from shipyard.records.fields import RelationField
from shipyard.records.listquery import Expand, ViewQuery
from shipyard.records.projection import project
from shipyard.records.rules import Condition, Rules
from shipyard.records.schema import SchemaStore
from shipyard.tools.db import Executor

MAX_BACK_RELATION_EXPAND = 1000


class Expander:
    def __init__(self, store: SchemaStore, db: Executor, shapes: Shapes, rules: Rules) -> None:
        self.store = store
        self.db = db
        self.shapes = shapes
        self.rules = rules
        self._rowid = rowid_column(store.dialect)
        self.decorators: dict[str, RecordDecorator] = {}  # by query parameter

    async def finish(
        self, c: Collection, items: list[dict[str, Any]], q: ViewQuery, ctx: RequestContext
    ) -> None:
        """Hide e-mails, expand, project and decorate `items` in place, as the request asks."""
        auth = ctx.auth
        managed = frozenset[str]()
        if c.type == "auth" and not auth.is_superuser and items:
            hidden = [i["id"] for i in items if not i.get("emailVisibility") and i["id"] != auth.id]
            managed = await self.rules.managed(self.db, c, hidden, ctx)
        hide_emails(c, items, auth, managed)
        if q.expand and items:
            await self._expand(c, items, q.expand, ctx)
        if q.fields.strip():
            for i, item in enumerate(items):
                items[i] = project(item, q.fields)
        for param, value in q.decorations:
            decorator = self.decorators.get(param)
            if decorator is not None and items:
                await decorator.decorate(c, items, value, ctx)

    async def _expand(
        self, c: Collection, items: list[dict[str, Any]], tree: Expand, ctx: RequestContext
    ) -> None:
        for key, subtree in tree:
            f = c.field(key)
            if isinstance(f, RelationField):
                await self._expand_forward(f, items, key, subtree, ctx)
            elif "_via_" in key:
                await self._expand_back(c, items, key, subtree, ctx)
            else:
                raise bad_request(f"Invalid expand: {key!r} is not a relation field of {c.name!r}.")

    def _expand_rule(self, target: Collection, ctx: RequestContext) -> Condition | bool | None:
        """The view rule for expanded records; False when they may not be seen at all."""
        try:
            return self.rules.sql(target, "view", ctx)
        except ApiError:
            return False

    async def _expand_forward(
        self,
        f: RelationField,
        items: list[dict[str, Any]],
        key: str,
        subtree: Expand,
        ctx: RequestContext,
    ) -> None:
        target = self.store.get(str(f.options.get("collectionId")))
        if target is None:
            return
        ids: list[str] = []
        per_item: list[list[str]] = []
        for item in items:
            raw = item.get(key)
            got = raw if isinstance(raw, list) else ([raw] if raw else [])
            per_item.append(got)
            ids += got
        rule = self._expand_rule(target, ctx)
        if rule is False or not ids:
            return
        found = await self._fetch_many(
            target, list(dict.fromkeys(ids)), ctx, rule if isinstance(rule, tuple) else None
        )
        if subtree and found:
            await self._expand(target, list(found.values()), subtree, ctx)
        for item, got in zip(items, per_item, strict=True):
            recs = [found[i] for i in got if i in found]
            if not recs:
                continue
            exp: dict[str, Any] = item.setdefault("expand", {})
            exp[key] = recs if f.is_multi else recs[0]

    async def _fetch_many(
        self,
        c: Collection,
        ids: list[str],
        ctx: RequestContext,
        rule: Condition | None,
    ) -> dict[str, dict[str, Any]]:
        sh = self.shapes.of(c, ctx.auth.is_superuser)
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks})'
            args: list[Any] = list(chunk)
            if rule is not None:
                sql += f" AND ({rule[0]})"
                args += rule[1]
            for row in await self.db.fetchall(sql, args):
                rec = decode_row(c, sh, row)
                out[rec["id"]] = rec
        hide_emails(c, list(out.values()), ctx.auth)
        return out

    async def _expand_back(
        self,
        c: Collection,
        items: list[dict[str, Any]],
        key: str,
        subtree: Expand,
        ctx: RequestContext,
    ) -> None:
        coll_name, _, field_name = key.partition("_via_")
        target = self.store.get(coll_name)
        rel = target.field(field_name) if target else None
        if (
            target is None
            or not isinstance(rel, RelationField)
            or rel.options.get("collectionId") != c.id
        ):
            raise bad_request(f"Invalid expand: {key!r} is not a back-relation of {c.name!r}.")
        rule = self._expand_rule(target, ctx)
        if rule is False:
            return
        ids = [item["id"] for item in items]
        marks = ", ".join("?" for _ in ids)
        col = f'"_r"."{rel.name}"'
        if rel.is_multi:
            each = (
                f"jsonb_array_elements_text({col}::jsonb)"
                if self.store.dialect == "postgres"
                else f"json_each({col})"
            )
            val = "je" if self.store.dialect == "postgres" else "je.value"
            cond = f"EXISTS (SELECT 1 FROM {each} AS je WHERE {val} IN ({marks}))"
        else:
            cond = f"{col} IN ({marks})"
        sh = self.shapes.of(target, ctx.auth.is_superuser)
        sql = f'SELECT {sh.columns} FROM "{target.table}" AS "_r" WHERE {cond}'
        args: list[Any] = list(ids)
        if isinstance(rule, tuple):
            sql += f" AND ({rule[0]})"
            args += rule[1]
        sql += f" ORDER BY {self._rowid} LIMIT {MAX_BACK_RELATION_EXPAND}"
        found = [decode_row(target, sh, r) for r in await self.db.fetchall(sql, args)]
        hide_emails(target, found, ctx.auth)
        if subtree and found:
            await self._expand(target, found, subtree, ctx)
        for item in items:
            matches = []
            for rec in found:
                raw = rec.get(rel.name)
                vals = raw
                if (isinstance(vals, list) and item["id"] in vals) or vals == item["id"]:
                    matches.append(rec)
            if matches:
                item.setdefault("expand", {})[key] = matches
