"""Request and event logs as an extension: the stdout access log, PocketBase's request log
(`_logs` and `/api/logs`), its runtime settings, and optional OpenTelemetry traces.

- `request_observers()`: renders each batch of finished requests into the stdout lines
  (SHIPYARD_ACCESS_LOG) and the `_logs` rows, handed every flush interval to the log
  writer's thread (writer.py), and gives the batch to the tracer when
  SHIPYARD_OTEL_ENDPOINT is set;
- `start()`: the writer, the handler that records Shipyard's own warnings and errors in
  `_logs`, the settings refresh, and the retention clean-up (any process may run it: a
  DELETE);
- `stop()`: writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.runtime import RuntimeSettings, Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.telemetry import RequestInfo, RequestObserver, Telemetry
from shipyard.settings import Settings
from shipyard.tools.db import Database, SQLiteDatabase
from shipyard.tools.tasks import cancel

from . import routes, store
from .otel import Tracing
from .requests import Options, event_row, render_batch
from .section import LOGS
from .store import Row
from .writer import LogWriter, loop_sink, sqlite_sink

TAG = {"name": "logs", "description": "PocketBase's request log (superusers only)."}
CLEANUP_INTERVAL = 3600.0  # seconds between retention clean-ups in each process


@dataclass(slots=True)
class _Rendered:
    """A batch of finished requests, rendered under `options`."""

    infos: Sequence[RequestInfo]
    options: Options
    data: bytes  # the stdout lines (requests.py's `render_batch`)
    lines: int  # how many
    rows: list[Row]


class _EventRecorder(logging.Handler):
    """Shipyard's own warnings and errors (`shipyard.*`) into `_logs`."""

    def __init__(self, ext: LogsExtension) -> None:
        super().__init__(logging.WARNING)
        self.ext = ext

    def emit(self, record: logging.LogRecord) -> None:
        self.ext.writer.event(record, Options.of(self.ext.runtime))


class LogsExtension(Extension):
    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeSettings[Settings],
        aux_db: Database,
        telemetry: Telemetry | None = None,
    ) -> None:
        # in workers too: the request log records their events, their lines go to stdout
        super().__init__(name="logs", requires=("records",), roles=("server", "worker"))
        self.settings = settings
        self.runtime = runtime
        self.db = aux_db
        self.telemetry = telemetry
        self.writer = LogWriter(
            lines=settings.access_log,
            sink=None,  # set at start: a thread connection (SQLite) or the loop's pool
            max_pending=settings.logs_queue_max,
            event_row=event_row,
        )
        self.tracing = (
            Tracing.build(settings.otel_endpoint, settings.otel_service_name)
            if settings.otel_endpoint
            else None
        )
        if telemetry is not None:
            self.writer.counter = telemetry.metrics.counter(
                "shipyard_log_entries_total",
                "Log entries written or dropped (buffer full, failed write), by log: "
                "stdout (the JSON request lines) or requests (the _logs table).",
                ("log", "result"),
            )
            telemetry.metrics.collectors.append(self.writer.report)
        self._recorder = _EventRecorder(self)
        # rendered, waiting for the next settings refresh to go to the writer
        self._waiting: list[_Rendered] = []
        self._held = 0  # the requests they hold
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -------------------------------------------------------------- contributions

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]

    def settings_sections(self) -> Sequence[Section]:
        return (LOGS,)

    def request_observers(self) -> Sequence[RequestObserver]:
        out: list[RequestObserver] = [self.observe]
        if self.tracing is not None:
            out.append(self.tracing.observe_batch)
        return out

    def observe(self, batch: Sequence[RequestInfo]) -> None:
        """Finished requests are rendered at once (a batch is at most a few hundred:
        telemetry's FLUSH_AT), while what they left is still in the CPU's caches, under the
        settings in effect in this process, and wait (bounded) until the next settings
        refresh: rendered again then if the settings changed meanwhile (another process's
        PATCH), so a change applies to every entry written after it."""
        options = Options.of(self.runtime)
        batch = self.writer.admit(batch, options.enabled, self._held)
        if not batch:
            return
        data, lines, rows = render_batch(batch, options, self.writer.lines)
        self._waiting.append(_Rendered(batch, options, data, lines, rows))
        self._held += len(batch)

    async def _submit(self) -> None:
        # the database may be down for a while: the settings last read hold
        with contextlib.suppress(Exception):
            await self.runtime.refresh()
        waiting, self._waiting, self._held = self._waiting, [], 0
        options = Options.of(self.runtime)
        for part in waiting:
            data, n, rows = part.data, part.lines, part.rows
            if part.options != options:  # the settings changed since it was rendered
                data, n, rows = render_batch(part.infos, options, self.writer.lines)
            self.writer.put(data, n, rows, len(part.infos))

    # -------------------------------------------------------------- life cycle

    async def migrate(self) -> None:
        await store.ensure_schema(self.db)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        db = self.db
        self.writer.sink = (
            sqlite_sink(db.path, db.busy_timeout_ms)
            if isinstance(db, SQLiteDatabase)
            else loop_sink(db, asyncio.get_running_loop())
        )
        self.writer.start()
        logging.getLogger("shipyard").addHandler(self._recorder)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._clean_up_often()),
            loop.create_task(self._refresh_often()),
        ]

    async def _refresh_often(self) -> None:
        """Every flush interval: the `logs` settings any process changed, then what waits
        to the writer under them (so a change applies to every entry written after it)."""
        while True:
            await asyncio.sleep(self.settings.logs_flush_interval)
            await self._submit()
            self.writer.report()

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

    async def flush(self) -> None:
        """Write every finished request and waiting entry now (tests, shutdown)."""
        if self.telemetry is not None:
            self.telemetry.flush()
        await self._submit()
        await self.writer.flush()
        self.writer.report()

    async def stop(self) -> None:
        logging.getLogger("shipyard").removeHandler(self._recorder)
        for task in self._tasks:
            await cancel(task)
        self._tasks = []
        await self._submit()
        await self.writer.close()
        self.writer.report()
        if self.tracing is not None:
            await self.tracing.close()
        self._started = False
