"""The alerting tables, shared by every process and machine through the database:

- `_alert_ticks`: one row; the evaluation tick last claimed. A process claims a tick with
  one conditional UPDATE (`"at" < tick`), so exactly one process evaluates each tick.
- `_alert_evaluations`: a log of evaluations (tick, who, how long, error), pruned.
- `_alert_samples`: per windowed rule (its `sample_key`), the counters it needs at each
  evaluation, pruned past the longest window.
- `_alert_state`: per rule, where its state machine stands and the last alert it made.
- `_alert_silences`: silences (alerts/silences.py).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson

from shipyard.tools.db import Database, Executor

_PG_LOCK_ID = 7431  # advisory lock: one process creates the tables at a time
TICK = "evaluate"
OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class AlertState:
    """One rule's state: inactive → pending → firing → resolved (→ pending …)."""

    rule: str
    state: str = "inactive"
    since: float | None = None  # pending or firing since
    fired_at: float | None = None
    resolved_at: float | None = None
    notified_at: float | None = None  # the last firing notification sent (None: none yet)
    value: float | None = None
    alert: dict[str, Any] = field(default_factory=dict)  # the last alert made (labels…)


_STATE_COLS = '"rule", "state", "since", "fired_at", "resolved_at", "notified_at", "value", "alert"'


