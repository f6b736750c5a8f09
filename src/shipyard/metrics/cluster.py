"""Metrics of the whole deployment, shared through the database: every process counted once.

Each process (`shipyard serve` workers, `shipyard worker` processes, on any machine) writes
its registry's snapshot (tools/metrics.py) to its own row of `_metrics_processes` every
`metrics_flush_interval` seconds. A reader merges the rows: counters and histograms add up,
gauges merge as each defines (`sum`, `max`, or `process`: one series per process, labelled
`instance`).

A row not updated for three intervals belongs to a dead process (killed, machine gone).
Whichever process notices first folds its counters and histograms into the `_retired` row
and deletes it, in one transaction (PostgreSQL: the dead rows locked `SKIP LOCKED`, then
the retired row; SQLite: under its write lock), so two processes cleaning at once never
count a row twice. Totals therefore never drop when a process dies, while its gauges and
`process` series disappear with it. A process that stops cleanly folds its own row the same
way. Until a dead row is folded, readers already count only its counters and histograms.

A process that was only stalled (not dead) past three intervals finds its row gone at its
next publication: what the reaper folded was its last published snapshot, so from then on
it publishes, under a new instance name, only what it counted since (`subtract`).

Clocks: `updated` is the writer's wall clock, compared with the reader's: machines sharing
a database need synchronized clocks (NTP), well within an interval, as the job queue does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from shipyard.tools.db import Database, Executor
from shipyard.tools.metrics import Registry, fold_counters, merge

log = logging.getLogger("shipyard.metrics")

TABLE = "_metrics_processes"
RETIRED = "_retired"  # the row holding the counters of processes that are gone
DEAD_AFTER = 3  # intervals without an update after which a process counts as dead
_PG_LOCK_ID = 7431  # advisory lock: one process creates the table at a time


def subtract(snapshot: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """`snapshot` less what `base` already counted: counters and histograms per series
    (gauges are values, not counts, and stay as they are)."""
    out: dict[str, Any] = {}
    for name, entry in snapshot.items():
        old = base.get(name)
        if entry["type"] == "gauge" or old is None or old["type"] != entry["type"]:
            out[name] = entry
            continue
        before = {tuple(labels): value for labels, value in old["series"]}
        series = []
        for labels, value in entry["series"]:
            prev = before.get(tuple(labels))
            if prev is None:
                series.append([labels, value])
            elif entry["type"] == "histogram":
                series.append([labels, [a - b for a, b in zip(value, prev, strict=True)]])
            else:
                series.append([labels, value - prev])
        out[name] = {**entry, "series": series}
    return out


def _loads(body: Any) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ClusterMetrics:
    """This process's part of the shared metrics, and the merged view of all of them.

    `read()` is what `/metrics` serves and what alert rules evaluate:
    `services.extension("metrics").cluster.read()`."""

    def __init__(
        self, db: Database, registry: Registry, interval: float, *, enabled: bool = True
    ) -> None:
        self.db = db
        self.registry = registry
        self.interval = interval
        self.enabled = enabled
        self.pg = db.dialect == "postgres"
        self.host = socket.gethostname()
        self.instance = _instance_name()
        self.role = "server"
        self.started = time.time()
        self.publishing = False  # this process's row is (meant to be) in the table
        self._inserted = False
        self._published: dict[str, Any] | None = None  # the registry as last published
        self._baseline: dict[str, Any] | None = None  # already folded by a reaper
        # publications and reads of this process one at a time: a read must not see the
        # table before a publication and this process's state after it
        self._lock = asyncio.Lock()

    @property
    def dead_after(self) -> float:
        return DEAD_AFTER * self.interval

    async def ensure_schema(self) -> None:
        real = "DOUBLE PRECISION" if self.pg else "REAL"
        async with self.db.transaction() as tx:
            if self.pg:
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            await tx.execute(
                f'CREATE TABLE IF NOT EXISTS "{TABLE}" ('
                '"instance" TEXT PRIMARY KEY, "host" TEXT NOT NULL, "pid" INTEGER NOT NULL, '
                f'"role" TEXT NOT NULL, "started" {real} NOT NULL, "updated" {real} NOT NULL, '
                '"snapshot" TEXT NOT NULL)'
            )
            now = time.time()
            await tx.execute(
                f'INSERT INTO "{TABLE}" ("instance", "host", "pid", "role", "started", '
                "\"updated\", \"snapshot\") VALUES (?, '', 0, 'retired', ?, ?, '{}') "
                'ON CONFLICT ("instance") DO NOTHING',
                (RETIRED, now, now),
            )

    # ------------------------------------------------------------------ this process

    def own(self) -> dict[str, Any]:
        """This process's snapshot as it counts in the cluster (less what was folded)."""
        snap = self.registry.snapshot()
        return snap if self._baseline is None else subtract(snap, self._baseline)

    def _reaped(self) -> None:
        """Our row was folded by another process: what it folded was our last publication."""
        log.warning(
            "metrics: this process published nothing for over %g s and was counted as "
            "stopped; it goes on as a new instance",
            self.dead_after,
        )
        self._baseline = self._published
        self.instance = _instance_name()
        self._inserted = False

    async def publish(self) -> None:
        """Write this process's snapshot to its row (created on the first call)."""
        async with self._lock:
            await self._publish()

    async def _publish(self) -> None:
        self.publishing = True
        raw = self.registry.snapshot()
        body = orjson.dumps(raw if self._baseline is None else subtract(raw, self._baseline))
        now = time.time()
        if self._inserted:
            n = await self.db.execute(
                f'UPDATE "{TABLE}" SET "updated" = ?, "snapshot" = ? WHERE "instance" = ?',
                (now, body.decode(), self.instance),
            )
            if n == 1:
                self._published = raw
                return
            self._reaped()
            body = orjson.dumps(subtract(raw, self._baseline or {}))
        await self.db.execute(
            f'INSERT INTO "{TABLE}" ("instance", "host", "pid", "role", "started", "updated", '
            '"snapshot") VALUES (?, ?, ?, ?, ?, ?, ?)',
            (self.instance, self.host, os.getpid(), self.role, self.started, now, body.decode()),
        )
        self._inserted = True
        self._published = raw

    async def retire(self) -> None:
        """A clean stop: publish once more, then fold our row into the retired one."""
        if not self._inserted:
            self.publishing = False
            return
        async with self._lock:
            await self._publish()
            self.publishing = False
            await self._retire()

    async def _retire(self) -> None:
        async with self.db.transaction() as tx:
            lock = " FOR UPDATE" if self.pg else ""
            rows = await tx.fetchall(
                f'SELECT "instance", "snapshot" FROM "{TABLE}" WHERE "instance" = ?{lock}',
                (self.instance,),
            )
            await self._fold(tx, rows)
        self._inserted = False

    # ------------------------------------------------------------------ dead processes

    async def reap(self, now: float | None = None) -> int:
        """Fold the rows of dead processes into the retired row; how many were folded."""
        cutoff = (time.time() if now is None else now) - self.dead_after
        where = '"updated" < ? AND "instance" <> ?'
        if await self.db.fetchone(f'SELECT 1 FROM "{TABLE}" WHERE {where} LIMIT 1',
                                  (cutoff, RETIRED)) is None:  # fmt: skip
            return 0
        async with self.db.transaction() as tx:
            lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
            rows = await tx.fetchall(
                f'SELECT "instance", "snapshot" FROM "{TABLE}" WHERE {where}{lock}',
                (cutoff, RETIRED),
            )
            folded = await self._fold(tx, rows)
        if folded:
            log.info("metrics: folded %d stopped process(es) into the retired totals", folded)
        return folded

    async def _fold(self, tx: Executor, rows: list[Any]) -> int:
        """In `tx`: add the counters of `rows` (locked by the caller) to the retired row and
        delete them."""
        if not rows:
            return 0
        lock = " FOR UPDATE" if self.pg else ""
        row = await tx.fetchone(
            f'SELECT "snapshot" FROM "{TABLE}" WHERE "instance" = ?{lock}', (RETIRED,)
        )
        retired = (_loads(row[0]) if row else None) or {}
        parts: list[tuple[str, Mapping[str, Any]]] = [(RETIRED, retired)]
        for instance, body in rows:
            snap = _loads(body)
            if snap is not None:
                parts.append((str(instance), fold_counters(snap)))
        total = orjson.dumps(merge(parts)).decode()
        now = time.time()
        n = await tx.execute(
            f'UPDATE "{TABLE}" SET "snapshot" = ?, "updated" = ? WHERE "instance" = ?',
            (total, now, RETIRED),
        )
        if n == 0:  # the table was emptied by hand
            await tx.execute(
                f'INSERT INTO "{TABLE}" ("instance", "host", "pid", "role", "started", '
                "\"updated\", \"snapshot\") VALUES (?, '', 0, 'retired', ?, ?, ?)",
                (RETIRED, now, now, total),
            )
        names = [str(r[0]) for r in rows]
        await tx.execute(
            f'DELETE FROM "{TABLE}" WHERE "instance" IN ({", ".join("?" for _ in names)})', names
        )
        return len(names)

    # ------------------------------------------------------------------ reading

    async def processes(self) -> list[dict[str, Any]]:
        """The processes publishing now (rows younger than the dead-after limit)."""
        cutoff = time.time() - self.dead_after
        rows = await self.db.fetchall(
            f'SELECT "instance", "host", "pid", "role", "started", "updated" FROM "{TABLE}" '
            'WHERE "instance" <> ? AND "updated" >= ? ORDER BY "started"',
            (RETIRED, cutoff),
        )
        keys = ("instance", "host", "pid", "role", "started", "updated")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def read(self) -> dict[str, Any]:
        """The merged snapshot of the whole deployment: live processes (this one's live
        values rather than its stored row), the counters of dead ones, the retired totals.
        Empty when metrics are off."""
        if not self.enabled:
            return {}
        async with self._lock:
            return await self._read()

    async def _read(self) -> dict[str, Any]:
        rows = await self.db.fetchall(f'SELECT "instance", "updated", "snapshot" FROM "{TABLE}"')
        cutoff = time.time() - self.dead_after
        instance = self.instance
        parts: list[tuple[str, Mapping[str, Any]]] = []
        for name, updated, body in rows:
            if name == instance and self.publishing:
                continue
            snap = _loads(body)
            if snap is None:
                continue
            if name != RETIRED and float(updated) < cutoff:
                snap = fold_counters(snap)  # dead, not folded yet: its counts, no gauges
            parts.append((str(name), snap))
        if self.publishing:
            raw = self.registry.snapshot()
            if instance in {r[0] for r in rows} or self._published is None:
                own = raw if self._baseline is None else subtract(raw, self._baseline)
            else:  # folded by another process, which counted our last publication
                own = subtract(raw, self._published)
            parts.append((instance, own))
        return merge(parts)


__all__ = ["DEAD_AFTER", "RETIRED", "TABLE", "ClusterMetrics", "subtract"]
