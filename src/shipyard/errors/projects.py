"""Error-tracking projects and their DSN keys (superusers manage them; SDKs authenticate
with the public key). A DSN is `{scheme}://{publicKey}@{host}/{projectId}`."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shipyard.kernel.errors import ApiError, bad_request, not_found
from shipyard.tools.db import Database, IntegrityError, Row

BUILTIN = "shipyard"  # the project Shipyard's own unhandled exceptions go to
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_COLS = '"id", "name", "public_key", "rate_limit", "created", "updated"'


def iso(ts: float | None) -> str | None:
    """Epoch seconds as PocketBase writes dates (`2024-01-02 03:04:05.678Z`)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def dsn_for(base_url: str, key: str, project_id: int) -> str:
    parts = urlsplit(base_url)
    scheme = parts.scheme or "http"
    netloc = parts.netloc or parts.path
    path = parts.path.rstrip("/") if parts.netloc else ""
    return f"{scheme}://{key}@{netloc}{path}/{project_id}"


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public_key: str
    rate_limit: int  # events per minute; 0: the setting's default
    created: float
    updated: float

    @classmethod
    def from_row(cls, row: Row) -> Project:
        return cls(int(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]), float(row[5]))

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "publicKey": self.public_key,
            "dsn": dsn_for(base_url, self.public_key, self.id),
            "rateLimit": self.rate_limit,
            "builtin": self.name == BUILTIN,
            "created": iso(self.created),
            "updated": iso(self.updated),
        }


def _new_key() -> str:
    return secrets.token_hex(16)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise bad_request(
            "Invalid project name.",
            {"name": {"code": "validation_invalid_name",
                      "message": "1-100 letters, digits, '_', '.' or '-', starting with a letter or digit."}},
        )  # fmt: skip
    return value


def _rate(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000_000:
        raise bad_request(
            "Invalid rate limit.",
            {"rateLimit": {"code": "validation_invalid_number",
                           "message": "Events per minute from 0 (the default) to 10000000."}},
        )  # fmt: skip
    return value


class Projects:
    def __init__(self, db: Database) -> None:
        self.db = db
        # key → project, refreshed on a miss: keys change only by rotation, which a miss
        # in another process notices (a rotated-out key is refused after one lookup)
        self._by_key: dict[str, tuple[Project, float]] = {}

    async def all(self) -> list[Project]:
        rows = await self.db.fetchall(f'SELECT {_COLS} FROM "_errors_projects" ORDER BY "id"')
        return [Project.from_row(r) for r in rows]

    async def get(self, project_id: int) -> Project:
        row = await self.db.fetchone(
            f'SELECT {_COLS} FROM "_errors_projects" WHERE "id" = ?', (project_id,)
        )
        if row is None:
            raise not_found("The project wasn't found.")
        return Project.from_row(row)

    async def by_name(self, name: str) -> Project | None:
        row = await self.db.fetchone(
            f'SELECT {_COLS} FROM "_errors_projects" WHERE "name" = ?', (name,)
        )
        return Project.from_row(row) if row else None

    async def by_key(self, key: str, max_age: float = 5.0) -> Project | None:
        """The project of a public key (cached a few seconds: ingestion asks every event)."""
        now = time.monotonic()
        hit = self._by_key.get(key)
        if hit is not None and now - hit[1] < max_age:
            return hit[0]
        row = await self.db.fetchone(
            f'SELECT {_COLS} FROM "_errors_projects" WHERE "public_key" = ?', (key,)
        )
        if row is None:
            self._by_key.pop(key, None)
            return None
        if len(self._by_key) > 10_000:
            self._by_key.clear()
        project = Project.from_row(row)
        self._by_key[key] = (project, now)
        return project

    async def create(self, body: dict[str, Any]) -> Project:
        name = _name(body.get("name"))
        rate = _rate(body.get("rateLimit", 0))
        now = time.time()
        try:
            row = await self.db.fetchone(
                'INSERT INTO "_errors_projects" ("name", "public_key", "rate_limit", "created", '
                f'"updated") VALUES (?, ?, ?, ?, ?) RETURNING {_COLS}',
                (name, _new_key(), rate, now, now),
            )
        except IntegrityError:
            raise bad_request(
                "A project with this name exists.",
                {"name": {"code": "validation_not_unique", "message": "Value must be unique."}},
            ) from None
        assert row is not None  # noqa: S101  (INSERT … RETURNING returns the row)
        return Project.from_row(row)

    async def ensure(self, name: str) -> Project:
        """The project named `name`, created if missing (safe from many processes)."""
        found = await self.by_name(name)
        if found is not None:  # asked first: a conflicting insert would use up an id
            return found
        now = time.time()
        await self.db.execute(
            'INSERT INTO "_errors_projects" ("name", "public_key", "rate_limit", "created", '
            '"updated") VALUES (?, ?, 0, ?, ?) ON CONFLICT ("name") DO NOTHING',
            (name, _new_key(), now, now),
        )
        project = await self.by_name(name)
        assert project is not None  # noqa: S101  (just inserted, or there before)
        return project

    async def update(self, project_id: int, body: dict[str, Any]) -> Project:
        current = await self.get(project_id)
        name = current.name
        if "name" in body:
            name = _name(body["name"])
            if current.name == BUILTIN and name != BUILTIN:
                raise bad_request("The built-in project cannot be renamed.")
        rate = _rate(body["rateLimit"]) if "rateLimit" in body else current.rate_limit
        try:
            await self.db.execute(
                'UPDATE "_errors_projects" SET "name" = ?, "rate_limit" = ?, "updated" = ? '
                'WHERE "id" = ?',
                (name, rate, time.time(), project_id),
            )
        except IntegrityError:
            raise bad_request(
                "A project with this name exists.",
                {"name": {"code": "validation_not_unique", "message": "Value must be unique."}},
            ) from None
        self._by_key.clear()
        return await self.get(project_id)

    async def rotate_key(self, project_id: int) -> Project:
        await self.get(project_id)
        await self.db.execute(
            'UPDATE "_errors_projects" SET "public_key" = ?, "updated" = ? WHERE "id" = ?',
            (_new_key(), time.time(), project_id),
        )
        self._by_key.clear()
        return await self.get(project_id)

    async def delete(self, project_id: int) -> None:
        """The project with its issues, events and counters."""
        project = await self.get(project_id)
        if project.name == BUILTIN:
            raise ApiError(400, "The built-in project cannot be deleted.")
        async with self.db.transaction() as tx:
            await tx.execute(
                'DELETE FROM "_errors_issue_users" WHERE "issue" IN '
                '(SELECT "id" FROM "_errors_issues" WHERE "project" = ?)',
                (project_id,),
            )
            for table in ("_errors_events", "_errors_issues", "_errors_quota"):
                await tx.execute(f'DELETE FROM "{table}" WHERE "project" = ?', (project_id,))
            await tx.execute('DELETE FROM "_errors_projects" WHERE "id" = ?', (project_id,))
        self._by_key.clear()


__all__ = ["BUILTIN", "Project", "Projects", "dsn_for", "iso"]
