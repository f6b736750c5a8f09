"""Record decorations: what a capability adds to returned records when a request asks for it
by a query parameter of its own (the files capability: `?images=1` adds each image's size,
placeholder and `srcset`). Nothing is added unless asked, so PocketBase's record shapes stay
as they are for every client that does not know the parameter.

A decoration runs after `expand` and `fields` (it is asked for by name, so `fields` does not
remove it), on the top-level records only, with the request's auth: it may read only what the
records it decorates already let the caller see.
"""

from __future__ import annotations

from typing import Any, Protocol

from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext


class RecordDecorator(Protocol):
    param: str  # the query parameter that asks for it; its value is passed on

    async def decorate(
        self, c: Collection, items: list[dict[str, Any]], value: str, ctx: RequestContext
    ) -> None: ...
