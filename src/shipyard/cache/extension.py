"""The response cache as an extension: it learns of every committed write through the
watched database and bumps the versions of the tables written."""

from __future__ import annotations

from shipyard.cache.cache import ResponseCache
from shipyard.kernel.extension import Extension
from shipyard.tools.dbwatch import WatchedDatabase

# tables whose writes change no cached response: job bookkeeping and delivery logs
UNCACHED_TABLES = frozenset({"_jobs", "_webhooks", "_webhook_deliveries"})


class CacheExtension(Extension):
    def __init__(self, cache: ResponseCache, db: WatchedDatabase) -> None:
        super().__init__(name="cache", requires=("records",))
        self.cache = cache
        db.subscribe(self.written)

    async def written(self, tables: set[str]) -> None:
        data = tables - UNCACHED_TABLES
        if data:
            await self.cache.written(data)
