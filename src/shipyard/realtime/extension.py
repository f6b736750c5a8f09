"""Realtime as an extension: the `/api/realtime` routes, a record-event subscriber that
publishes every committed change, its tables, and the transport's background task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.realtime import openapi as spec
from shipyard.realtime import routes
from shipyard.realtime.service import Realtime
from shipyard.records.collections import Collection
from shipyard.records.events import Listener
from shipyard.tools.db import Executor


class RealtimeExtension(Extension):
    def __init__(self, service: Realtime) -> None:
        super().__init__(name="realtime", requires=("records",))
        self.service = service
        self.enabled = service.settings.realtime_enabled

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(viewer) if self.enabled else ()

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes if self.enabled else ()

    def record_subscribers(self) -> Sequence[Any]:
        return (self,) if self.enabled else ()

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None:
        """Every write of a records collection is published (views are never written)
        while any process has clients (presence.py)."""
        if c.type == "view" or not await self.service.presence.anyone(tx):
            return None
        return self.service.on_change

    async def migrate(self) -> None:
        if self.enabled:
            await self.service.migrate()

    async def start(self) -> None:
        if self.enabled:
            await self.service.start()

    async def stop(self) -> None:
        if self.enabled:
            await self.service.stop()

    async def health_detail(self) -> Mapping[str, Any]:
        hub = self.service.hub
        return {
            "realtime": {
                "connections": len(hub.clients),
                "stalledDisconnects": hub.stalled,
                "transport": self.service.transport.name,
            }
        }
