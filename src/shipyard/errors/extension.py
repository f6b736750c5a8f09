"""Error tracking as an extension: the Sentry-compatible ingestion and the superusers' API
(routes), Shipyard's own unhandled exceptions recorded in the built-in project (an
exception sink), the `shipyard_errors_total` metric, and the retention clean-up.

`tracker` is what the alerts capability reads (`await ext.tracker.activity(since)`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from shipyard.errors import openapi as spec
from shipyard.errors.capture import ExceptionQueue, event_from_exception
from shipyard.errors.projects import BUILTIN
from shipyard.errors.routes import ErrorRoutes
from shipyard.errors.schema import ensure_schema
from shipyard.errors.tracker import ErrorTracker
from shipyard.kernel.extension import Extension
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.telemetry import ExceptionSink, Telemetry
from shipyard.settings import Settings
from shipyard.tools.db import Database
from shipyard.tools.redisclient import ResilientRedis
from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.errors")
CLEANUP_INTERVAL = 3600.0  # seconds between retention clean-ups (each process; idempotent)


def in_app_modules(settings: Settings) -> tuple[str, ...]:
    """Module prefixes whose frames are Shipyard's or the team's own code (in-app):
    shipyard, the hooks module and the modules of SHIPYARD_EXTENSIONS."""
    out = ["shipyard"]
    hooks = settings.hooks.strip()
    if hooks:
        out.append(Path(hooks).stem if hooks.endswith(".py") else hooks)
    for item in settings.extensions.split(","):
        module = item.strip().partition(":")[0]
        if module:
            out.append(module)
    return tuple(out)


class ErrorsExtension(Extension):
    def __init__(
        self,
        db: Database,
        settings: Settings,
        telemetry: Telemetry,
        redis: ResilientRedis | None = None,
    ) -> None:
        # in workers too: a failed job is an error event
        super().__init__(name="errors", requires=("records",), roles=("server", "worker"))
        self.settings = settings
        stored = telemetry.metrics.counter(
            "shipyard_errors_total", "Error events stored, by project.", ("project",)
        )
        self.tracker = ErrorTracker(
            db,
            settings.errors_rate_limit,
            settings.errors_retention_days,
            on_stored=lambda project: stored.inc((project,)),
            redis=redis,
            namespace=settings.redis_namespace,
        )
        self.queue = ExceptionQueue(settings.errors_queue_size, self.record)
        self.in_app = in_app_modules(settings)
        self._routes = ErrorRoutes(self.tracker, settings)
        self._cleanup: asyncio.Task[None] | None = None

    def routes(self) -> Sequence[BaseRoute]:
        return self._routes.routes()

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(viewer)

    def exception_sinks(self) -> Sequence[ExceptionSink]:
        return (self.queue,)

    async def migrate(self) -> None:
        await ensure_schema(self.tracker.db)
        await self.tracker.projects.ensure(BUILTIN)

    async def record(self, exc: BaseException, context: dict[str, Any]) -> None:
        """Store one of Shipyard's own exceptions in the built-in project (within its quota)."""
        project = await self.tracker.projects.ensure(BUILTIN)
        if await self.tracker.take_quota(project, 1):
            return
        await self.tracker.store(project, event_from_exception(exc, context, self.in_app))

    async def _clean_periodically(self) -> None:
        while True:
            try:
                deleted = await self.tracker.cleanup()
                if deleted:
                    log.info("error tracking: %d events past the retention deleted", deleted)
            except Exception:
                log.warning("error tracking: the retention clean-up failed", exc_info=True)
            await asyncio.sleep(CLEANUP_INTERVAL)

    async def start(self) -> None:
        self.queue.start()
        self._cleanup = asyncio.create_task(
            self._clean_periodically(), name="shipyard-errors-cleanup"
        )

    async def stop(self) -> None:
        await cancel(self._cleanup)
        self._cleanup = None
        await self.queue.stop()


__all__ = ["ErrorsExtension", "in_app_modules"]
