"""PostgreSQL databases in and out of archives, while the server keeps writing.

- `snapshot`: a REPEATABLE READ, read-only transaction exports its snapshot; the row
  counts are read in it and `pg_dump --snapshot` dumps exactly that state (custom
  format, no owners or privileges, the backups capability's own `_backup_*` tables
  left out; the whole database, as `--schema` would make `--clean` drop the schema), so the counts in the manifest describe the dump byte for byte.
- `check`: `pg_restore` into a scratch database on the same server, then its counts.
- `restore_into`: tables the archive does not hold are dropped, then `pg_restore
  --clean --single-transaction` replaces the rest: all or nothing.

`pg_dump` comes from `backups_pg_dump`, else the newest of PATH's and the one PyPI
`pgserver` bundles that can dump the server (a pg_dump older than the server refuses).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

OWN_PATTERN = "_backup_*"  # pg_dump's pattern syntax
_VERSION = re.compile(r"(\d+)(?:\.\d+)?")
_TIMEOUT = 6 * 3600


class PgToolError(Exception):
    """pg_dump / pg_restore is missing or failed: the message says which and why."""


def _candidates(configured: str) -> list[str]:
    if configured:
        return [configured]
    found = [shutil.which("pg_dump") or ""]
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
        found.append(str(bundled) if bundled.exists() else "")
    except ImportError:
        pass
    return [c for c in found if c]


def _major(binary: str) -> int:
    try:
        out = subprocess.run(  # noqa: S603
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = _VERSION.search(out.rsplit(")", 1)[-1]) or _VERSION.search(out)
    return int(m.group(1)) if m else 0


def pick_pg_dump(configured: str, server_major: int) -> str:
    """The pg_dump to use: among those at least as new as the server, the oldest."""
    usable = sorted(
        (major, c) for c in _candidates(configured) if (major := _major(c)) >= server_major
    )
    if not usable:
        raise PgToolError(
            f"no pg_dump of version {server_major} or newer: install postgresql-client "
            "or set SHIPYARD_BACKUPS_PG_DUMP"
        )
    return usable[0][1]


def _sibling(pg_dump: str, name: str) -> str:
    return str(Path(pg_dump).with_name(name))


def _dbname(url: str) -> tuple[str, dict[str, str]]:
    """`--dbname` for a libpq tool, and its environment: the password goes in PGPASSWORD,
    never on the command line (other users of the machine can read that)."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password:
        env["PGPASSWORD"] = str(password)
    return f"--dbname={make_conninfo('', **params)}", env


async def _run(args: list[str], url: str) -> None:
    dbname, env = _dbname(url)
    try:
        with anyio.fail_after(_TIMEOUT):
            done = await anyio.run_process([*args, dbname], check=False, env=env)
    except OSError as exc:
        raise PgToolError(f"{Path(args[0]).name} could not start: {exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PgToolError(f"{Path(args[0]).name} failed: " + " ".join(err[-5:]))


async def _counts(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename NOT LIKE '\\_backup\\_%' ORDER BY tablename"
    )
    names = [str(r[0]) for r in await cur.fetchall()]
    out = {}
    for name in names:
        c = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
        row = await c.fetchone()
        out[name] = int(row[0]) if row else 0
    return out


async def server_major(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return int(conn.info.server_version) // 10000


async def snapshot(url: str, dest: Path, pg_dump: str) -> dict[str, int]:
    """Dump the database at `url` to `dest`; the row count of every table dumped."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        cur = await conn.execute("SELECT pg_export_snapshot(), current_schema()")
        row = await cur.fetchone()
        assert row is not None  # noqa: S101
        snap, schema = str(row[0]), str(row[1])
        counts = await _counts(conn)
        await _run(
            [
                pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                f"--snapshot={snap}",
                f"--exclude-table={schema}.{OWN_PATTERN}", f"--file={dest}",
            ],
            url,
        )  # fmt: skip
        await conn.rollback()
    return counts


def _with_database(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (sep + query if sep else "")


async def check(
    url: str,
    dump: Path,
    pg_dump: str,
    checked: Callable[[str, dict[str, int]], Awaitable[None]],
) -> str:
    """Restore `dump` into a scratch database beside `url`'s: "ok" once `checked` was
    awaited with the scratch database's URL and row counts (before it is dropped), or
    what went wrong."""
    name = "shipyard_verify_" + uuid.uuid4().hex[:12]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            return f"no scratch database could be created: {exc}".strip()
        try:
            scratch = _with_database(url, name)
            try:
                await _run(_restore_args(pg_dump, dump, clean=False), scratch)
            except PgToolError as exc:
                return str(exc)
            async with await psycopg.AsyncConnection.connect(scratch) as conn:
                counts = await _counts(conn)
            await checked(scratch, counts)
            return "ok"
        finally:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _restore_args(pg_dump: str, dump: Path, *, clean: bool) -> list[str]:
    args = [
        _sibling(pg_dump, "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
        "--single-transaction", str(dump),
    ]  # fmt: skip
    return [*args, "--clean", "--if-exists"] if clean else args


async def restore_into(url: str, dump: Path, pg_dump: str, tables: set[str]) -> None:
    """Replace the database's tables with the dump's (`tables`: the ones it holds)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        extra = set(await _counts(conn)) - tables
        for name in sorted(extra):
            await conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )
    await _run(_restore_args(pg_dump, dump, clean=True), url)
