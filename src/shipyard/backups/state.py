"""What the backups capability keeps in the database (the auxiliary one: restores of the
main database never touch it, and archives leave these tables out):

- `_backup_lock`: one row; whoever sets `holder` runs the one backup or restore allowed
  at a time, in every process and machine. A holder that died lets go after
  `backups_lock_timeout` seconds.
- `_backup_runs`: every backup, verification, upload and restore, with its outcome and
  what the check found; superuser health and the alert gauge read the latest.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from shipyard.tools.db import Database, Executor


def _ddl(dialect: str) -> list[str]:
    real = "DOUBLE PRECISION" if dialect == "postgres" else "REAL"
    big = "BIGINT" if dialect == "postgres" else "INTEGER"
    return [
        f"""CREATE TABLE IF NOT EXISTS "_backup_lock" (
            "id" INTEGER PRIMARY KEY, "holder" TEXT NOT NULL DEFAULT '',
            "action" TEXT NOT NULL DEFAULT '', "expires" {real} NOT NULL DEFAULT 0)""",
        """INSERT INTO "_backup_lock" ("id") VALUES (1) ON CONFLICT DO NOTHING""",
        f"""CREATE TABLE IF NOT EXISTS "_backup_runs" (
            "id" TEXT PRIMARY KEY, "key" TEXT NOT NULL, "action" TEXT NOT NULL,
            "ok" INTEGER NOT NULL, "started" {real} NOT NULL, "finished" {real} NOT NULL,
            "size" {big} NOT NULL DEFAULT 0, "detail" TEXT NOT NULL DEFAULT '{{}}')""",
        """CREATE INDEX IF NOT EXISTS "_backup_runs_finished" ON "_backup_runs" ("finished")""",
    ]


@dataclass(frozen=True)
class Run:
    id: str
    key: str
    action: str  # create | verify | restore | upload | drill
    ok: bool
    started: float
    finished: float
    size: int
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "ok": self.ok,
            "started": self.started,
            "finished": self.finished,
            "size": self.size,
            **self.detail,
        }


class State:
    def __init__(self, db: Database, lock_timeout: float) -> None:
        self.db = db
        self.lock_timeout = lock_timeout

    async def migrate(self) -> None:
        async with self.db.transaction() as tx:
            for stmt in _ddl(self.db.dialect):
                await tx.execute(stmt)

    async def acquire(self, action: str) -> str | None:
        """A holder id when this caller may run `action` now; None when another runs."""
        holder = uuid.uuid4().hex
        now = time.time()
        n = await self.db.execute(
            """UPDATE "_backup_lock" SET "holder" = ?, "action" = ?, "expires" = ?
               WHERE "id" = 1 AND ("holder" = '' OR "expires" < ?)""",
            (holder, action, now + self.lock_timeout, now),
        )
        return holder if n == 1 else None

    async def release(self, holder: str) -> None:
        await self.db.execute(
            """UPDATE "_backup_lock" SET "holder" = '', "action" = '', "expires" = 0
               WHERE "id" = 1 AND "holder" = ?""",
            (holder,),
        )

    async def running(self, on: Executor | None = None) -> str:
        """The action running now in any process ("" for none); `on`: a transaction on
        the same database to read it in."""
        row = await (on or self.db).fetchone(
            """SELECT "action" FROM "_backup_lock" WHERE "id" = 1 AND "holder" <> ''
               AND "expires" >= ?""",
            (time.time(),),
        )
        return str(row[0]) if row else ""

    async def record(
        self, key: str, action: str, ok: bool, started: float, size: int, detail: dict[str, Any]
    ) -> Run:
        run = Run(uuid.uuid4().hex, key, action, ok, started, time.time(), size, detail)
        await self.db.execute(
            """INSERT INTO "_backup_runs"
               ("id", "key", "action", "ok", "started", "finished", "size", "detail")
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                run.id, key, action, int(ok), started, run.finished, size,
                orjson.dumps(detail).decode(),
            ),
        )  # fmt: skip
        return run

    async def runs(self, action: str, limit: int) -> list[Run]:
        """The latest `limit` runs of `action`, newest first."""
        rows = await self.db.fetchall(
            f"""SELECT {_COLUMNS} FROM "_backup_runs" WHERE "action" = ?
                ORDER BY "finished" DESC LIMIT ?""",
            (action, limit),
        )
        return [_run(r) for r in rows]

    async def latest(self, action: str | None = None, ok: bool | None = None) -> Run | None:
        where: list[str] = []
        params: list[Any] = []
        if action is not None:
            where.append('"action" = ?')
            params.append(action)
        if ok is not None:
            where.append('"ok" = ?')
            params.append(int(ok))
        cond = ("WHERE " + " AND ".join(where)) if where else ""
        row = await self.db.fetchone(
            f"""SELECT {_COLUMNS} FROM "_backup_runs" {cond} ORDER BY "finished" DESC LIMIT 1""",
            params,
        )
        return None if row is None else _run(row)


_COLUMNS = '"id", "key", "action", "ok", "started", "finished", "size", "detail"'


def _run(row: Any) -> Run:
    return Run(
        str(row[0]), str(row[1]), str(row[2]), bool(row[3]), float(row[4]), float(row[5]),
        int(row[6]), orjson.loads(row[7]),
    )  # fmt: skip
