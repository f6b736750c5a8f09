"""Records: list, view, create, update and delete with PocketBase's semantics.

`Records` is what the other packages call; the work is done by its parts, one module each:
codecs.py (storage and the shapes an audience sees), listquery.py (request parameters),
rules.py (rules to SQL), reading.py (offset and cursor pages, one record), expand.py
(expand and `fields`), writing.py (validation, writes, constraint errors), modifiers.py
(`field+`, `field-`…) and cascade.py (deletes). Every operation takes the request it serves
as a `RequestContext` (context.py); internal callers pass `RequestContext.system(...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shipyard.records.cascade import Deleter
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.decorate import RecordDecorator
from shipyard.records.expand import Expander
from shipyard.records.listquery import PLAIN, ListQuery, ViewQuery
from shipyard.records.passwords import PasswordHashing
from shipyard.records.reading import Reader, TotalsCache
from shipyard.records.rules import Rules
from shipyard.records.schema import SchemaStore
from shipyard.records.writing import Writer
from shipyard.settings import Settings
from shipyard.tools.db import Executor

if TYPE_CHECKING:
    from shipyard.records.events import RecordEvents

__all__ = ["Records", "TotalsCache"]


class Records:
    def __init__(
        self,
        store: SchemaStore,
        db: Executor,
        settings: Settings,
        *,
        totals: TotalsCache | None = None,
        events: RecordEvents | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.settings = settings
        self.passwords = passwords or PasswordHashing(settings.password_hash_concurrency)
        shapes = store.shapes
        rules = Rules(store)
        expander = Expander(store, db, shapes, rules)
        self._expander = expander
        self._reader = Reader(store, db, settings, shapes, rules, expander, totals)
        self._writer = Writer(store, self.passwords, rules, self._reader, expander, events)
        self._deleter = Deleter(store, shapes, rules, self._reader, events)

    @property
    def cache(self) -> TotalsCache | None:
        """Where list totals are kept between writes."""
        return self._reader.cache

    @property
    def events(self) -> RecordEvents | None:
        """The record-event bus every write reports to, in its transaction."""
        return self._writer.events

    def decorate_with(self, decorator: RecordDecorator) -> None:
        """Let `decorator` add to returned records when its query parameter is given."""
        self._expander.decorators[decorator.param] = decorator

    # ------------------------------------------------------------------ operations

    async def list_page(self, c: Collection, ctx: RequestContext, q: ListQuery) -> dict[str, Any]:
        return await self._reader.list_page(c, q, ctx)

    async def view(
        self, c: Collection, rid: str, ctx: RequestContext, q: ViewQuery = PLAIN
    ) -> dict[str, Any]:
        return await self._reader.view(c, rid, q, ctx)

    async def create(
        self, c: Collection, body: dict[str, Any], ctx: RequestContext, q: ViewQuery = PLAIN
    ) -> dict[str, Any]:
        return await self._writer.create(c, body, ctx, q)

    async def update(
        self,
        c: Collection,
        rid: str,
        body: dict[str, Any],
        ctx: RequestContext,
        q: ViewQuery = PLAIN,
    ) -> dict[str, Any]:
        return await self._writer.update(c, rid, body, ctx, q)

    async def delete(self, c: Collection, rid: str, ctx: RequestContext) -> None:
        await self._deleter.delete(c, rid, ctx)

    async def truncate(self, c: Collection) -> None:
        await self._deleter.truncate(c)

    def list_query(self, params: Mapping[str, str]) -> ListQuery:
        """`params` of a list request, checked against this service's settings."""
        return ListQuery.parse(params, self.settings, self._expander.decorators)

    def view_query(self, params: Mapping[str, str]) -> ViewQuery:
        """`params` of a request answered with one record (view, create, update)."""
        return ViewQuery.parse(params, self.settings, self._expander.decorators)
