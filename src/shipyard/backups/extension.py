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

from shipyard.backups import pitr, routes
from shipyard.backups.guard import guard_for
from shipyard.backups.openapi import openapi
from shipyard.backups.section import BACKUPS
from shipyard.backups.service import Backups, Busy
from shipyard.backups.verify import Scratch
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.tools.cronexpr import latest_tick, next_tick

log = logging.getLogger("shipyard.backups")

JOB_KIND = "backups_create"
DRILL_KIND = "backups_drill"
CATCH_UP = 300.0  # a tick missed while no process ran is still made if at most this old
GAUGE = "shipyard_backup_last_success_timestamp_seconds"
DRILL_SUCCESS = "shipyard_backup_drill_last_success_timestamp_seconds"
DRILL_FAILED = "shipyard_backup_drill_failed"
DRILL_RTO = "shipyard_backup_drill_rto_seconds"
DRILL_RPO = "shipyard_backup_drill_rpo_seconds"
# (cron setting, job kind, unique-key prefix) of each schedule the loop keeps
SCHEDULES = (("backups_cron", JOB_KIND, "backups:cron"), ("backups_drill_cron", DRILL_KIND,
             "backups:drill"))  # fmt: skip


class BackupsExtension(Extension):
    def __init__(self, services: Any) -> None:
        super().__init__(name="backups", requires=("records", "files", "jobs"))
        self.roles = ("server", "worker")
        self.svc = services
        self.backups = Backups(services)
        self.guard = guard_for(services, self.backups.state)
        if services.settings.backups_pitr and self.backups.engine == "sqlite":
            self.backups.replay = self._replay  # drills restore the replica's latest state
        self.gauge = services.telemetry.metrics.gauge(
            GAUGE,
            "When the latest verified backup finished (epoch seconds); 0 while a schedule "
            "is set and none has succeeded; absent with neither.",
            merge="max",
        )
        m = services.telemetry.metrics
        self.drill_gauges = {
            DRILL_SUCCESS: m.gauge(
                DRILL_SUCCESS, "When the latest successful restore drill finished (epoch s).",
                merge="max",
            ),
            DRILL_FAILED: m.gauge(
                DRILL_FAILED, "1 when the latest restore drill failed, else 0; absent "
                "before the first drill.", merge="max",
            ),
            DRILL_RTO: m.gauge(
                DRILL_RTO, "The latest successful drill's RTO: seconds until the restored "
                "copy served its first read.", merge="max",
            ),
            DRILL_RPO: m.gauge(
                DRILL_RPO, "The latest successful drill's RPO: seconds of writes a restore "
                "of the latest backup would lose.", merge="max",
            ),
        }  # fmt: skip
        self._fired: dict[str, tuple[str, float]] = {}
        if services.settings.backups_pitr:  # read at each snapshot from the supervisor's status
            metrics = services.telemetry.metrics
            self.pitr_running = metrics.gauge(
                "shipyard_pitr_running",
                "1 while Litestream replicates the SQLite files (SHIPYARD_BACKUPS_PITR), else 0.",
                merge="max",
            )
            self.pitr_lag = metrics.gauge(
                "shipyard_pitr_lag_seconds",
                "How long the point-in-time replica of each SQLite file has been behind.",
                ("database",),
                merge="max",
            )
            metrics.collectors.append(self._collect_pitr)
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return openapi()

    def record_subscribers(self) -> Sequence[Any]:
        return (self.guard,)

    def settings_sections(self) -> Sequence[Section]:
        return (BACKUPS,)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(JOB_KIND, self._scheduled, builtin=True, queue="backups", max_attempts=1)
        f.add_job(
            DRILL_KIND,
            self._scheduled_drill,
            builtin=True,
            queue="backups",
            max_attempts=1,
            timeout=self.backups.settings.backups_lock_timeout,
        )
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

    async def _replay(self, scratch: Scratch) -> dict[str, Any]:
        """A drill with PITR on serves the replica's latest state (archive + WAL up to now),
        so its RPO is what a restore from the replica would lose."""
        return await anyio.to_thread.run_sync(
            pitr.restore_latest_into, self.svc.settings, scratch.data_dir
        )

    def _collect_pitr(self) -> None:
        status = pitr.read_status(self.svc.settings)  # a small local file: cheap enough
        self.pitr_running.set(1.0 if status.get("running") else 0.0)
        for name, db in (status.get("databases") or {}).items():
            self.pitr_lag.set(float(db.get("lagSeconds", 0.0)), (name,))

    async def health_detail(self) -> Mapping[str, Any]:
        out = await self.backups.health()
        if self.svc.settings.backups_pitr:  # written by the supervisor (pitr_supervisor.py)
            out["backups"]["pitr"] = await anyio.to_thread.run_sync(
                pitr.read_status, self.svc.settings
            )
        return out

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

    async def _scheduled_drill(self, ctx: Any, args: Any) -> dict[str, Any]:
        run = await self.backups.drill()
        await self.refresh_gauge()
        if run is None:
            log.warning("scheduled restore drill skipped: there is no backup")
            return {"skipped": "no backup"}
        return {"key": run.key, "ok": run.ok, "rto": run.detail.get("rto")}

    async def tick(self, now: float | None = None) -> bool:
        """Enqueue the latest tick of each schedule (backups, drills) unless done; True
        when one was enqueued here."""
        now = time.time() if now is None else now
        s = await self.svc.runtime.current()
        enqueued = False
        for setting, kind, prefix in SCHEDULES:
            cron = getattr(s, setting)
            if not cron:
                continue
            t = latest_tick(cron, now)
            if now - t > CATCH_UP or self._fired.get(kind) == (cron, t):
                continue
            await self.svc.jobs.enqueue(
                kind, {"tick": t}, unique_key=f"{prefix}:{int(t)}", keep_unique=True
            )
            self._fired[kind] = (cron, t)
            enqueued = True
        return enqueued

    async def refresh_gauge(self) -> None:
        s = await self.svc.runtime.current()
        good = await self.backups.state.latest("create", ok=True)
        self.gauge.values.clear()
        if good is not None:
            self.gauge.set(good.finished)
        elif s.backups_cron:
            self.gauge.set(0.0)
        for g in self.drill_gauges.values():
            g.values.clear()
        last = await self.backups.state.latest("drill")
        if last is None:
            return
        self.drill_gauges[DRILL_FAILED].set(0.0 if last.ok else 1.0)
        drilled = last if last.ok else await self.backups.state.latest("drill", ok=True)
        if drilled is not None:
            self.drill_gauges[DRILL_SUCCESS].set(drilled.finished)
            for name, key in ((DRILL_RTO, "rto"), (DRILL_RPO, "rpo")):
                if isinstance(drilled.detail.get(key), int | float):
                    self.drill_gauges[name].set(float(drilled.detail[key]))

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                await self.refresh_gauge()
                s = await self.svc.runtime.current()
                now = time.time()
                crons = [c for c in (s.backups_cron, s.backups_drill_cron) if c]
                wake = min((next_tick(c, now) - now for c in crons), default=60.0)
            except Exception as exc:  # the database is away: try again later
                log.warning("backup schedule: %s", exc)
                wake = 60.0
            await asyncio.sleep(min(max(wake, 0.05), 60.0))
