"""The error tracker: stores events (scrubbed, grouped into issues, counted), enforces the
per-project quota, serves issues and events, tells alerts what happened, and forgets what
is older than the retention.

Every count is one statement or one transaction in the shared database, so any number of
processes ingesting at once lose nothing: an event is inserted once per (project, event
id); its issue is one upsert on the unique (project, fingerprint) index that adds one to
the count, moves last-seen, and reopens a resolved issue (a regression) in the same
statement; a user is counted when their row in `_errors_issue_users` is new.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shipyard.errors.activity import ErrorActivity, IssueSummary
from shipyard.errors.envelope import event_id
from shipyard.errors.grouping import LEVELS, group, user_key
from shipyard.errors.projects import Project, Projects, iso
from shipyard.errors.scrub import scrub_event
from shipyard.kernel.errors import bad_request, not_found
from shipyard.tools.db import Database, Row

STATUSES = ("unresolved", "resolved", "ignored")
_ISSUE_COLS = (
    '"i"."id", "i"."project", "p"."name", "i"."fingerprint", "i"."title", "i"."culprit", '
    '"i"."type", "i"."level", "i"."status", "i"."count", "i"."users", "i"."first_seen", '
    '"i"."last_seen", "i"."last_event", "i"."regressed_at", "i"."resolved_at"'
)
_ISSUE_FROM = '"_errors_issues" "i" JOIN "_errors_projects" "p" ON "p"."id" = "i"."project"'
_SORTS = {
    "lastSeen": '"i"."last_seen"',
    "firstSeen": '"i"."first_seen"',
    "count": '"i"."count"',
    "users": '"i"."users"',
    "title": '"i"."title"',
    "level": '"i"."level"',
}
_UPSERT_ISSUE = (
    'INSERT INTO "_errors_issues" ("id", "project", "fingerprint", "title", "culprit", "type", '
    '"level", "status", "count", "users", "first_seen", "last_seen", "last_event") '
    "VALUES (?, ?, ?, ?, ?, ?, ?, 'unresolved', 1, 0, ?, ?, ?) "
    'ON CONFLICT ("project", "fingerprint") DO UPDATE SET '
    '"count" = "_errors_issues"."count" + 1, '
    '"last_seen" = CASE WHEN excluded."last_seen" > "_errors_issues"."last_seen" '
    'THEN excluded."last_seen" ELSE "_errors_issues"."last_seen" END, '
    '"last_event" = excluded."last_event", "title" = excluded."title", '
    '"culprit" = excluded."culprit", "level" = excluded."level", '
    '"regressed_at" = CASE WHEN "_errors_issues"."status" = \'resolved\' '
    'THEN excluded."last_seen" ELSE "_errors_issues"."regressed_at" END, '
    '"status" = CASE WHEN "_errors_issues"."status" = \'resolved\' '
    'THEN \'unresolved\' ELSE "_errors_issues"."status" END '
    'RETURNING "id"'
)
_COUNT_QUOTA = (
    'INSERT INTO "_errors_quota" ("project", "minute", "count") VALUES (?, ?, ?) '
    'ON CONFLICT ("project", "minute") DO UPDATE SET '
    '"count" = "_errors_quota"."count" + excluded."count" RETURNING "count"'
)


def _clean(text: str) -> str:
    return text.replace("\x00", "")


def issue_json(row: Row) -> dict[str, Any]:
    return {
        "id": row[0],
        "project": int(row[1]),
        "projectName": row[2],
        "fingerprint": row[3],
        "title": row[4],
        "culprit": row[5],
        "type": row[6],
        "level": row[7],
        "status": row[8],
        "count": int(row[9]),
        "users": int(row[10]),
        "firstSeen": iso(float(row[11])),
        "lastSeen": iso(float(row[12])),
        "lastEvent": row[13],
        "regressedAt": iso(None if row[14] is None else float(row[14])),
        "resolvedAt": iso(None if row[15] is None else float(row[15])),
    }


def _summary(row: Row) -> IssueSummary:
    return IssueSummary(
        str(row[0]),
        str(row[2]),
        str(row[4]),
        str(row[7]),
        int(row[9]),
        float(row[11]),
        float(row[12]),
    )


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: str
    issue: str  # "" when the event was a duplicate (already stored)


class ErrorTracker:
    def __init__(
        self,
        db: Database,
        default_rate_limit: int,
        retention_days: int,
        on_stored: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.projects = Projects(db)
        self.default_rate_limit = default_rate_limit
        self.retention_days = retention_days
        self._on_stored = on_stored

    # ------------------------------------------------------------------ ingestion

    async def take_quota(self, project: Project, events: int, now: float | None = None) -> float:
        """Count `events` against the project's minute; 0 when they fit, else the seconds
        until the next minute (Retry-After). One upsert: atomic across processes."""
        limit = project.rate_limit or self.default_rate_limit
        if limit <= 0 or events <= 0:
            return 0.0
        now = time.time() if now is None else now
        minute = int(now // 60)
        row = await self.db.fetchone(_COUNT_QUOTA, (project.id, minute, events))
        if row is not None and int(row[0]) > limit:
            return max(1.0, math.ceil((minute + 1) * 60 - now))
        return 0.0

    async def store(self, project: Project, event: dict[str, Any], client_ip: str = "") -> Stored:
        """Scrub, group and store one event; its id."""
        eid = event_id(event.get("event_id")) or uuid.uuid4().hex
        event = scrub_event(event)
        event["event_id"] = eid
        g = group(event)
        who = user_key(event, client_ip)
        now = time.time()
        data = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS).decode()
        title, culprit = _clean(g.title), _clean(g.culprit)
        async with self.db.transaction() as tx:
            inserted = await tx.execute(
                'INSERT INTO "_errors_events" ("project", "event_id", "issue", "received", '
                '"level", "title", "user_key", "data") VALUES (?, ?, \'\', ?, ?, ?, ?, ?) '
                'ON CONFLICT ("project", "event_id") DO NOTHING',
                (project.id, eid, now, g.level, title, _clean(who), data),
            )
            if not inserted:
                return Stored(eid, "")
            row = await tx.fetchone(
                _UPSERT_ISSUE,
                (uuid.uuid4().hex[:15], project.id, g.fingerprint, title, culprit,
                 _clean(g.type), g.level, now, now, eid),
            )  # fmt: skip
            assert row is not None  # noqa: S101  (an upsert with RETURNING returns the row)
            issue = str(row[0])
            await tx.execute(
                'UPDATE "_errors_events" SET "issue" = ? WHERE "project" = ? AND "event_id" = ?',
                (issue, project.id, eid),
            )
            if who:
                digest = hashlib.sha256(who.encode()).hexdigest()
                new_user = await tx.execute(
                    'INSERT INTO "_errors_issue_users" ("issue", "user_hash") VALUES (?, ?) '
                    'ON CONFLICT ("issue", "user_hash") DO NOTHING',
                    (issue, digest),
                )
                if new_user:
                    await tx.execute(
                        'UPDATE "_errors_issues" SET "users" = "users" + 1 WHERE "id" = ?',
                        (issue,),
                    )
        if self._on_stored is not None:
            self._on_stored(project.name)
        return Stored(eid, issue)

    # ------------------------------------------------------------------ issues

    async def issues(
        self,
        *,
        page: int = 1,
        per_page: int = 30,
        sort: str = "-lastSeen",
        status: str = "",
        project: int | None = None,
        level: str = "",
        query: str = "",
    ) -> dict[str, Any]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            wanted = [s.strip() for s in status.split(",") if s.strip()]
            if not wanted or any(s not in STATUSES for s in wanted):
                raise bad_request(f"Invalid status: expected any of {', '.join(STATUSES)}.")
            where.append(f'"i"."status" IN ({", ".join("?" * len(wanted))})')
            params += wanted
        if project is not None:
            where.append('"i"."project" = ?')
            params.append(project)
        if level:
            if level not in LEVELS:
                raise bad_request(f"Invalid level: expected one of {', '.join(LEVELS)}.")
            where.append('"i"."level" = ?')
            params.append(level)
        if query:
            escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(
                '(LOWER("i"."title") LIKE ? ESCAPE \'\\\' OR LOWER("i"."culprit") LIKE ? ESCAPE \'\\\')'
            )
            params += [f"%{_clean(escaped)}%"] * 2
        order = sort.lstrip("-+")
        if order not in _SORTS:
            raise bad_request(
                f"Invalid sort: expected one of {', '.join(_SORTS)} (prefix - for descending)."
            )
        direction = "DESC" if sort.startswith("-") else "ASC"
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        total_row = await self.db.fetchone(f"SELECT COUNT(*) FROM {_ISSUE_FROM}{cond}", params)
        total = int(total_row[0]) if total_row else 0
        rows = await self.db.fetchall(
            f"SELECT {_ISSUE_COLS} FROM {_ISSUE_FROM}{cond} "
            f'ORDER BY {_SORTS[order]} {direction}, "i"."id" LIMIT ? OFFSET ?',
            [*params, per_page, (page - 1) * per_page],
        )
        return {
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": (total + per_page - 1) // per_page,
            "items": [issue_json(r) for r in rows],
        }

    async def issue(self, issue_id: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            f'SELECT {_ISSUE_COLS} FROM {_ISSUE_FROM} WHERE "i"."id" = ?', (_clean(issue_id),)
        )
        if row is None:
            raise not_found("The issue wasn't found.")
        return issue_json(row)

    async def set_status(self, issue_id: str, status: Any) -> dict[str, Any]:
        if status not in STATUSES:
            raise bad_request(
                "Invalid status.",
                {"status": {"code": "validation_invalid_value",
                            "message": f"Must be one of {', '.join(STATUSES)}."}},
            )  # fmt: skip
        resolved = time.time() if status == "resolved" else None
        n = await self.db.execute(
            'UPDATE "_errors_issues" SET "status" = ?, "resolved_at" = ? WHERE "id" = ?',
            (status, resolved, _clean(issue_id)),
        )
        if not n:
            raise not_found("The issue wasn't found.")
        return await self.issue(issue_id)

    # ------------------------------------------------------------------ events

    async def events(self, issue_id: str, *, page: int = 1, per_page: int = 30) -> dict[str, Any]:
        await self.issue(issue_id)
        issue_id = _clean(issue_id)
        total_row = await self.db.fetchone(
            'SELECT COUNT(*) FROM "_errors_events" WHERE "issue" = ?', (issue_id,)
        )
        total = int(total_row[0]) if total_row else 0
        rows = await self.db.fetchall(
            'SELECT "event_id", "issue", "project", "received", "level", "title", "data" '
            'FROM "_errors_events" WHERE "issue" = ? ORDER BY "id" DESC LIMIT ? OFFSET ?',
            (issue_id, per_page, (page - 1) * per_page),
        )
        return {
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": (total + per_page - 1) // per_page,
            "items": [_event_json(r) for r in rows],
        }

    async def event(self, issue_id: str, eid: str) -> dict[str, Any]:
        row = await self.db.fetchone(
            'SELECT "event_id", "issue", "project", "received", "level", "title", "data" '
            'FROM "_errors_events" WHERE "issue" = ? AND "event_id" = ?',
            (_clean(issue_id), _clean(eid).replace("-", "").lower()),
        )
        if row is None:
            raise not_found("The event wasn't found.")
        return _event_json(row)

    # ------------------------------------------------------------------ alerts, retention

    async def activity(self, since: float) -> ErrorActivity:
        """Issues first seen and issues regressed since `since` (epoch seconds), and the
        events stored since then, across all projects."""
        new = await self.db.fetchall(
            f'SELECT {_ISSUE_COLS} FROM {_ISSUE_FROM} WHERE "i"."first_seen" >= ? '
            'ORDER BY "i"."first_seen" LIMIT 1000',
            (since,),
        )
        back = await self.db.fetchall(
            f'SELECT {_ISSUE_COLS} FROM {_ISSUE_FROM} WHERE "i"."regressed_at" >= ? '
            'ORDER BY "i"."regressed_at" LIMIT 1000',
            (since,),
        )
        n = await self.db.fetchone(
            'SELECT COUNT(*) FROM "_errors_events" WHERE "received" >= ?', (since,)
        )
        return ErrorActivity(
            new_issues=[_summary(r) for r in new],
            regressions=[_summary(r) for r in back],
            events=int(n[0]) if n else 0,
        )

    async def cleanup(self, now: float | None = None) -> int:
        """Delete events and issues last seen before the retention, and past quota
        windows; idempotent (every process may run it). The number of events deleted."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_days * 86400.0
        deleted = await self.db.execute(
            'DELETE FROM "_errors_events" WHERE "received" < ?', (cutoff,)
        )
        async with self.db.transaction() as tx:
            await tx.execute(
                'DELETE FROM "_errors_issue_users" WHERE "issue" IN '
                '(SELECT "id" FROM "_errors_issues" WHERE "last_seen" < ?)',
                (cutoff,),
            )
            await tx.execute('DELETE FROM "_errors_issues" WHERE "last_seen" < ?', (cutoff,))
        await self.db.execute(
            'DELETE FROM "_errors_quota" WHERE "minute" < ?', (int(now // 60) - 1,)
        )
        return deleted


def _event_json(row: Row) -> dict[str, Any]:
    try:
        data = orjson.loads(row[6])
    except orjson.JSONDecodeError:
        data = {}
    return {
        "id": row[0],
        "issue": row[1],
        "project": int(row[2]),
        "received": iso(float(row[3])),
        "level": row[4],
        "title": row[5],
        "data": data,
    }


__all__ = ["STATUSES", "ErrorTracker", "Stored", "issue_json"]
