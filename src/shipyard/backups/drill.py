"""Restore drills (docs/operations/drills.md): prove that the latest backup brings the
service back, and how fast, without touching the live data.

1. The newest stored archive is fetched and checked as a restore would (verify.py): the
   database restored into a scratch place, its integrity and row counts checked.
2. While that scratch restore exists, a real Shipyard is started on it
   (scratch_server.py) and every collection's records are listed through HTTP as a
   superuser; the totals must equal the manifest's row counts.
3. RTO: seconds from the drill's start until the scratch instance answered its first
   successful records read. RPO: the newest write in the live database now minus the
   newest write in the backup (the latest `updated`/`created` over record tables; the
   archive's `created` time when it holds none) — what a restore now would lose.

The outcome is a `drill` row in `_backup_runs` (superuser health, `GET
/api/backups/drills`, the gauges behind the ShipyardBackupDrillFailed alert).

Point-in-time recovery plugs in at `Replay`: with PITR on, the drill is given a function
that brings the scratch restore forward to now (Litestream's or pgBackRest's WAL) before
the instance starts; RPO then measures what the WAL archive, not the archive, would lose.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from shipyard.backups import archive, scratch_server
from shipyard.backups.state import Run
from shipyard.backups.verify import Scratch

if TYPE_CHECKING:
    from shipyard.backups.service import Backups

log = logging.getLogger("shipyard.backups")

# PITR's hook: replays WAL into the scratch restore up to now; what it did, for the report
Replay = Callable[[Scratch], Awaitable[dict[str, Any]]]


def parse_time(text: str) -> float | None:
    """PocketBase's `2026-12-05 08:41:53.238Z` (or ISO 8601) as epoch seconds."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


class Drill:
    def __init__(self, backups: Backups, replay: Replay | None = None) -> None:
        self.backups = backups
        self.replay = replay

    async def latest_key(self) -> str | None:
        items = await self.backups.listing()
        if not items:
            return None
        return str(max(items, key=lambda i: (i.modified, i.key)).key)

    async def run(self, key: str = "") -> Run | None:
        """Drill `key` (default: the newest archive); None when there is no archive."""
        started, t0 = time.time(), time.monotonic()
        key = key or await self.latest_key() or ""
        if not key:
            return None
        detail: dict[str, Any] = {"problems": []}
        size = 0
        try:
            size = await self._drill(key, t0, detail)
        except Exception as exc:  # recorded as a failed drill: the alert says the rest
            log.exception("restore drill of %s failed", key)
            detail["problems"].append(f"the drill failed: {str(exc)[:400]}")
        detail["seconds"] = round(time.monotonic() - t0, 3)
        ok = not detail["problems"] and detail.get("rto") is not None
        detail["problems"] = detail["problems"][:20]
        return await self.backups.state.record(key, "drill", ok, started, size, detail)

    async def _drill(self, key: str, t0: float, detail: dict[str, Any]) -> int:
        b = self.backups
        settings = b.settings
        with b.scratch() as tmp:
            path: Path = tmp / "drill.zip"
            await b._fetch(key, path)
            manifest = await anyio.to_thread.run_sync(
                archive.read_manifest, path, settings.backups_max_unpacked_size
            )
            if manifest["engine"] != b.engine:
                detail["problems"].append(
                    f"the backup holds a {manifest['engine']} database; this instance runs "
                    f"on {b.engine}"
                )
                return path.stat().st_size
            check_dir = tmp / "check"
            check_dir.mkdir()

            async def hold(scratch: Scratch) -> None:
                await self._serve(scratch, manifest, t0, detail)

            verdict = await b._check(path, check_dir, hold)
            detail.update(
                verified=verdict.ok, integrity=verdict.integrity, tables=verdict.tables,
                rows=verdict.rows,
            )  # fmt: skip
            detail["problems"][:0] = verdict.problems
            await self._rpo(manifest, detail)
            return path.stat().st_size

    async def _serve(
        self, scratch: Scratch, manifest: dict[str, Any], t0: float, detail: dict[str, Any]
    ) -> None:
        settings = self.backups.settings
        replayed = self.replay is not None
        if self.replay is not None:  # PITR: WAL up to now, before the instance starts
            detail["replay"] = await self.replay(scratch)
        db = await scratch_server.open_scratch_db(scratch.data_dir, scratch.database_url)
        try:
            collections = await scratch_server.collections_of(db)
            detail["backupNewest"] = await scratch_server.newest_write(db, collections)
            timeout = settings.backups_drill_timeout
            async with scratch_server.serve(
                scratch.data_dir, scratch.database_url, settings.secret_key, timeout
            ) as url:
                detail["startSeconds"] = round(time.monotonic() - t0, 3)
                reads = await scratch_server.sample_reads(
                    url, db, collections, settings.secret_key, timeout
                )
        finally:
            await db.close()
        if reads.first_read:
            detail["rto"] = round(reads.first_read - t0, 3)
        detail["reads"] = reads.requests
        detail["problems"].extend(reads.problems)
        detail["collections"] = len(reads.counts)
        detail["records"] = dict(sorted(reads.counts.items()))  # served, per table
        if replayed:  # the scratch copy is newer than the archive: its counts no longer apply
            return
        want: dict[str, int] = {}
        for counts in (manifest.get("databases") or {}).values():
            if isinstance(counts, dict):
                want.update(counts)
        for table, got in sorted(reads.counts.items()):
            if want.get(table) != got:
                detail["problems"].append(
                    f"{table}: the API lists {got} records, the manifest says {want.get(table)}"
                )

    async def _rpo(self, manifest: dict[str, Any], detail: dict[str, Any]) -> None:
        svc = self.backups.svc
        live = await scratch_server.newest_write(svc.raw_db, list(svc.store.all()))
        detail["liveNewest"] = live
        backup_t = parse_time(str(detail.get("backupNewest") or manifest.get("created", "")))
        live_t = parse_time(live) if live else None
        if backup_t is None:
            return
        detail["rpo"] = round(max(0.0, (live_t or backup_t) - backup_t), 3)
