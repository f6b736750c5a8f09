"""Backups: make, list, upload, delete, verify and restore archives (archive.py) kept
locally or in S3 (target.py), one operation at a time across every process (state.py).

A backup snapshots the database without stopping writes (sqlite_copy.py, pg_copy.py),
adds the stored files, writes the manifest, then — before it is stored — is checked
like a restore would use it (verify.py); the outcome is recorded either way, so a
failed backup is as visible as a missing one. No HTTP here: routes.py and the CLI
call these methods and map `BackupError` / `Busy` to answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from shipyard import __version__
from shipyard.backups import archive, pg_copy, sqlite_copy, verify
from shipyard.backups.drill import Drill, Replay
from shipyard.backups.restore import restore_database, restore_files
from shipyard.backups.state import Run, State
from shipyard.backups.target import Target
from shipyard.tools.db import SQLiteDatabase
from shipyard.tools.storage import Listed

log = logging.getLogger("shipyard.backups")

NAME_RE = re.compile(r"^[a-z0-9_-]+\.zip$")  # names a backup is created with (PocketBase's)
# names accepted for uploads and in URLs: also upper case and dots, never a path
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,150}\.zip$")
AUTO_PREFIX = "auto_backup_"  # scheduled backups: the ones retention removes
BUSY = "Try again later - another backup/restore operation has already been started."


class Busy(Exception):
    """Another backup or restore runs (in this or another process)."""


class BackupError(Exception):
    """The operation cannot be done as asked (unusable archive, refused restore)."""


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


class Backups:
    def __init__(self, services: Any) -> None:
        self.svc = services
        s = services.settings
        self.settings = s
        self.state = State(services.aux_db, s.backups_lock_timeout)
        local = Path(s.backups_dir) if s.backups_dir else s.data_dir / "backups"
        self.target = Target(services.runtime, local)
        self.tmp_root = s.data_dir / ".backups-tmp"
        self._pg_dump = ""
        # point-in-time recovery sets this: it brings a drill's scratch restore forward
        # to now before the scratch instance starts (drill.py, docs/operations/drills.md)
        self.replay: Replay | None = None

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private directory on the data directory's disk, removed afterwards."""
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=self.tmp_root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def locked(self, action: str) -> AsyncIterator[None]:
        holder = await self.state.acquire(action)
        if holder is None:
            raise Busy(BUSY)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self.state.release(holder)

    @property
    def engine(self) -> str:
        return "sqlite" if isinstance(self.svc.raw_db, SQLiteDatabase) else "postgres"

    async def pg_dump(self) -> str:
        if not self._pg_dump:
            major = await pg_copy.server_major(self.settings.database_url)
            self._pg_dump = await anyio.to_thread.run_sync(
                pg_copy.pick_pg_dump, self.settings.backups_pg_dump, major
            )
        return self._pg_dump

    def _files(self) -> Any:
        return self.svc.extension("files").store

    # ------------------------------------------------------------------ reading

    async def listing(self) -> list[Listed]:
        storage = await self.target.storage()
        return [i for i in await storage.listing() if KEY_RE.match(i.key)]

    async def exists(self, key: str) -> bool:
        storage = await self.target.storage()
        return await storage.stat(key) is not None

    def default_name(self, prefix: str = "backup_") -> str:
        return f"{prefix}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.zip"

    # ------------------------------------------------------------------ making

    async def create(self, name: str = "", *, auto: bool = False) -> Run:
        if name and await self.exists(name):
            raise BackupError(f"A backup named {name} exists already.")
        async with self.locked("create"):
            return await self._make(name or await self._free_name(AUTO_PREFIX if auto else ""))

    async def _free_name(self, prefix: str) -> str:
        base = self.default_name(prefix or "backup_")
        name, n = base, 1
        while await self.exists(name):
            n += 1
            name = base.removesuffix(".zip") + f"_{n}.zip"
        return name

    async def _make(self, name: str) -> Run:
        """Snapshot, archive, check and store (the lock is held by the caller)."""
        started = time.time()
        detail: dict[str, Any] = {}
        size = 0
        ok = False
        try:
            with self.scratch() as tmp:
                path = tmp / name
                manifest = await self._write(path, tmp)
                size = path.stat().st_size
                detail.update(
                    engine=manifest["engine"],
                    files=manifest["files"],
                    tables=sum(len(t) for t in manifest["databases"].values()),
                )
                if self.settings.backups_verify:
                    check_dir = tmp / "check"
                    check_dir.mkdir()
                    verdict = await self._check(path, check_dir)
                    detail.update(verdict.to_json())
                    ok = verdict.ok
                else:
                    ok = True
                    detail["verified"] = None
                storage = await self.target.storage()
                with path.open("rb") as f:
                    await storage.put_file(name, f, size, "application/zip")
        except Exception as exc:
            log.exception("backup %s failed", name)
            detail["error"] = str(exc)[:500]
            ok = False
        detail["seconds"] = round(time.time() - started, 3)
        run = await self.state.record(name, "create", ok, started, size, detail)
        if "error" in detail:
            raise BackupError(f"The backup failed: {detail['error']}")
        return run

    async def _check(
        self, path: Path, scratch: Path, hold: verify.Hold | None = None
    ) -> verify.Verdict:
        pg = self.engine == "postgres"
        return await verify.check(
            path,
            scratch,
            self.settings.database_url if pg else "",
            await self.pg_dump() if pg else "",
            limit=self.settings.backups_max_unpacked_size,
            hold=hold,
        )

    async def _write(self, path: Path, tmp: Path) -> dict[str, Any]:
        w = archive.Writer(path)
        try:
            databases = await self._snapshot(w, tmp)
            files = await self._add_files(w)
            manifest = {
                "format": archive.FORMAT,
                "formatVersion": archive.FORMAT_VERSION,
                "engine": self.engine,
                "created": iso(time.time()),
                "shipyard": __version__,
                "schemaVersion": self.svc.store.version,
                "databases": databases,
                "files": files,
            }
            await anyio.to_thread.run_sync(w.finish, manifest)
        except BaseException:
            await anyio.to_thread.run_sync(w.abort)
            raise
        return {**manifest, "members": w.members}

    async def _snapshot(self, w: archive.Writer, tmp: Path) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if self.engine == "sqlite":
            lives = (self.svc.raw_db.path, self.svc.aux_db.path)
            for name, live in zip(archive.SQLITE_MEMBERS, lives, strict=True):
                copy = tmp / ("snapshot-" + name)
                out[name] = await anyio.to_thread.run_sync(sqlite_copy.snapshot, live, copy)
                await anyio.to_thread.run_sync(w.add_file, name, copy)
                copy.unlink()
            return out
        dump = tmp / "snapshot.dump"
        url = self.settings.database_url
        out[archive.PG_MEMBER] = await pg_copy.snapshot(url, dump, await self.pg_dump())
        await anyio.to_thread.run_sync(w.add_file, archive.PG_MEMBER, dump)
        dump.unlink()
        return out

    async def _add_files(self, w: archive.Writer) -> int:
        storage = await self._files().storage()
        items = await storage.listing()
        for item in items:
            with w.member(archive.STORAGE + item.key) as out:
                async for chunk in storage.read(item.key):
                    await anyio.to_thread.run_sync(out.write, chunk)
        return len(items)

    # ------------------------------------------------------------------ other operations

    async def upload(self, name: str, file: BinaryIO, size: int) -> None:
        """Store an uploaded archive; BackupError when it is no zip or its members declare
        more than `backups_max_unpacked_size` (the bytes are counted again on restore)."""
        await anyio.to_thread.run_sync(self._check_upload, file)
        storage = await self.target.storage()
        await storage.put_file(name, file, size, "application/zip")
        await self.state.record(name, "upload", True, time.time(), size, {})

    def _check_upload(self, file: BinaryIO) -> None:
        try:
            with zipfile.ZipFile(file) as z:
                archive.check_declared(z, self.settings.backups_max_unpacked_size)
        except archive.ArchiveError as exc:
            raise BackupError(f"The backup cannot be stored: {exc}.") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BackupError(f"The backup cannot be stored: not a zip archive: {exc}.") from None
        finally:
            file.seek(0)

    async def delete(self, key: str) -> None:
        async with self.locked("delete"):
            storage = await self.target.storage()
            if await storage.stat(key) is None:
                raise BackupError("Invalid or already deleted backup file.")
            await storage.delete([key])

    async def _fetch(self, key: str, dest: Path) -> None:
        storage = await self.target.storage()
        if await storage.stat(key) is None:
            raise BackupError("Missing or invalid backup file.")
        async with await anyio.open_file(dest, "wb") as out:
            async for chunk in storage.read(key):
                await out.write(chunk)

    async def verify(self, key: str) -> Run:
        """Check a stored archive again (the CLI's `backup verify`)."""
        started = time.time()
        with self.scratch() as tmp:
            path = tmp / "archive.zip"
            await self._fetch(key, path)
            check_dir = tmp / "check"
            check_dir.mkdir()
            verdict = await self._check(path, check_dir)
            size = path.stat().st_size
        return await self.state.record(key, "verify", verdict.ok, started, size, verdict.to_json())

    async def prune(self, keep: int) -> list[str]:
        """Remove the oldest scheduled archives beyond `keep`; the keys removed."""
        auto = sorted(
            (i for i in await self.listing() if i.key.startswith(AUTO_PREFIX)),
            key=lambda i: (i.modified, i.key),
        )
        gone = [i.key for i in auto[: max(0, len(auto) - keep)]]
        if gone:
            storage = await self.target.storage()
            await storage.delete(gone)
        return gone

    async def restore(self, key: str) -> Run:
        """Replace the data with the archive's: checked first, a safety backup of what is
        there now, then the database and the files; every process reloads."""
        started = time.time()
        async with self.locked("restore"):
            with self.scratch() as tmp:
                path = tmp / "restore.zip"
                await self._fetch(key, path)
                try:
                    manifest = await anyio.to_thread.run_sync(
                        archive.read_manifest, path, self.settings.backups_max_unpacked_size
                    )
                except archive.ArchiveError as exc:
                    raise BackupError(f"The backup cannot be restored: {exc}.") from None
                if manifest["engine"] != self.engine:
                    raise BackupError(
                        f"The backup cannot be restored: it holds a {manifest['engine']} "
                        f"database and this instance runs on {self.engine}."
                    )
                check_dir = tmp / "check"
                check_dir.mkdir()
                verdict = await self._check(path, check_dir)
                if not verdict.ok:
                    raise BackupError(
                        "The backup cannot be restored: it failed its check: "
                        + "; ".join(verdict.problems[:5])
                    )
                safety = await self._make(await self._free_name("safety_"))
                await restore_database(self, path, manifest, check_dir)
                files = await restore_files(self, path, manifest, tmp)
                detail = {"safetyBackup": safety.key, "files": files}
        return await self.state.record(key, "restore", True, started, 0, detail)

    async def drill(self, key: str = "") -> Run | None:
        """A restore drill of `key` (default: the newest archive) on a scratch instance;
        None when there is no archive to drill."""
        if key and (not KEY_RE.match(key) or not await self.exists(key)):
            raise BackupError("Missing or invalid backup file.")  # a typo is no failed drill
        return await Drill(self, self.replay).run(key)

    # ------------------------------------------------------------------ health

    async def health(self) -> dict[str, Any]:
        last = await self.state.latest("create")
        good = await self.state.latest("create", ok=True)
        drill = await self.state.latest("drill")
        return {
            "backups": {
                "running": await self.state.running(),
                "last": None
                if last is None
                else {**last.to_json(), "finished": iso(last.finished)},
                "lastSuccess": None if good is None else iso(good.finished),
                "lastDrill": None
                if drill is None
                else {**drill.to_json(), "finished": iso(drill.finished)},
            }
        }
