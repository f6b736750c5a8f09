"""SQLite files in and out of archives, while the server keeps writing.

- `snapshot`: `VACUUM INTO` a new file, which reads inside one read transaction (a
  consistent copy; in WAL mode writers are never blocked) and writes a compact file;
  the backups capability's own tables (`_backup_*`: the lock, the results) are dropped
  from the copy, since they describe this instance, not the data.
- `check`: `PRAGMA integrity_check` and the row count of every table.
- `restore_into`: the online backup API from a checked file into the live one: one
  write transaction that other connections (other processes too) see as any commit,
  so their `data_version` moves and their caches reload. The live file's own
  `_backup_*` tables are carried over first.

All of it is blocking: callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

OWN_PREFIX = "_backup_"  # the capability's tables: never archived, never overwritten


def _connect(path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    return conn


def _tables(conn: sqlite3.Connection, schema: str = "main") -> list[tuple[str, str]]:
    """(name, sql) of the plain tables (virtual tables and SQLite's own left out)."""
    rows = conn.execute(
        f"SELECT name, sql FROM \"{schema}\".sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [
        (str(n), str(sql or "")) for n, sql in rows if not str(sql).startswith("CREATE VIRTUAL")
    ]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        name: int(conn.execute(f"SELECT count(*) FROM {_q(name)}").fetchone()[0])
        for name, _ in _tables(conn)
    }


def snapshot(live: Path, dest: Path) -> dict[str, int]:
    """Copy `live` to `dest` (which must not exist); the row count of every table copied."""
    src = _connect(live)
    try:
        src.execute("VACUUM INTO ?", (str(dest),))
    finally:
        src.close()
    out = _connect(dest)
    try:
        for name, _ in _tables(out):
            if name.startswith(OWN_PREFIX):
                out.execute(f"DROP TABLE {_q(name)}")
        return counts(out)
    finally:
        out.close()


def check(path: Path) -> tuple[str, dict[str, int]]:
    """SQLite's verdict on the file ("ok" when sound) and its row counts."""
    conn = _connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        verdict = "; ".join(str(r[0]) for r in rows[:10])
        return verdict, counts(conn) if verdict == "ok" else {}
    except sqlite3.DatabaseError as exc:
        return f"not a usable SQLite file: {exc}", {}
    finally:
        conn.close()


def restore_into(checked: Path, live: Path) -> None:
    """Make `live` hold what `checked` holds, but keep `live`'s own `_backup_*` tables.
    `checked` is changed on the way (it is a scratch copy)."""
    scratch = _connect(checked)
    try:
        scratch.execute("ATTACH DATABASE ? AS live", (str(live),))
        for name, sql in _tables(scratch, "live"):
            if name.startswith(OWN_PREFIX) and sql:
                scratch.execute(f"DROP TABLE IF EXISTS main.{_q(name)}")
                scratch.execute(sql)
                scratch.execute(f"INSERT INTO main.{_q(name)} SELECT * FROM live.{_q(name)}")
        scratch.execute("DETACH DATABASE live")
        target = _connect(live)
        try:
            scratch.backup(target)
        finally:
            target.close()
    finally:
        with contextlib.suppress(sqlite3.Error):
            scratch.close()
