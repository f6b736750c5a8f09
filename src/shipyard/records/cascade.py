"""Deleting records: the rule check, then every relation pointing at them fixed up as
PocketBase does (cleared, cascaded, or the delete refused), with delete events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from shipyard.kernel.errors import bad_request, not_found
from shipyard.records.auth import Auth
from shipyard.records.codecs import Shapes, decode_row
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.reading import Reader
from shipyard.records.rules import Rules
from shipyard.records.schema import SchemaStore
from shipyard.tools.db import Executor

if TYPE_CHECKING:
    from shipyard.records.events import RecordEvents

MAX_CASCADE_DEPTH = 32
_REQUIRED = (
    "The record cannot be deleted because it is part of a required reference in another record."
)


class Deleter:
    def __init__(
        self,
        store: SchemaStore,
        shapes: Shapes,
        rules: Rules,
        reader: Reader,
        events: RecordEvents | None,
    ) -> None:
        self.store = store
        self.shapes = shapes
        self.rules = rules
        self.reader = reader
        self.events = events  # the record-event bus (records/events.py)

    async def delete(self, c: Collection, rid: str, ctx: RequestContext) -> None:
        rule = self.rules.sql(c, "delete", ctx)
        async with self.store.db.transaction() as tx:
            found = await self.reader.fetch_one(c, rid, ctx, rule, db=tx)
            if found is None:
                raise not_found()
            await self.cascade(tx, c, [rid], depth=0, auth=ctx.auth)

    async def truncate(self, c: Collection) -> None:
        async with self.store.db.transaction() as tx:
            ids = [r[0] for r in await tx.fetchall(f'SELECT "id" FROM "{c.table}"')]
            for start in range(0, len(ids), 500):
                # like PocketBase, truncating fires no per-record events
                await self.cascade(tx, c, ids[start : start + 500], depth=0, emit=False)
                if self.events is not None:  # stored files go with them (files/)
                    await self.events.dropped(tx, c, ids[start : start + 500])

    async def _emit_deletes(
        self, tx: Executor, c: Collection, ids: list[str], auth: Auth | None
    ) -> None:
        """Delete events for records about to be deleted (explicitly or by cascade)."""
        if self.events is None:
            return
        subs = await self.events.subscribers(tx, c, "delete")
        if not subs:
            return
        sh = self.shapes.of(c, "internal")
        marks = ", ".join("?" for _ in ids)
        rows = await tx.fetchall(
            f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks})', ids
        )
        for row in rows:
            rec = decode_row(c, sh, row)
            await self.events.emit(tx, subs, c, "delete", rec, None, auth)

    async def cascade(
        self,
        tx: Executor,
        c: Collection,
        ids: list[str],
        depth: int,
        auth: Auth | None = None,
        emit: bool = True,
    ) -> None:
        """Delete records and fix up every relation pointing at them, as PocketBase does."""
        if depth > MAX_CASCADE_DEPTH:
            raise bad_request("Cascade delete is nested too deeply.")
        for ref_c, f in self.store.references_to(c):
            marks = ", ".join("?" for _ in ids)
            col = f'"{f.name}"'
            if f.is_multi:
                rows = await tx.fetchall(
                    f'SELECT "id", {col} FROM "{ref_c.table}" WHERE {col} <> ? ', ("[]",)
                )
                for ref_id, raw in rows:
                    vals: list[Any] = orjson.loads(raw) if raw else []
                    kept = [v for v in vals if v not in ids]
                    if len(kept) == len(vals):
                        continue
                    if not kept and f.required:
                        if f.options.get("cascadeDelete"):
                            await self.cascade(tx, ref_c, [ref_id], depth + 1, auth, emit)
                            continue
                        raise bad_request(_REQUIRED)
                    await tx.execute(
                        f'UPDATE "{ref_c.table}" SET {col} = ? WHERE "id" = ?',
                        (orjson.dumps(kept).decode(), ref_id),
                    )
            else:
                rows = await tx.fetchall(
                    f'SELECT "id" FROM "{ref_c.table}" WHERE {col} IN ({marks})', ids
                )
                ref_ids = [r[0] for r in rows if not (ref_c.id == c.id and r[0] in ids)]
                if not ref_ids:
                    continue
                if f.options.get("cascadeDelete"):
                    await self.cascade(tx, ref_c, ref_ids, depth + 1, auth, emit)
                elif f.required:
                    raise bad_request(_REQUIRED)
                else:
                    rmarks = ", ".join("?" for _ in ref_ids)
                    await tx.execute(
                        f'UPDATE "{ref_c.table}" SET {col} = ? WHERE "id" IN ({rmarks})',
                        ("", *ref_ids),
                    )
        if emit:
            await self._emit_deletes(tx, c, ids, auth)
        marks = ", ".join("?" for _ in ids)
        await tx.execute(f'DELETE FROM "{c.table}" WHERE "id" IN ({marks})', ids)
