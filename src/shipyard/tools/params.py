"""`_params`: small named JSON documents in the application's database, shared by every
process and machine on it, with a version counter that moves on every write.

A process holding a copy tells whether it is current with one indexed read of the counter
(`version()`), so it can check before each use and still see a write acknowledged by
another process at once, with no notification channel to wait for. Writes are serialized:
`update()` takes the counter row first (PostgreSQL: its row lock; SQLite: the write lock
of `BEGIN IMMEDIATE`), so each write reads what the previous one committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from shipyard.tools.db import Database, Executor

log = logging.getLogger("shipyard.params")
TABLE = "_params"
VERSION_KEY = "_version"  # the counter's row; documents are the other rows
_PG_LOCK_ID = 7417  # advisory lock: one process creates the table at a time

Documents = dict[str, dict[str, Any]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ")


class ParamsStore:
    def __init__(self, db: Database, table: str = TABLE) -> None:
        self.db = db
        self.table = table

    async def ensure_schema(self) -> None:
        """Create the table and its counter if missing (safe from many processes at once)."""
        t = self.table
        async with self.db.transaction() as tx:
            if self.db.dialect == "postgres":
                await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            await tx.execute(
                f'CREATE TABLE IF NOT EXISTS "{t}" ("key" TEXT PRIMARY KEY NOT NULL, '
                '"value" TEXT NOT NULL, "updated" TEXT NOT NULL)'
            )
            await tx.execute(
                f'INSERT INTO "{t}" ("key", "value", "updated") VALUES (?, ?, ?) '
                'ON CONFLICT ("key") DO NOTHING',
                (VERSION_KEY, "0", _now()),
            )

    async def version(self) -> int:
        """The counter: one read of one row by its primary key."""
        row = await self.db.fetchone(
            f'SELECT "value" FROM "{self.table}" WHERE "key" = ?', (VERSION_KEY,)
        )
        return int(row[0]) if row else 0

    async def load(self) -> tuple[int, Documents]:
        """The counter and every document, from one statement (one snapshot)."""
        rows = await self.db.fetchall(f'SELECT "key", "value" FROM "{self.table}"')
        return _decode(rows)

    async def update(
        self, change: Callable[[Documents], Mapping[str, dict[str, Any] | None]]
    ) -> tuple[int, Documents]:
        """Run `change` on the documents as committed now, alone among writers: it returns
        the documents to write (None deletes one) or raises, which writes nothing. Returns
        the new counter and documents."""
        t = self.table
        async with self.db.transaction() as tx:
            await tx.execute(
                f'UPDATE "{t}" SET "value" = CAST(CAST("value" AS INTEGER) + 1 AS TEXT), '
                '"updated" = ? WHERE "key" = ?',
                (_now(), VERSION_KEY),
            )
            version, docs = _decode(await tx.fetchall(f'SELECT "key", "value" FROM "{t}"'))
            writes = change({k: dict(v) for k, v in docs.items()})
            for key, doc in writes.items():
                await _write(tx, t, key, doc)
                if doc is None:
                    docs.pop(key, None)
                else:
                    docs[key] = doc
        return version, docs


async def _write(tx: Executor, table: str, key: str, doc: dict[str, Any] | None) -> None:
    if key == VERSION_KEY:
        raise ValueError(f"{key!r} is the counter's row, not a document")
    if doc is None:
        await tx.execute(f'DELETE FROM "{table}" WHERE "key" = ?', (key,))
        return
    await tx.execute(
        f'INSERT INTO "{table}" ("key", "value", "updated") VALUES (?, ?, ?) '
        'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", '
        '"updated" = excluded."updated"',
        (key, orjson.dumps(doc).decode(), _now()),
    )


def _decode(rows: list[Any]) -> tuple[int, Documents]:
    version, docs = 0, {}
    for key, value in rows:
        if key == VERSION_KEY:
            version = int(value)
            continue
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            docs[str(key)] = doc
        else:  # written by hand, not by this module: its content stays out of the log
            log.warning("%s: the document %r is not a JSON object; ignored", TABLE, key)
    return version, docs
