"""Checking an archive the way a restore would use it: the manifest is read (a newer
format is refused), every member's checksum compared, the database restored into a
scratch place (a file beside the archive, or a scratch PostgreSQL database), the
engine's integrity check run there and every table's row count compared with the
manifest's. The verdict says what was checked and every problem found."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from shipyard.backups import archive, pg_copy, sqlite_copy


@dataclass
class Verdict:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    integrity: str = ""  # the engine's verdict ("ok")
    tables: int = 0
    rows: int = 0
    files: int = 0
    seconds: float = 0.0

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "problems": self.problems[:20],
            "integrity": self.integrity,
            "tables": self.tables,
            "rows": self.rows,
            "files": self.files,
            "verifySeconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Scratch:
    """Where a checked archive's database lies restored: SQLite files in `data_dir`
    (`database_url` empty), or a scratch PostgreSQL database at `database_url`."""

    data_dir: Path
    database_url: str = ""


# called while the scratch restore still exists, once it checked out (drill.py)
Hold = Callable[[Scratch], Awaitable[None]]


def _compare(v: Verdict, what: str, want: Any, got: Mapping[str, int]) -> None:
    if not isinstance(want, dict):
        v.fail(f"{what}: the manifest has no row counts")
        return
    for table in sorted(set(want) | set(got)):
        if want.get(table) != got.get(table):
            v.fail(f"{what}: table {table} has {got.get(table)} rows, the manifest says "
                   f"{want.get(table)}")  # fmt: skip
    v.tables += len(got)
    v.rows += sum(got.values())


async def check(
    path: Path,
    scratch: Path,
    pg_url: str = "",
    pg_dump: str = "",
    *,
    limit: int = 0,
    hold: Hold | None = None,
) -> Verdict:
    """Verify the archive at `path`, using the directory `scratch` (emptied by the
    caller); with `pg_url`, PostgreSQL archives are restored on that server. `limit`:
    the bytes it may unpack to (0: unbounded). `hold`, when the restore checked out, is
    awaited before the scratch database goes away (a drill serves it meanwhile)."""
    start = time.monotonic()
    v = Verdict()
    try:
        manifest = await anyio.to_thread.run_sync(archive.read_manifest, path, limit)
        problems = await anyio.to_thread.run_sync(archive.check_members, path, manifest, limit)
    except archive.ArchiveError as exc:
        v.fail(str(exc))
        v.seconds = time.monotonic() - start
        return v
    for problem in problems:
        v.fail(problem)
    v.files = len(archive.storage_members(manifest))
    if not v.ok:  # damaged bytes: restoring them would prove nothing more
        v.seconds = time.monotonic() - start
        return v
    try:
        await _restore_and_compare(v, path, manifest, scratch, pg_url, pg_dump, limit, hold)
    except archive.ArchiveError as exc:  # it unpacked to more than the limit
        v.fail(str(exc))
    v.seconds = time.monotonic() - start
    return v


async def _restore_and_compare(
    v: Verdict,
    path: Path,
    manifest: Mapping[str, Any],
    scratch: Path,
    pg_url: str,
    pg_dump: str,
    limit: int,
    hold: Hold | None,
) -> None:
    databases = manifest.get("databases") or {}
    if manifest["engine"] == "sqlite":
        for name in archive.SQLITE_MEMBERS:
            if name not in manifest["members"]:
                v.fail(f"{name}: missing")
                continue
            dest = scratch / name
            await anyio.to_thread.run_sync(archive.extract, path, name, dest, limit)
            verdict, counts = await anyio.to_thread.run_sync(sqlite_copy.check, dest)
            v.integrity = verdict if not v.integrity or verdict != "ok" else v.integrity
            if verdict != "ok":
                v.fail(f"{name}: integrity check: {verdict}")
                continue
            _compare(v, name, databases.get(name), counts)
        if v.ok and hold is not None:
            await hold(Scratch(scratch))
    else:
        if not pg_url:
            v.fail("a PostgreSQL backup is checked on a PostgreSQL server; none is configured")
        elif archive.PG_MEMBER not in manifest["members"]:
            v.fail(f"{archive.PG_MEMBER}: missing")
        else:
            dest = scratch / archive.PG_MEMBER
            await anyio.to_thread.run_sync(archive.extract, path, archive.PG_MEMBER, dest, limit)
            want = databases.get(archive.PG_MEMBER)

            async def checked(url: str, counts: dict[str, int]) -> None:
                _compare(v, archive.PG_MEMBER, want, counts)
                if v.ok and hold is not None:
                    await hold(Scratch(scratch, url))

            verdict = await pg_copy.check(pg_url, dest, pg_dump, checked)
            v.integrity = verdict
            if verdict != "ok":
                v.fail(f"restore into a scratch database: {verdict}")
