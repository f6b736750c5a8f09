"""Reading `_logs` as PocketBase's `/api/logs` does: a filter and a sort over the fixed
schema `id, created, level, message, data, data.<path>`, pages, and hourly stats.

The filter text is parsed by tools/filterexpr.py (PocketBase's grammar, bounded) and
compiled here to SQL with every value a parameter. `data.a.b` reads the JSON object per
engine (SQLite's json_extract, PostgreSQL's `#>`); a JSON value compared with a literal is
taken in the literal's kind (the number 200 is not the text "200", as on SQLite), and the
date macros (`@now`, `@todayStart`, …) are PocketBase's, in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.records.query.dialect import Dialect
from shipyard.records.query.values import like_pattern
from shipyard.tools import filterexpr as fx
from shipyard.tools.db import Executor

from .store import TABLE, pb_time, row_to_json

COLUMNS = {"id": "text", "created": "text", "level": "number", "message": "text", "data": "text"}
_DATA_PATH = re.compile(r"^data\.[\w.:]*\w$")
_KEY = re.compile(r"^[\w:]+$")
_SELECT = f'SELECT "id", "created", "level", "message", "data" FROM "{TABLE}"'


def _day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


_END = timedelta(hours=23, minutes=59, seconds=59, microseconds=999000)
MACROS: dict[str, Callable[[datetime], datetime]] = {
    "@now": lambda now: now,
    "@yesterday": lambda now: now - timedelta(days=1),
    "@tomorrow": lambda now: now + timedelta(days=1),
    "@todayStart": _day,
    "@todayEnd": lambda now: _day(now) + _END,
    "@monthStart": lambda now: _day(now).replace(day=1),
    "@yearStart": lambda now: _day(now).replace(month=1, day=1),
    "@yearEnd": lambda now: _day(now).replace(month=12, day=31) + _END,
}


@dataclass
class Term:
    sql: str
    params: list[Any]
    kind: str  # text | number | bool | null | json
    column: bool = False
    raw: Any = None  # a literal's value


class Compiler:
    """Filter and sort of `_logs` for one engine."""

    def __init__(self, dialect: str) -> None:
        self.d = Dialect(dialect == "postgres")
        self.pg = self.d.pg

    # ------------------------------------------------------------------ operands

    def _json(self, path: tuple[str, ...]) -> str:
        if self.pg:
            return f"(\"data\" #> '{{{','.join(path)}}}')"
        return 'json_extract("data", \'$' + "".join(f'."{k}"' for k in path) + "')"

    def _data_text(self) -> str:
        return 'CAST("data" AS TEXT)' if self.pg else '"data"'

    def operand(self, op: fx.Operand) -> Term:
        if isinstance(op, fx.Identifier):
            name = op.name
            if name in MACROS:
                value = pb_time(MACROS[name](datetime.now(UTC)).timestamp())
                return Term(self.d.ph("text"), [value], "text", raw=value)
            if name == "data":
                return Term(self._data_text(), [], "text", column=True)
            if name in COLUMNS:
                return Term(f'"{name}"', [], COLUMNS[name], column=True)
            if _DATA_PATH.match(name):
                path = tuple(name.split(".")[1:])
                if all(_KEY.match(k) for k in path):
                    return Term(self._json(path), [], "json")
            raise bad_request(
                f"Invalid filter: unknown field {name!r} (logs have id, created, level, "
                "message and data.*)."
            )
        if isinstance(op, fx.Text):
            return Term(self.d.ph("text"), [op.value], "text", raw=op.value)
        if isinstance(op, fx.Number):
            return Term(self.d.ph("number"), [op.value], "number", raw=op.value)
        if isinstance(op, fx.Bool):
            return Term(self.d.ph("bool"), [op.value], "bool", raw=op.value)
        if isinstance(op, fx.Null):
            return Term("NULL", [], "null")
        raise bad_request("Invalid filter: functions are not supported in logs filters.")

    def _as(self, t: Term, kind: str, loose: bool = False) -> Term | None:
        """`t` in `kind`; None when a literal cannot be (the text 'abc' as a number)."""
        if t.kind == kind and not (loose and t.kind == "json"):
            return t
        if t.kind == "json":
            return Term(self.d.convert(t.sql, "json", kind, loose), t.params, kind)
        if t.column:
            return Term(self.d.convert(t.sql, t.kind, kind), t.params, kind, column=True)
        if kind == "text":
            raw = t.raw
            text = ("true" if raw else "false") if t.kind == "bool" else _num_text(raw)
            return Term(self.d.ph("text"), [text], "text", raw=text)
        if kind == "number" and t.kind == "text":
            try:
                value = float(str(t.raw).strip())
            except ValueError:
                return None
            return Term(self.d.ph("number"), [value], "number", raw=value)
        if kind == "number" and t.kind == "bool":
            return Term(self.d.ph("number"), [1.0 if t.raw else 0.0], "number", raw=t.raw)
        return None

    # ------------------------------------------------------------------ expressions

    def comparison(self, c: fx.Comparison) -> tuple[str, list[Any]]:
        op = c.op[1:] if c.op.startswith("?") else c.op  # one value each: "any" is plain
        left, right = self.operand(c.left), self.operand(c.right)
        if "null" in (left.kind, right.kind):
            other = right if left.kind == "null" else left
            if other.kind == "json" and self.pg:
                other = Term(f"({other.sql} #>> '{{}}')", other.params, "text")
            if op == "=":
                return f"({other.sql} IS NULL)", other.params
            if op == "!=":
                return f"({other.sql} IS NOT NULL)", other.params
            return "(1=0)", []
        if op in ("~", "!~"):
            a, b = self._as(left, "text", True), self._as(right, "text", True)
            if a is None or b is None:  # (text always converts)
                return "(1=0)", []
            if b.raw is not None:  # a constant is a pattern, PocketBase's way
                b = Term(self.d.ph("text"), [like_pattern(str(b.raw))], "text")
            else:  # a field: "contains"
                p = self.d.ph("text")
                b = Term(f"({p} || {b.sql} || {p})", ["%", *b.params, "%"], "text")
            like = "ILIKE" if self.pg else "LIKE"
            esc = self.d.ph("text")
            if op == "!~":
                sql = f"(COALESCE({a.sql}, '') NOT {like} {b.sql} ESCAPE {esc})"
            else:
                sql = f"({a.sql} {like} {b.sql} ESCAPE {esc})"
            return sql, [*a.params, *b.params, "\\"]
        kind = _target(left, right)
        loose = left.kind == right.kind == "json"  # two JSON values: compared as text
        a, b = self._as(left, kind, loose), self._as(right, kind, loose)
        if a is None or b is None:  # e.g. level = 'abc': never equal
            return ("(1=1)" if op == "!=" else "(1=0)"), []
        sign = {"=": self.d.is_, "!=": self.d.is_not}.get(op, op)
        return f"({a.sql} {sign} {b.sql})", [*a.params, *b.params]

    def node(self, n: fx.Node) -> tuple[str, list[Any]]:
        if isinstance(n, fx.Comparison):
            return self.comparison(n)
        parts = [self.node(item) for item in n.items]
        joiner = " AND " if n.op == "&&" else " OR "
        return "(" + joiner.join(p[0] for p in parts) + ")", [v for p in parts for v in p[1]]

    def where(self, text: str, max_length: int, max_expressions: int) -> tuple[str, list[Any]]:
        if not text.strip():
            return "", []
        try:
            tree = fx.parse(text, max_length, max_expressions)
        except fx.FilterSyntaxError as exc:
            raise bad_request(f"Invalid filter: {exc.message}.") from None
        sql, params = self.node(tree)
        return f" WHERE {sql}", params

    def order(self, text: str, max_fields: int) -> str:
        try:
            keys = fx.parse_sort(text, max_fields)
        except fx.FilterSyntaxError as exc:
            raise bad_request(f"Invalid sort: {exc.message}.") from None
        out = []
        for name, desc in keys:
            way = " DESC" if desc else " ASC"
            if name == "@random":
                out.append("RANDOM()")
            elif name == "@rowid":
                out.extend([f'"created"{way}', f'"id"{way}'])
            elif name == "data":
                out.append(self._data_text() + way)
            elif name in COLUMNS:
                out.append(f'"{name}"{way}')
            elif _DATA_PATH.match(name) and all(_KEY.match(k) for k in name.split(".")[1:]):
                out.append(self._json(tuple(name.split(".")[1:])) + way)
            else:
                raise bad_request(f"Invalid sort: unknown field {name!r}.")
        return " ORDER BY " + ", ".join(out) if out else ""


def _num_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _target(left: Term, right: Term) -> str:
    """The kind both sides are compared in: a column's, else a literal's, else text."""
    for t in (left, right):
        if t.column:
            other = right if t is left else left
            return t.kind if not other.column or other.kind == t.kind else "text"
    literal = [t.kind for t in (left, right) if t.kind != "json"]
    if len(literal) == 1:
        return literal[0]
    if len(literal) == 2 and literal[0] == literal[1]:
        return literal[0]
    return "text"


# ---------------------------------------------------------------------- the queries


async def page(
    db: Executor,
    *,
    page_no: int,
    per_page: int,
    sort: str,
    filter_text: str,
    skip_total: bool,
    limits: tuple[int, int, int],
) -> dict[str, Any]:
    """One page in PocketBase's list shape. `limits`: filter length, filter expressions,
    sort fields."""
    c = Compiler(db.dialect)
    where, params = c.where(filter_text, limits[0], limits[1])
    order = c.order(sort, limits[2]) or ' ORDER BY "created" ASC, "id" ASC'
    rows = await db.fetchall(
        f"{_SELECT}{where}{order} LIMIT ? OFFSET ?",
        [*params, per_page, (page_no - 1) * per_page],
    )
    total = pages = -1
    if not skip_total:
        row = await db.fetchone(f'SELECT COUNT(*) FROM "{TABLE}"{where}', params)
        total = int(row[0]) if row else 0
        pages = (total + per_page - 1) // per_page
    return {
        "items": [row_to_json(r) for r in rows],
        "page": page_no,
        "perPage": per_page,
        "totalItems": total,
        "totalPages": pages,
    }


async def stats(db: Executor, filter_text: str, limits: tuple[int, int]) -> list[dict[str, Any]]:
    """Entries per hour, oldest first: `[{"date": "2026-12-05 03:00:00.000Z", "total": 7}]`."""
    c = Compiler(db.dialect)
    where, params = c.where(filter_text, limits[0], limits[1])
    hour = "SUBSTR(\"created\", 1, 13) || ':00:00.000Z'"
    rows = await db.fetchall(
        f'SELECT {hour} AS "date", COUNT("id") FROM "{TABLE}"{where} GROUP BY 1 ORDER BY 1',
        params,
    )
    return [{"date": str(r[0]), "total": int(r[1])} for r in rows]


async def view(db: Executor, log_id: str) -> dict[str, Any] | None:
    row = await db.fetchone(f'{_SELECT} WHERE "id" = ?', (log_id,))
    return row_to_json(row) if row is not None else None
