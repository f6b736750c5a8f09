"""Index names of collections, checked against the whole database.

An index name is one name in the database's catalog (SQLite: the file, where tables, indexes
and triggers share it; PostgreSQL: the schema, shared with tables and sequences), not one
per table. A collection index whose name is taken elsewhere must be refused with a field
error, never skipped or dropped by name: the catalog is asked who owns the name, and schema
writes hold a lock (SQLite's write lock, a PostgreSQL advisory lock) so the answer holds
until the index is created. Names compare without case, as SQLite's do.
"""

from __future__ import annotations

from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.records.collections import Collection, IndexDef, failure_message
from shipyard.tools.db import DatabaseError, Executor, IntegrityError

PG_NAME_LEN = 63  # PostgreSQL cuts longer identifiers: two long names can be one

_SQLITE_OWNER = 'SELECT "type", "tbl_name" FROM sqlite_master WHERE lower("name") = lower(?)'
_PG_OWNER = """SELECT CASE WHEN c.relkind IN ('i', 'I') THEN 'index' ELSE 'table' END,
           COALESCE(t.relname, c.relname)
      FROM pg_class c
      LEFT JOIN pg_index i ON i.indexrelid = c.oid
      LEFT JOIN pg_class t ON t.oid = i.indrelid
     WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
       AND lower(c.relname) = lower(left(?, 63))"""


def _taken(table: str) -> dict[str, Any]:
    """PocketBase's error for an index name used by another collection."""
    return {
        "code": "validation_existing_index_name",
        "message": f"The index name is already used in {table} collection.",
        "params": {"usedTableName": table},
    }


async def owners(tx: Executor, dialect: str, name: str) -> list[tuple[str, str]]:
    """(kind, table) of every catalog object called `name`: kind is `index` (table: the
    table it indexes) or anything else (a table, a trigger, a sequence…)."""
    sql = _PG_OWNER if dialect == "postgres" else _SQLITE_OWNER
    return [(str(kind), str(table)) for kind, table in await tx.fetchall(sql, (name,))]


async def check(tx: Executor, dialect: str, c: Collection, old: Collection | None) -> None:
    """Refuse (400, `indexes.<i>`) index names that something other than this collection's
    own indexes holds; `old` is the collection before an update (its indexes get rebuilt)."""
    own = {c.table.lower(), (old.table if old else c.table).lower()}
    errors: dict[str, Any] = {}
    for i, idef in enumerate(c.index_defs()):
        for kind, table in await owners(tx, dialect, idef.name):
            if kind != "index" or table.lower() not in own:
                errors[str(i)] = _taken(table)
                break
    if errors:
        raise bad_request(failure_message(old), {"indexes": errors})


async def drop_own(tx: Executor, dialect: str, table: str, defs: list[IndexDef]) -> None:
    """Drop the named indexes that index `table`; a name another table's index holds is
    left alone (an older database may list another collection's index under its name)."""
    for idef in defs:
        found = await owners(tx, dialect, idef.name)
        if any(kind == "index" and t.lower() == table.lower() for kind, t in found):
            await tx.execute(f'DROP INDEX IF EXISTS "{idef.name}"')


async def create(tx: Executor, dialect: str, c: Collection, table: str) -> None:
    """Create the collection's indexes; a failure is a field error of that index."""
    for i, idef in enumerate(c.index_defs()):
        try:
            await tx.execute(idef.sql(table, dialect))
        except DatabaseError as exc:
            text = str(exc).splitlines()[0][:200]
            # SQLite and PostgreSQL say a name is taken so; PostgreSQL's catalog's own unique
            # index rejects a name a concurrent transaction took
            if "already exists" in text or (
                isinstance(exc, IntegrityError) and exc.constraint == "pg_class_relname_nsp_index"
            ):
                error = _taken("another")
            else:
                error = {"code": "validation_invalid_index", "message": text}
            raise bad_request(
                f"Failed to create index {idef.name!r}: {text}", {"indexes": {str(i): error}}
            ) from exc
