"""The error tracker's tables, created idempotently by every process at start-up.

- `_errors_projects`: numeric id (Sentry SDKs need one), unique name and public key;
- `_errors_issues`: one row per (project, fingerprint), a unique index the ingestion
  upserts on, so concurrent events from any number of processes make one issue and lose
  no count;
- `_errors_events`: the stored (scrubbed) events, unique per (project, event id): a
  retried envelope is stored and counted once;
- `_errors_issue_users`: who each issue affected (hashed), for the distinct-user count;
- `_errors_quota`: events per project and minute, counted with one upsert.
"""

from __future__ import annotations

from shipyard.tools.db import Database

_PG_LOCK_ID = 7421  # advisory lock: one process creates the tables at a time


async def ensure_schema(db: Database) -> None:
    pg = db.dialect == "postgres"
    ident = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "DOUBLE PRECISION" if pg else "REAL"
    statements = [
        'CREATE TABLE IF NOT EXISTS "_errors_projects" ('
        f'"id" {ident}, "name" TEXT UNIQUE NOT NULL, "public_key" TEXT UNIQUE NOT NULL, '
        f'"rate_limit" INTEGER NOT NULL, "created" {real} NOT NULL, "updated" {real} NOT NULL)',
        'CREATE TABLE IF NOT EXISTS "_errors_issues" ('
        '"id" TEXT PRIMARY KEY NOT NULL, "project" BIGINT NOT NULL, '
        '"fingerprint" TEXT NOT NULL, "title" TEXT NOT NULL, "culprit" TEXT NOT NULL, '
        '"type" TEXT NOT NULL, "level" TEXT NOT NULL, "status" TEXT NOT NULL, '
        '"count" BIGINT NOT NULL, "users" BIGINT NOT NULL, '
        f'"first_seen" {real} NOT NULL, "last_seen" {real} NOT NULL, '
        f'"last_event" TEXT NOT NULL, "regressed_at" {real}, "resolved_at" {real})',
        'CREATE UNIQUE INDEX IF NOT EXISTS "_errors_issues_fingerprint" '
        'ON "_errors_issues" ("project", "fingerprint")',
        'CREATE INDEX IF NOT EXISTS "_errors_issues_last_seen" ON "_errors_issues" ("last_seen")',
        'CREATE INDEX IF NOT EXISTS "_errors_issues_first_seen" ON "_errors_issues" ("first_seen")',
        'CREATE INDEX IF NOT EXISTS "_errors_issues_regressed" ON "_errors_issues" ("regressed_at")',
        'CREATE TABLE IF NOT EXISTS "_errors_events" ('
        f'"id" {ident}, "project" BIGINT NOT NULL, "event_id" TEXT NOT NULL, '
        f'"issue" TEXT NOT NULL, "received" {real} NOT NULL, "level" TEXT NOT NULL, '
        '"title" TEXT NOT NULL, "user_key" TEXT NOT NULL, "data" TEXT NOT NULL)',
        'CREATE UNIQUE INDEX IF NOT EXISTS "_errors_events_event" '
        'ON "_errors_events" ("project", "event_id")',
        'CREATE INDEX IF NOT EXISTS "_errors_events_issue" ON "_errors_events" ("issue", "id")',
        'CREATE INDEX IF NOT EXISTS "_errors_events_received" ON "_errors_events" ("received")',
        'CREATE TABLE IF NOT EXISTS "_errors_issue_users" ('
        '"issue" TEXT NOT NULL, "user_hash" TEXT NOT NULL, PRIMARY KEY ("issue", "user_hash"))',
        'CREATE TABLE IF NOT EXISTS "_errors_quota" ('
        '"project" BIGINT NOT NULL, "minute" BIGINT NOT NULL, "count" BIGINT NOT NULL, '
        'PRIMARY KEY ("project", "minute"))',
    ]
    async with db.transaction() as tx:
        if pg:
            await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
        for sql in statements:
            await tx.execute(sql)
