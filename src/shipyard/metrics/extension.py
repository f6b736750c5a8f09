"""Metrics as an extension: `GET /metrics`, the shared `_metrics_processes` table, the
background task that publishes this process's metrics and folds dead processes' rows,
and the process, host and database gauges (docs/metrics.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.telemetry import Telemetry
from shipyard.metrics import routes
from shipyard.metrics.cluster import ClusterMetrics
from shipyard.metrics.gauges import Gauges, disk_free
from shipyard.settings import Settings, parse_networks
from shipyard.tools.db import Database
from shipyard.tools.queue import Queue
from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.metrics")

TAG = {"name": "metrics", "description": "Prometheus metrics of every process (docs/metrics.md)."}


class MetricsExtension(Extension):
    def __init__(
        self,
        settings: Settings,
        raw_db: Database,
        aux_db: Database,
        telemetry: Telemetry,
        queue: Queue,
    ) -> None:
        # in workers too: every process is counted (its role in `_metrics_processes`)
        super().__init__(name="metrics", requires=("records", "jobs"), roles=("server", "worker"))
        self.settings = settings
        self.enabled = settings.metrics_enabled
        self.token = settings.metrics_token
        self.allow = parse_networks(settings.metrics_allow, "SHIPYARD_METRICS_ALLOW")
        self.interval = settings.metrics_flush_interval
        # written to the raw database: publishing metrics invalidates no cached response
        self.cluster = ClusterMetrics(
            aux_db, telemetry.metrics, self.interval, enabled=self.enabled
        )
        self.gauges = Gauges(telemetry.metrics, settings, raw_db, queue)
        self.queue = queue
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes(self)

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]

    async def migrate(self) -> None:
        await self.cluster.ensure_schema()

    async def start(self) -> None:
        """Publish now (so this process is counted from the start), then every interval."""
        if not self.enabled or self._task is not None:
            return
        self.cluster.role = self.role
        await self._tick()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel(self._task)
        self._task = None
        try:
            await self.cluster.retire()
        except Exception as exc:  # the database is gone: the row is folded as a dead one
            log.warning("metrics: could not retire this process's row: %s", exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._tick()

    async def _tick(self) -> None:
        try:
            await self.gauges.refresh()
            await self.cluster.publish()
            await self.cluster.reap()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:  # logged once per outage, not every interval
                log.warning("metrics: publishing failed (retrying every interval): %s", exc)
            self._failing = True
        else:
            if self._failing:
                log.warning("metrics: publishing works again")
            self._failing = False

    async def health_detail(self) -> Mapping[str, Any]:
        due = await self.queue.due_by_queue()
        await self.gauges.refresh()
        free = disk_free(self.settings.data_dir)
        g = self.gauges
        return {
            "disk": {"freeBytes": free},
            "database": {
                "sizeBytes": g.db_size.values.get(()),
                "walBytes": g.wal_size.values.get(()),
            },
            "jobs": {
                "queues": {
                    q: {"depth": n, "lagSeconds": round(lag, 3)} for q, (n, lag) in due.items()
                },
                "lagSeconds": round(max((lag for _, lag in due.values()), default=0.0), 3),
            },
        }
