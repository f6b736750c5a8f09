"""Backups as an extension: the `/api/backups` routes, the `backups` settings section, the
tables (state.py), the job kind that makes a scheduled backup, and a loop in every server
and worker process that enqueues each tick of `backups.cron` as one job — the job's
unique key makes the first process's insert win, so a tick runs once however many
processes and machines share the database — and keeps the gauge
`shipyard_backup_last_success_timestamp_seconds` that the ShipyardBackupMissing alert
reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from starlette.routing import BaseRoute

from shipyard.backups import routes
from shipyard.backups.guard import guard_for
from shipyard.backups.openapi import openapi
from shipyard.backups.section import BACKUPS
from shipyard.backups.service import Backups, Busy
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.tools.cronexpr import latest_tick, next_tick

log = logging.getLogger("shipyard.backups")

JOB_KIND = "backups_create"
CATCH_UP = 300.0  # a tick missed while no process ran is still made if at most this old
GAUGE = "shipyard_backup_last_success_timestamp_seconds"


class BackupsExtension(Extension):
    def __init__(self, services: Any) -> None:
        super().__init__(name="backups", requires=("records", "files", "jobs"))
        self.roles = ("server", "worker")
        self.svc = services
        self.backups = Backups(services)
        self.gauge = services.telemetry.metrics.gauge(
            GAUGE,
            "When the latest verified backup finished (epoch seconds); 0 while a schedule "
            "is set and none has succeeded; absent with neither.",
            merge="max",
        )
        self._fired: tuple[str, float] | None = None
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return openapi()

    def record_subscribers(self) -> Sequence[Any]:
        return (guard_for(self.svc, self.backups.state),)

    def settings_sections(self) -> Sequence[Section]:
        return (BACKUPS,)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(JOB_KIND, self._scheduled, builtin=True, queue="backups", max_attempts=1)
        return f

    async def migrate(self) -> None:
        await self.backups.state.migrate()

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._sweep)
        self._task = asyncio.create_task(self._loop())

    def _sweep(self) -> None:
        """Remove scratch directories a process that died left behind (only those older
        than the lock's lease: a live backup in another process may be using newer ones)."""
        root = self.backups.tmp_root
        if not root.is_dir():
            return
        cutoff = time.time() - self.backups.settings.backups_lock_timeout
        for d in root.iterdir():
            with contextlib.suppress(OSError):
                if d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.backups.target.close()

    async def health_detail(self) -> Mapping[str, Any]:
        return await self.backups.health()

    # ------------------------------------------------------------------ schedule

    async def _scheduled(self, ctx: Any, args: Any) -> dict[str, Any]:
        s = await self.svc.runtime.current()
        try:
            run = await self.backups.create(auto=True)
        except Busy:
            log.warning("scheduled backup skipped: another backup or restore runs")
            return {"skipped": "busy"}
        removed = await self.backups.prune(s.backups_cron_max_keep)
        await self.refresh_gauge()
        return {"key": run.key, "ok": run.ok, "removed": removed}

    async def tick(self, now: float | None = None) -> bool:
        """Enqueue the latest tick of the schedule unless done; True when enqueued here."""
        now = time.time() if now is None else now
        s = await self.svc.runtime.current()
        cron = s.backups_cron
        if not cron:
            return False
        t = latest_tick(cron, now)
        if now - t > CATCH_UP or self._fired == (cron, t):
            return False
        await self.svc.jobs.enqueue(
            JOB_KIND, {"tick": t}, unique_key=f"backups:cron:{int(t)}", keep_unique=True
        )
        self._fired = (cron, t)
        return True

    async def refresh_gauge(self) -> None:
        s = await self.svc.runtime.current()
        good = await self.backups.state.latest("create", ok=True)
        self.gauge.values.clear()
        if good is not None:
            self.gauge.set(good.finished)
        elif s.backups_cron:
            self.gauge.set(0.0)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                await self.refresh_gauge()
                s = await self.svc.runtime.current()
                now = time.time()
                wake = next_tick(s.backups_cron, now) - now if s.backups_cron else 60.0
            except Exception as exc:  # the database is away: try again later
                log.warning("backup schedule: %s", exc)
                wake = 60.0
            await asyncio.sleep(min(max(wake, 0.05), 60.0))
