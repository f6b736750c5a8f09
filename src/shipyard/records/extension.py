"""Records as an extension: collections and records routes, and the schema store's tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension, HealthCheck
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.records import collection_routes, routes
from shipyard.records import openapi as spec
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.db import Executor


class RecordsExtension(Extension):
    def __init__(self, store: SchemaStore, db: Executor, settings: Settings) -> None:
        super().__init__(name="records")
        self.store = store
        self.db = db
        self.settings = settings

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [
            *spec.collections_openapi(viewer),
            *spec.openapi(collections, viewer, settings=self.settings),
        ]

    def routes(self) -> Sequence[BaseRoute]:
        return [*collection_routes.routes, *routes.routes]

    def health_checks(self) -> Sequence[HealthCheck]:
        async def database() -> None:
            await self.db.fetchone("SELECT 1")

        return (HealthCheck("database", database),)
