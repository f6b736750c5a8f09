"""Silences: while one is active (`startsAt` ≤ now < `endsAt`), the alerts its matchers
all match are still evaluated and shown, but not notified. A matcher is Alertmanager's:
`{"name": label, "value": text, "isRegex": false, "isEqual": true}`; the labels are the
alert's (`alertname` is the rule's name, `severity`, `group`, and the rule's own labels).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shipyard.kernel.errors import ApiError, bad_request, not_found
from shipyard.tools.db import Database
from shipyard.tools.ids import random_string

MAX_MATCHERS = 20
MAX_SILENCE = 366 * 86400.0  # a year and a day
_COLS = '"id", "matchers", "starts", "ends", "comment", "created_by", "created", "updated"'
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.") + (
        f"{int(epoch * 1000) % 1000:03d}Z"
    )


def parse_time(path: str, raw: Any) -> float:
    """An ISO 8601 date (PocketBase's `2024-01-02 03:04:05.000Z` too) or epoch seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if 0 <= raw < 1e11:
            return float(raw)
    elif isinstance(raw, str) and len(raw) <= 40:
        try:
            d = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()
    raise _invalid(path, "Must be an ISO 8601 date or epoch seconds.")


@dataclass
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        hit = bool(re.fullmatch(self.value, got)) if self.is_regex else got == self.value
        return hit == self.is_equal

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }


@dataclass
class Silence:
    id: str
    matchers: list[Matcher]
    starts: float
    ends: float
    comment: str
    created_by: str
    created: str
    updated: str

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def silences(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and all(m.matches(labels) for m in self.matchers)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        state = "active" if self.active(now) else ("pending" if now < self.starts else "expired")
        return {
            "id": self.id,
            "matchers": [m.to_json() for m in self.matchers],
            "startsAt": iso(self.starts),
            "endsAt": iso(self.ends),
            "comment": self.comment,
            "createdBy": self.created_by,
            "state": state,
            "created": self.created,
            "updated": self.updated,
        }


def _invalid(path: str, message: str) -> ApiError:
    return bad_request(
        "Failed to save the silence.",
        {path: {"code": "validation_invalid_value", "message": message}},
    )


def _matchers(raw: Any) -> list[Matcher]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MATCHERS:
        raise _invalid("matchers", f"Must be a list of 1 to {MAX_MATCHERS} matchers.")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or set(m) - {"name", "value", "isRegex", "isEqual"}:
            raise _invalid(f"matchers.{i}", "Must be {name, value, isRegex?, isEqual?}.")
        name, value = m.get("name"), m.get("value")
        is_regex, is_equal = m.get("isRegex", False), m.get("isEqual", True)
        if not isinstance(name, str) or not _LABEL.match(name):
            raise _invalid(f"matchers.{i}.name", "Must be a label name (e.g. alertname).")
        if not isinstance(value, str) or len(value) > 500:
            raise _invalid(f"matchers.{i}.value", "Must be a string of at most 500 characters.")
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise _invalid(f"matchers.{i}", "isRegex and isEqual must be true or false.")
        if is_regex:
            try:
                re.compile(value)
            except re.error:
                raise _invalid(f"matchers.{i}.value", "Not a valid regular expression.") from None
        out.append(Matcher(name, value, is_regex, is_equal))
    return out


def _row(r: Any) -> Silence:
    matchers = [
        Matcher(m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True))
        for m in orjson.loads(r[1])
    ]
    return Silence(
        str(r[0]), matchers, float(r[2]), float(r[3]), str(r[4]), str(r[5]), str(r[6]), str(r[7])
    )


class Silences:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Silence]:
        rows = await self.db.fetchall(f'SELECT {_COLS} FROM "_alert_silences" ORDER BY "starts"')
        return [_row(r) for r in rows]

    async def active(self, now: float) -> list[Silence]:
        rows = await self.db.fetchall(
            f'SELECT {_COLS} FROM "_alert_silences" WHERE "starts" <= ? AND "ends" > ?',
            (now, now),
        )
        return [_row(r) for r in rows]

    async def get(self, sid: str) -> Silence:
        row = await self.db.fetchone(
            f'SELECT {_COLS} FROM "_alert_silences" WHERE "id" = ?', (sid,)
        )
        if row is None:
            raise not_found()
        return _row(row)

    def _validate(self, data: Any, old: Silence | None, now: float) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise bad_request("Invalid body: expected a JSON object.")
        known = {"matchers", "startsAt", "endsAt", "comment"}
        unknown = sorted(set(data) - known - {"id", "createdBy", "state", "created", "updated"})
        if unknown:
            raise _invalid(unknown[0], "Unknown field.")
        if old is None and "matchers" not in data:
            raise _invalid("matchers", "Cannot be blank.")
        if old is None and "endsAt" not in data:
            raise _invalid("endsAt", "Cannot be blank.")
        matchers = _matchers(data["matchers"]) if "matchers" in data else old.matchers  # type: ignore[union-attr]
        starts = parse_time("startsAt", data["startsAt"]) if "startsAt" in data else None
        if starts is None:
            starts = old.starts if old else now
        ends = parse_time("endsAt", data["endsAt"]) if "endsAt" in data else old.ends  # type: ignore[union-attr]
        if ends <= starts:
            raise _invalid("endsAt", "Must be after startsAt.")
        if ends - starts > MAX_SILENCE:
            raise _invalid("endsAt", "A silence lasts at most 366 days.")
        comment = data.get("comment", old.comment if old else "")
        if not isinstance(comment, str) or len(comment) > 1000:
            raise _invalid("comment", "Must be a string of at most 1000 characters.")
        return {"matchers": matchers, "starts": starts, "ends": ends, "comment": comment}

    async def create(self, data: Any, by: str) -> Silence:
        now = time.time()
        v = self._validate(data, None, now)
        stamp = iso(now)
        s = Silence(random_string(15), created_by=by, created=stamp, updated=stamp, **v)
        await self.db.execute(
            f'INSERT INTO "_alert_silences" ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (s.id, orjson.dumps([m.to_json() for m in s.matchers]).decode(), s.starts, s.ends,
             s.comment, s.created_by, s.created, s.updated),
        )  # fmt: skip
        return s

    async def update(self, sid: str, data: Any) -> Silence:
        old = await self.get(sid)
        v = self._validate(data, old, time.time())
        await self.db.execute(
            'UPDATE "_alert_silences" SET "matchers" = ?, "starts" = ?, "ends" = ?, '
            '"comment" = ?, "updated" = ? WHERE "id" = ?',
            (orjson.dumps([m.to_json() for m in v["matchers"]]).decode(), v["starts"],
             v["ends"], v["comment"], iso(time.time()), sid),
        )  # fmt: skip
        return await self.get(sid)

    async def delete(self, sid: str) -> None:
        await self.get(sid)
        await self.db.execute('DELETE FROM "_alert_silences" WHERE "id" = ?', (sid,))

    async def prune(self, now: float, keep: float) -> None:
        """Expired silences are kept a while (for the record), then dropped."""
        await self.db.execute('DELETE FROM "_alert_silences" WHERE "ends" < ?', (now - keep,))


__all__ = ["Matcher", "Silence", "Silences", "iso", "parse_time"]
