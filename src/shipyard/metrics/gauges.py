"""The process and host gauges: what each process measures about itself and its machine
(cheap, at every snapshot) and what it reads from the database (every flush interval).

- per process (merge `process`: one series per process, gone with it): CPU seconds,
  resident memory, open file descriptors;
- per machine (label `host`, merge `max`): free bytes on the data directory's disk;
- per database (merge `max`: every process reads the same value): its size and WAL size,
  the job queues' depth and lag;
- per pool (merge `sum`): PostgreSQL connections idle, busy, and clients waiting.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from shipyard.settings import Settings
from shipyard.tools.db import Database
from shipyard.tools.metrics import Registry
from shipyard.tools.queue import Queue

log = logging.getLogger("shipyard.metrics")


def sqlite_file(settings: Settings) -> Path:
    """The SQLite file the settings name (as tools/db.py's `connect` opens it)."""
    url = settings.database_url
    return (
        Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else settings.sqlite_path
    )


def disk_free(path: Path) -> int | None:
    """Free bytes on the disk of `path` (of its nearest existing parent: on PostgreSQL the
    data directory may not have been created); None when it cannot be read."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Gauges:
    """Defines the gauges on `registry`; `collect` (sync, cheap) runs before each snapshot,
    `refresh` (queries) once per flush interval."""

    def __init__(self, registry: Registry, settings: Settings, db: Database, queue: Queue) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.host = socket.gethostname()
        self.proc = psutil.Process()
        m = registry
        self.cpu = m.gauge(
            "shipyard_process_cpu_seconds_total",
            "CPU time (user + system) this process has used, in seconds.",
            merge="process",
        )
        self.rss = m.gauge(
            "shipyard_process_resident_memory_bytes",
            "Resident memory of this process, in bytes.",
            merge="process",
        )
        self.fds = m.gauge(
            "shipyard_process_open_fds", "Open file descriptors of this process.", merge="process"
        )
        self.disk_free = m.gauge(
            "shipyard_disk_free_bytes",
            "Free bytes on the disk holding the data directory, per machine.",
            ("host",),
            merge="max",
        )
        self.db_size = m.gauge(
            "shipyard_database_size_bytes",
            "Size of the database (SQLite: its file; PostgreSQL: pg_database_size).",
            merge="max",
        )
        self.wal_size = m.gauge(
            "shipyard_database_wal_bytes",
            "Size of the write-ahead log (SQLite: the -wal file; PostgreSQL: pg_ls_waldir, "
            "when the role may read it).",
            merge="max",
        )
        self.depth = m.gauge(
            "shipyard_jobs_queue_depth",
            "Jobs due and waiting to run, per queue.",
            ("queue",),
            merge="max",
        )
        self.lag = m.gauge(
            "shipyard_jobs_queue_lag_seconds",
            "How long the oldest due job of the queue has been waiting, in seconds.",
            ("queue",),
            merge="max",
        )
        self.pool = m.gauge(
            "shipyard_db_pool_connections",
            "PostgreSQL pool connections by state: idle, busy, waiting (clients queued).",
            ("state",),
            merge="sum",
        )
        self._pool_stats: Callable[[], dict[str, int]] | None = getattr(db, "pool_stats", None)
        self._wal_readable = True
        registry.collectors.append(self.collect)

    def collect(self) -> None:
        proc = self.proc
        with contextlib.suppress(psutil.Error, OSError):
            t = proc.cpu_times()
            self.cpu.set(t.user + t.system)
            self.rss.set(float(proc.memory_info().rss))
            if hasattr(proc, "num_fds"):  # POSIX
                self.fds.set(float(proc.num_fds()))
        free = disk_free(self.settings.data_dir)
        if free is not None:
            self.disk_free.set(float(free), (self.host,))
        if self._pool_stats is not None:
            for state, n in self._pool_stats().items():
                self.pool.set(float(n), (state,))

    async def refresh(self) -> None:
        """The gauges read from the database."""
        await self._queues()
        await self._database()

    async def _queues(self) -> None:
        due = await self.queue.due_by_queue(time.time())
        for key in list(self.depth.values):  # queues that emptied read 0, not their old depth
            if key[0] not in due:
                self.depth.set(0.0, key)
                self.lag.set(0.0, key)
        for queue, (n, lag) in due.items():
            self.depth.set(float(n), (queue,))
            self.lag.set(lag, (queue,))

    async def _database(self) -> None:
        if self.db.dialect != "postgres":
            path = sqlite_file(self.settings)
            self.db_size.set(float(_size(path)))
            self.wal_size.set(float(_size(path.with_name(path.name + "-wal"))))
            return
        row = await self.db.fetchone("SELECT pg_database_size(current_database())")
        if row is not None:
            self.db_size.set(float(row[0]))
        if self._wal_readable:
            try:
                row = await self.db.fetchone("SELECT COALESCE(SUM(size), 0) FROM pg_ls_waldir()")
            except Exception as exc:  # not a superuser nor in pg_monitor: no WAL size
                self._wal_readable = False
                log.info("metrics: the WAL size is not readable by this role (%s)", exc)
                return
            if row is not None:
                self.wal_size.set(float(row[0]))


__all__ = ["Gauges", "disk_free", "sqlite_file"]