def _state(r: Any) -> AlertState:
    def f(v: Any) -> float | None:
        return None if v is None else float(v)

    return AlertState(
        str(r[0]), str(r[1]), f(r[2]), f(r[3]), f(r[4]), f(r[5]), f(r[6]), orjson.loads(r[7])
    )


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure_schema(self) -> None:
        pg = self.db.dialect == "postgres"
        ident = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
        real = "DOUBLE PRECISION" if pg else "REAL"
        async with self.db.transaction() as tx:
            if pg:
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_alert_ticks" ('
                f'"name" TEXT PRIMARY KEY NOT NULL, "at" {real} NOT NULL, '
                f'"evaluated" {real} NOT NULL, "owner" TEXT NOT NULL)'
            )
            await tx.execute(
                'INSERT INTO "_alert_ticks" ("name", "at", "evaluated", "owner") '
                "VALUES (?, 0, 0, '') ON CONFLICT DO NOTHING",
                (TICK,),
            )
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_alert_evaluations" ('
                f'"id" {ident}, "at" {real} NOT NULL, "owner" TEXT NOT NULL, '
                f'"duration_ms" {real} NOT NULL, "firing" INTEGER NOT NULL, '
                '"notifications" INTEGER NOT NULL, "error" TEXT NOT NULL)'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_alert_evaluations_at" ON "_alert_evaluations" ("at")'
            )
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_alert_samples" ('
                f'"key" TEXT NOT NULL, "at" {real} NOT NULL, "value" TEXT NOT NULL)'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_alert_samples_key" ON "_alert_samples" ("key", "at")'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_alert_samples_at" ON "_alert_samples" ("at")'
            )
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_alert_state" ('
                '"rule" TEXT PRIMARY KEY NOT NULL, "state" TEXT NOT NULL, '
                f'"since" {real}, "fired_at" {real}, "resolved_at" {real}, '
                f'"notified_at" {real}, "value" {real}, "alert" TEXT NOT NULL, '
                f'"updated" {real} NOT NULL)'
            )
            await tx.execute(
                'CREATE TABLE IF NOT EXISTS "_alert_silences" ('
                '"id" TEXT PRIMARY KEY NOT NULL, "matchers" TEXT NOT NULL, '
                f'"starts" {real} NOT NULL, "ends" {real} NOT NULL, '
                '"comment" TEXT NOT NULL, "created_by" TEXT NOT NULL, '
                '"created" TEXT NOT NULL, "updated" TEXT NOT NULL)'
            )
            await tx.execute(
                'CREATE INDEX IF NOT EXISTS "_alert_silences_ends" ON "_alert_silences" ("ends")'
            )

    # -------------------------------------------------------------- ticks

    async def claim(self, tick: float, now: float) -> float | None:
        """Claim the tick starting at `tick`: the previous evaluation's time when this
        process won it (0.0 for the first ever), None when another process already did."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                'SELECT "evaluated" FROM "_alert_ticks" WHERE "name" = ?', (TICK,)
            )
            won = await tx.execute(
                'UPDATE "_alert_ticks" SET "at" = ?, "evaluated" = ?, "owner" = ? '
                'WHERE "name" = ? AND "at" < ?',
                (tick, now, OWNER, TICK, tick),
            )
        if won != 1:
            return None
        return float(row[0]) if row is not None else 0.0

    async def last_tick(self) -> tuple[float, float, str]:
        row = await self.db.fetchone(
            'SELECT "at", "evaluated", "owner" FROM "_alert_ticks" WHERE "name" = ?', (TICK,)
        )
        return (float(row[0]), float(row[1]), str(row[2])) if row else (0.0, 0.0, "")

    async def log_evaluation(
        self, tick: float, ms: float, firing: int, notifications: int, error: str, keep: float
    ) -> None:
        await self.db.execute(
            'INSERT INTO "_alert_evaluations" ("at", "owner", "duration_ms", "firing", '
            '"notifications", "error") VALUES (?, ?, ?, ?, ?, ?)',
            (tick, OWNER, ms, firing, notifications, error[:1000]),
        )
        await self.db.execute('DELETE FROM "_alert_evaluations" WHERE "at" < ?', (tick - keep,))

    async def evaluations(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            'SELECT "at", "owner", "duration_ms", "firing", "notifications", "error" '
            'FROM "_alert_evaluations" ORDER BY "id" DESC LIMIT ?',
            (limit,),
        )
        return [
            {"at": float(r[0]), "owner": r[1], "durationMs": round(float(r[2]), 3),
             "firing": int(r[3]), "notifications": int(r[4]), "error": r[5]}
            for r in rows
        ]  # fmt: skip

    # -------------------------------------------------------------- samples

    async def baseline(self, key: str, start: float) -> list[float] | None:
        """The sample at the window's start: the latest at or before `start`, else the
        oldest one after it (a window only partly sampled yet)."""
        row = await self.db.fetchone(
            'SELECT "value" FROM "_alert_samples" WHERE "key" = ? AND "at" <= ? '
            'ORDER BY "at" DESC LIMIT 1',
            (key, start),
        )
        if row is None:
            row = await self.db.fetchone(
                'SELECT "value" FROM "_alert_samples" WHERE "key" = ? ORDER BY "at" LIMIT 1',
                (key,),
            )
        if row is None:
            return None
        value = orjson.loads(row[0])
        return [float(v) for v in value] if isinstance(value, list) else None

    async def add_samples(
        self, tx: Executor, now: float, samples: dict[str, list[float]], keep: float
    ) -> None:
        if samples:
            await tx.executemany(
                'INSERT INTO "_alert_samples" ("key", "at", "value") VALUES (?, ?, ?)',
                [(k, now, orjson.dumps(v).decode()) for k, v in samples.items()],
            )
        await tx.execute('DELETE FROM "_alert_samples" WHERE "at" < ?', (now - keep,))

    # -------------------------------------------------------------- states

    async def states(self, ex: Executor | None = None) -> dict[str, AlertState]:
        rows = await (ex or self.db).fetchall(f'SELECT {_STATE_COLS} FROM "_alert_state"')
        return {str(r[0]): _state(r) for r in rows}

    async def save_state(self, tx: Executor, s: AlertState, now: float) -> None:
        values = (s.state, s.since, s.fired_at, s.resolved_at, s.notified_at, s.value,
                  orjson.dumps(s.alert).decode(), now)  # fmt: skip
        n = await tx.execute(
            'UPDATE "_alert_state" SET "state" = ?, "since" = ?, "fired_at" = ?, '
            '"resolved_at" = ?, "notified_at" = ?, "value" = ?, "alert" = ?, "updated" = ? '
            'WHERE "rule" = ?',
            (*values, s.rule),
        )
        if n == 0:
            await tx.execute(
                f'INSERT INTO "_alert_state" ({_STATE_COLS}, "updated") '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.rule, *values),
            )

    async def forget_state(self, tx: Executor, rule: str) -> None:
        await tx.execute('DELETE FROM "_alert_state" WHERE "rule" = ?', (rule,))


__all__ = ["OWNER", "AlertState", "AlertStore"]
