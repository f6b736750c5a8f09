"""Request and event logs as an extension: the stdout access log, PocketBase's request log
(`_logs` and `/api/logs`), its runtime settings, and optional OpenTelemetry traces.

- `request_observers()`: the access line writer (SHIPYARD_ACCESS_LOG), the `_logs` queue,
  and the tracer when SHIPYARD_OTEL_ENDPOINT is set; each only keeps the request;
- `start()`: the background writers, the handler that records Shipyard's own warnings
  and errors in `_logs`, and the retention clean-up (any process may run it: a DELETE);
- `stop()`: writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.runtime import RuntimeSettings, Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.telemetry import RequestInfo, RequestObserver
from shipyard.settings import Settings
from shipyard.tools.db import Database
from shipyard.tools.metrics import Registry

from . import routes, store
from .lines import LineWriter
from .otel import Tracing
from .requests import event_row, json_line, recorded, request_row
from .section import LOGS

TAG = {"name": "logs", "description": "PocketBase's request log (superusers only)."}
CLEANUP_INTERVAL = 3600.0  # seconds between retention clean-ups in each process


class _EventRecorder(logging.Handler):
    """Shipyard's own warnings and errors (`shipyard.*`) into the `_logs` queue."""

    def __init__(self, ext: LogsExtension) -> None:
        super().__init__(logging.WARNING)
        self.ext = ext

    def emit(self, record: logging.LogRecord) -> None:
        if store.WRITING.get():
            return
        runtime = self.ext.runtime
        self.ext.queue.add(lambda: event_row(record, runtime))


class LogsExtension(Extension):
    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeSettings[Settings],
        raw_db: Database,
        metrics: Registry | None = None,
    ) -> None:
        super().__init__(name="logs", requires=("records",))
        self.settings = settings
        self.runtime = runtime
        self.db = raw_db
        self.stdout = LineWriter(json_line, max_lines=settings.access_log_buffer)
        self.queue = store.LogQueue(
            raw_db,
            max_pending=settings.logs_queue_max,
            interval=settings.logs_flush_interval,
            before_write=runtime.refresh,
        )
        self.tracing = (
            Tracing.build(settings.otel_endpoint, settings.otel_service_name)
            if settings.otel_endpoint
            else None
        )
        if metrics is not None:
            entries = metrics.counter(
                "shipyard_log_entries_total",
                "Log entries written or dropped (buffer full, failed write), by log: "
                "stdout (the JSON request lines) or requests (the _logs table).",
                ("log", "result"),
            )
            for batcher, label in ((self.stdout, "stdout"), (self.queue, "requests")):
                batcher.counter, batcher.label = entries, label
        self._recorder = _EventRecorder(self)
        self._cleaner: asyncio.Task[None] | None = None
        self._started = False

    # -------------------------------------------------------------- contributions

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]

    def settings_sections(self) -> Sequence[Section]:
        return (LOGS,)

    def request_observers(self) -> Sequence[RequestObserver]:
        out: list[RequestObserver] = []
        if self.settings.access_log:
            out.append(self.stdout.add)
        out.append(self.observe)
        if self.tracing is not None:
            out.append(self.tracing.observe)
        return out

    def observe(self, info: RequestInfo) -> None:
        """The `_logs` entry of a request, built (under the settings then in effect) when
        its batch is written."""
        if recorded(info):
            runtime = self.runtime
            self.queue.add(lambda: request_row(info, runtime))

    # -------------------------------------------------------------- life cycle

    async def migrate(self) -> None:
        await store.ensure_schema(self.db)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.stdout.start()
        self.queue.start()
        logging.getLogger("shipyard").addHandler(self._recorder)
        self._cleaner = asyncio.get_running_loop().create_task(self._clean_up_often())

    async def _clean_up_often(self) -> None:
        delay = min(60.0, CLEANUP_INTERVAL)  # soon after start, then every interval
        while True:
            await asyncio.sleep(delay)
            delay = CLEANUP_INTERVAL
            try:
                await self.cleanup()
            except Exception as exc:  # the database may be down for a while
                logging.getLogger("shipyard.logs").warning("log clean-up failed: %s", exc)

    async def cleanup(self) -> int:
        """Delete the entries older than `logs.maxDays` (in effect now); returns how many."""
        return await store.cleanup(self.db, int(await self.runtime.get("logs", "maxDays")))

    async def flush(self) -> int:
        """Write the waiting `_logs` entries now (tests, shutdown)."""
        written = await self.queue.flush()
        self.queue.report()
        return written

    async def stop(self) -> None:
        logging.getLogger("shipyard").removeHandler(self._recorder)
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None
        await self.queue.close()
        await self.stdout.close()
        if self.tracing is not None:
            await self.tracing.close()
        self._started = False
