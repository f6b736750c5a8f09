"""Putting a checked archive back into the running instance: the database (SQLite
through the online backup API, PostgreSQL through pg_restore in one transaction), then
the stored files (the archive's written, the others removed), then every process is made
to reload: the schema version moves past both the old and the restored one, so each
process's schema store and response cache start afresh on their next request.

Jobs running in a worker while the restore runs are carried over (`_carry_running`):
where the archive holds such a job (pending, or running an older attempt), its restored
row is set back to what the live worker holds — running, its attempt, its worker, a fresh
lease — so its heartbeat and completion still find it and no other worker runs it a second
time. With SQLite this is written into the checked copy before it replaces the live file
(one commit); with PostgreSQL right after pg_restore's transaction, while an advisory
lock that every claim needs shared (tools/queue.py RESTORE_GATE) is held exclusively from
before the load until the hand-back commits, so no worker claims such a row in between. Jobs the archive lacks (enqueued
after the backup, like the writes that caused them) are not brought back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from shipyard.backups import archive, pg_copy, sqlite_copy
from shipyard.records.schema import NOTIFY_CHANNEL
from shipyard.tools.mime import HEAD_BYTES, detect
from shipyard.tools.queue import RESTORE_GATE
from shipyard.tools.queue_table import PENDING_SQL
from shipyard.tools.storage import check_key


async def restore_database(
    backups: Any, path: Path, manifest: Mapping[str, Any], checked: Path
) -> None:
    """`checked`: where verify.check left the extracted, checked SQLite files."""
    svc = backups.svc
    old = svc.store.version
    queue = svc.jobs.queue
    running = await queue.db.fetchall(
        f"""SELECT "id", "attempt", "attempted_at", "worker" FROM "{queue.table}"
            WHERE "state" = 'running'"""
    )
    lease = svc.settings.jobs_lease
    if manifest["engine"] == "sqlite":
        await anyio.to_thread.run_sync(
            _carry_into_file, checked / archive.SQLITE_MEMBERS[0], queue.table, running, lease
        )
        lives = (svc.raw_db.path, svc.aux_db.path)
        for name, live in zip(archive.SQLITE_MEMBERS, lives, strict=True):
            await anyio.to_thread.run_sync(sqlite_copy.restore_into, checked / name, live)
    else:
        dump = checked / archive.PG_MEMBER
        tables = set(manifest["databases"][archive.PG_MEMBER])
        pg_dump = await backups.pg_dump()
        # no worker claims a job from the load of the table until the running ones are
        # handed back: claims need RESTORE_GATE shared, held here exclusively (this
        # transaction touches no table before pg_restore, so its DROPs do not wait on it)
        async with queue.db.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (RESTORE_GATE,))
            await pg_copy.restore_into(backups.settings.database_url, dump, pg_dump, tables)
            for stmt, params in _carry_running(queue.table, running, lease):
                await tx.execute(stmt, params)
    await _reload(svc, old)


def _carry_running(
    table: str, running: Sequence[Sequence[Any]], lease: float
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that give the live workers' running jobs back to them."""
    until = time.time() + lease
    sql = (
        f'UPDATE "{table}" SET "state" = \'running\', "attempt" = ?, "attempted_at" = ?, '
        f'"worker" = ?, "lease_until" = ?, "finished_at" = NULL '
        f'WHERE "id" = ? AND "state" IN ({PENDING_SQL}, \'running\')'
    )
    return [(sql, (r[1], r[2], r[3], until, r[0])) for r in running]


def _carry_into_file(
    path: Path, table: str, running: Sequence[Sequence[Any]], lease: float
) -> None:
    if not running:
        return
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("BEGIN")
        for stmt, params in _carry_running(table, running, lease):
            conn.execute(stmt, params)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _reload(svc: Any, old: int) -> None:
    row = await svc.raw_db.fetchone(
        """SELECT "value" FROM "_meta" WHERE "key" = 'schema_version'"""
    )
    restored = int(row[0]) if row else 0
    async with svc.raw_db.transaction() as tx:
        await tx.execute(
            """UPDATE "_meta" SET "value" = ? WHERE "key" = 'schema_version'""",
            (str(max(old, restored) + 1),),
        )
        if tx.dialect == "postgres":
            await tx.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    await svc.store.reload()
    svc.cache.clear()
    await svc.runtime.refresh()


async def restore_files(backups: Any, path: Path, manifest: Mapping[str, Any], tmp: Path) -> int:
    """Make the file storage hold exactly the archive's files; how many it holds."""
    storage = await backups.svc.extension("files").store.storage()
    keep: set[str] = set()
    part = tmp / "file.part"
    for member in archive.storage_members(manifest):
        key = member.removeprefix(archive.STORAGE)
        try:
            check_key(key)
        except ValueError:
            continue  # never a path outside the storage
        limit = backups.settings.backups_max_unpacked_size
        await anyio.to_thread.run_sync(archive.extract, path, member, part, limit)
        with part.open("rb") as f:
            ctype = detect(f.read(HEAD_BYTES))
            await storage.put_file(key, f, part.stat().st_size, ctype)
        keep.add(key)
    extra = [i.key for i in await storage.listing() if i.key not in keep]
    if extra:
        await storage.delete(extra)
    part.unlink(missing_ok=True)
    return len(keep)
