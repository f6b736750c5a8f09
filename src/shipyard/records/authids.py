"""Auth record ids are unique across all auth collections, `_superusers` included.

Rules compare `@request.auth.id` with plain record ids, so an account of one auth
collection carrying the id of an account of another would pass the other's
`id = @request.auth.id` rules. Ids are unique per table only; a lookup in the other tables
before an insert cannot see a concurrent sign-up's uncommitted row. So a registry table
`_auth_ids` holds every auth record id as its primary key, and triggers on each auth
collection's table register ids on insert and release them on delete, in the same
transaction, whatever code path writes the row: of two concurrent sign-ups choosing one
id, the second insert fails on the key (PostgreSQL makes it wait for the first to commit or
roll back). Databases from before the registry are backfilled once at start-up.
"""

from __future__ import annotations

import logging

from shipyard.records.collections import Collection
from shipyard.tools.db import ConstraintKind, Executor, IntegrityError

log = logging.getLogger("shipyard.schema")

TABLE = "_auth_ids"
_MARKER = "auth_ids_registered"  # `_meta` key set once existing ids are registered
_PG_FUNCTION = f"""CREATE OR REPLACE FUNCTION "{TABLE}_sync"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO "{TABLE}" ("id", "collection") VALUES (NEW."id", TG_ARGV[0]);
    RETURN NEW;
  END IF;
  DELETE FROM "{TABLE}" WHERE "id" = OLD."id" AND "collection" = TG_ARGV[0];
  RETURN OLD;
END $$"""


def system_ddl(dialect: str) -> list[str]:
    stmts = [
        f'CREATE TABLE IF NOT EXISTS "{TABLE}" '
        '("id" TEXT PRIMARY KEY NOT NULL, "collection" TEXT NOT NULL)',
        f'CREATE INDEX IF NOT EXISTS "{TABLE}_collection" ON "{TABLE}" ("collection")',
    ]
    if dialect == "postgres":
        stmts.append(_PG_FUNCTION)
    return stmts


def trigger_ddl(c: Collection, dialect: str) -> list[str]:
    """The triggers of an auth collection's table (idempotent). They name the collection
    by id (ids are `[A-Za-z0-9_]`, safe as a literal), which survives renames; SQLite and
    PostgreSQL both keep a table's triggers through ALTER TABLE and drop them with it."""
    if c.type != "auth":
        return []
    t, cid = c.table, c.id
    if dialect == "postgres":
        return [
            f'CREATE OR REPLACE TRIGGER "{TABLE}" AFTER INSERT OR DELETE ON "{t}" '
            f"FOR EACH ROW EXECUTE FUNCTION \"{TABLE}_sync\"('{cid}')"
        ]
    return [
        f'CREATE TRIGGER IF NOT EXISTS "{TABLE}_ins_{cid}" AFTER INSERT ON "{t}" BEGIN '
        f'INSERT INTO "{TABLE}" ("id", "collection") VALUES (NEW."id", \'{cid}\'); END',
        f'CREATE TRIGGER IF NOT EXISTS "{TABLE}_del_{cid}" AFTER DELETE ON "{t}" BEGIN '
        f'DELETE FROM "{TABLE}" WHERE "id" = OLD."id" AND "collection" = \'{cid}\'; END',
    ]


def is_conflict(exc: IntegrityError) -> bool:
    """Whether an integrity error is the registry's key: the id is another account's."""
    return exc.kind is ConstraintKind.UNIQUE and exc.table == TABLE


async def forget(tx: Executor, c: Collection) -> None:
    """Release the ids of a dropped auth collection (DROP TABLE fires no delete trigger)."""
    if c.type == "auth":
        await tx.execute(f'DELETE FROM "{TABLE}" WHERE "collection" = ?', (c.id,))


async def backfill(tx: Executor, dialect: str, collections: list[Collection]) -> None:
    """Once per database: triggers on every auth table and their existing ids registered.
    `collections` come system first, so `_superusers` keeps an id that an older version
    let another collection share; such twins are logged for the operator to resolve."""
    if await tx.fetchone('SELECT 1 FROM "_meta" WHERE "key" = ?', (_MARKER,)):
        return
    for c in collections:
        if c.type != "auth":
            continue
        for stmt in trigger_ddl(c, dialect):
            await tx.execute(stmt)
        await tx.execute(
            f'INSERT INTO "{TABLE}" ("id", "collection") '
            f'SELECT "id", ? FROM "{c.table}" WHERE true ON CONFLICT ("id") DO NOTHING',
            (c.id,),
        )
        row = await tx.fetchone(
            f'SELECT COUNT(*) FROM "{c.table}" AS "r" WHERE NOT EXISTS (SELECT 1 FROM '
            f'"{TABLE}" AS "a" WHERE "a"."id" = "r"."id" AND "a"."collection" = ?)',
            (c.id,),
        )
        if row and int(row[0]):
            log.warning(
                "%d record(s) of auth collection %s share their id with an account of "
                "another auth collection: rules that compare ids cannot tell them apart; "
                "delete or re-create them",
                int(row[0]),
                c.name,
            )
    await tx.execute('INSERT INTO "_meta" ("key", "value") VALUES (?, ?)', (_MARKER, "1"))
