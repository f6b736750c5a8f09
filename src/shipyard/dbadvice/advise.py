"""The index advisor: explain the slowest recorded query shapes and propose indexes.

Shapes come from `_slow_queries` (tools/slowlog.py). Each is explained without its values —
none are stored: SQLite's `EXPLAIN QUERY PLAN` binds NULLs (its plan is chosen before values
are bound), PostgreSQL 16+ plans it with `EXPLAIN (GENERIC_PLAN)` (older servers: a prepared
statement under `plan_cache_mode = force_generic_plan`).

A full scan — SQLite `SCAN <table>`, PostgreSQL `Seq Scan` or an index walk with no index
condition — of a collection's table is matched against the statement text: the columns of
that table compared with a value (`=`/`IN` first, then ranges), else the first ORDER BY key.
The first such data column without an index that starts with it gets a proposal in
PocketBase's syntax (`CREATE INDEX idx_<coll>_<col> ON <coll> (<col>)`). Applying adds the
string to the collection's `indexes` through the schema store, like any collection update,
so every process learns of it. The heuristic is deliberately simple; review before applying.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.kernel.errors import bad_request
from shipyard.records.collections import Collection, parse_index
from shipyard.records.schema import SchemaStore
from shipyard.tools import slowlog
from shipyard.tools.db import Database, DatabaseError
from shipyard.tools.slowlog import Shape

if TYPE_CHECKING:
    from shipyard.services import Services

ORDER_BY = ("total", "max", "avg", "calls")
MAX_TOP = 200
_PG_MAX_NAME = 63

# types whose plain index rarely pays: two values, long text, JSON documents, hashes
_NOT_INDEXED = {"bool", "editor", "json", "password"}
_EXPLAINABLE = re.compile(r"^\s*(?:SELECT|WITH|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_KEYWORDS = {
    "AS", "ON", "WHERE", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS", "JOIN", "ORDER", "GROUP",
    "LIMIT", "OFFSET", "SET", "VALUES", "USING", "NATURAL", "FULL", "LATERAL", "HAVING",
    "RETURNING", "UNION", "WINDOW",
}  # fmt: skip
_TABLES = re.compile(
    rf'\b(?:FROM|JOIN|UPDATE|INTO)\s+"?(?P<table>{_IDENT})"?'
    rf'(?:\s+(?:AS\s+)?"?(?P<alias>{_IDENT})"?)?',
    re.IGNORECASE,
)
# what a column may be compared with for an index to help: a parameter or a constant
_VALUE = r"(?:\?|CAST\(\s*\?|\(\s*\?|'|-?\d|TRUE\b|FALSE\b)"
_EQ = rf"(?:=\s*{_VALUE}|IN\s*\(\s*\?)"
_RANGE = rf"(?:(?:<=|>=|<(?!>)|>)\s*{_VALUE})"


@dataclass
class Scan:
    """A full scan in a plan: the table, the name the statement gives it, the plan line."""

    table: str
    alias: str
    detail: str


@dataclass
class Proposal:
    collection: str
    column: str
    index: str
    reason: str
    shapes: list[str] = field(default_factory=list)
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "column": self.column,
            "index": self.index,
            "reason": self.reason,
            "shapes": list(self.shapes),
            "totalMs": round(self.total_ms, 3),
        }


@dataclass
class ShapeAdvice:
    shape: Shape
    plan: list[str] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.shape.to_dict(),
            "plan": list(self.plan),
            "fullScans": sorted({s.table for s in self.scans}),
            "proposals": [p.index for p in self.proposals],
            "error": self.error,
        }


@dataclass
class Report:
    engine: str
    threshold_ms: float
    items: list[ShapeAdvice]
    proposals: list[Proposal]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "slowQueryMs": self.threshold_ms,
            "items": [i.to_dict() for i in self.items],
            "proposals": [p.to_dict() for p in self.proposals],
        }


# ---------------------------------------------------------------------- entry points


async def report(svc: Services, *, top: int = 20, by: str = "total") -> Report:
    """Advice over every process's observations: this one's pending ones are flushed first."""
    if svc.slowlog is not None:
        await svc.slowlog.flush()
    return await advise(svc.db, svc.store, top=top, by=by, threshold_ms=svc.settings.slow_query_ms)


async def apply_all(svc: Services) -> list[str]:
    """Apply every current proposal (from the MAX_TOP slowest shapes)."""
    rep = await report(svc, top=MAX_TOP)
    return await apply(svc.store, [p.index for p in rep.proposals])


async def reset(svc: Services) -> int:
    """Forget the recorded shapes (this process's pending ones too)."""
    if svc.slowlog is not None:
        await svc.slowlog.flush()
    return await slowlog.reset(svc.db)


# ---------------------------------------------------------------------- advising


async def advise(
    db: Database,
    store: SchemaStore,
    *,
    top: int = 20,
    by: str = "total",
    threshold_ms: float = 0.0,
) -> Report:
    """Explain the `top` slowest shapes (by total, max, avg time or calls) and propose indexes."""
    if by not in ORDER_BY:
        raise bad_request(f"Invalid order: expected one of {', '.join(ORDER_BY)}.")
    if not 1 <= top <= MAX_TOP:
        raise bad_request(f"Invalid top: expected 1..{MAX_TOP}.")
    await store.refresh()
    shapes = await slowlog.read(db, top, by)
    generic = await _pg_generic_plans(db) if db.dialect == "postgres" else False
    names = _index_names(store.all())
    by_key: dict[tuple[str, str], Proposal] = {}
    items: list[ShapeAdvice] = []
    for sh in shapes:
        item = ShapeAdvice(sh)
        items.append(item)
        try:
            item.plan, item.scans = await explain(
                db, sh.sql, truncated=sh.truncated, generic=generic
            )
        except (DatabaseError, ValueError) as exc:
            item.error = str(exc).splitlines()[0][:300]
            continue
        for coll, col, reason in candidates(store, sh.sql, item.scans):
            key = (coll.name, col)
            prop = by_key.get(key)
            if prop is None:
                name = _index_name(coll.name, col, names)
                names.add(name.lower())
                index = f"CREATE INDEX `{name}` ON `{coll.name}` (`{col}`)"
                prop = by_key[key] = Proposal(coll.name, col, index, reason)
            prop.shapes.append(sh.id)
            prop.total_ms += sh.total_ms
            item.proposals.append(prop)
    proposals = sorted(by_key.values(), key=lambda p: -p.total_ms)
    return Report(db.dialect, threshold_ms, items, proposals)


async def explain(
    db: Database, sql: str, *, truncated: bool = False, generic: bool = True
) -> tuple[list[str], list[Scan]]:
    """The plan of a `?`-parameterized statement (as text lines) and its full scans."""
    if truncated:
        raise ValueError("The statement was too long to store whole; it cannot be explained.")
    if not _EXPLAINABLE.match(sql):
        return [], []  # DDL, PRAGMA, SET, …: no query plan to read
    if ";" in _mask(sql):
        raise ValueError("Only single statements are explained.")
    n = sql.count("?")
    if db.dialect == "sqlite":
        rows = await db.fetchall("EXPLAIN QUERY PLAN " + sql, [None] * n)
        return _sqlite_plan(rows, _aliases(sql))
    numbered = _numbered(sql)
    if generic:
        rows = await db.fetchall("EXPLAIN (GENERIC_PLAN, FORMAT JSON) " + numbered)
    else:
        rows = await _pg_prepared_plan(db, numbered, n)
    doc = rows[0][0] if rows else []
    if isinstance(doc, (str, bytes)):
        doc = orjson.loads(doc)
    return _pg_plan(doc)


async def _pg_generic_plans(db: Database) -> bool:
    """EXPLAIN (GENERIC_PLAN) exists from PostgreSQL 16."""
    row = await db.fetchone("SHOW server_version_num")
    return row is not None and int(str(row[0])) >= 160000


async def _pg_prepared_plan(db: Database, numbered: str, n: int) -> list[Any]:
    """Before PostgreSQL 16: the generic plan of a prepared statement, run with NULLs."""
    name = "_sy_advise_" + uuid.uuid4().hex[:12]
    args = ", ".join(["NULL"] * n)
    async with db.transaction() as tx:
        await tx.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await tx.execute(f"PREPARE {name} AS {numbered}")
        try:
            return await tx.fetchall(
                f"EXPLAIN (FORMAT JSON) EXECUTE {name}" + (f"({args})" if n else "")
            )
        finally:
            # if the transaction failed already, the session's leftover statement is harmless
            with contextlib.suppress(DatabaseError):
                await tx.execute(f"DEALLOCATE {name}")


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`, …"""
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


def _sqlite_plan(rows: list[Any], aliases: dict[str, str]) -> tuple[list[str], list[Scan]]:
    depth: dict[int, int] = {0: -1}
    lines: list[str] = []
    scans: list[Scan] = []
    for node_id, parent, _, detail in rows:
        d = depth.get(parent, -1) + 1
        depth[node_id] = d
        lines.append("  " * d + str(detail))
        m = re.match(r"SCAN (\S+)", str(detail))
        # only tables the statement names: not json_each(), subqueries or constant rows
        if m and m.group(1) in aliases and "VIRTUAL TABLE" not in str(detail):
            scans.append(Scan(aliases[m.group(1)], m.group(1), str(detail)))
    return lines, scans


def _pg_plan(doc: Any) -> tuple[list[str], list[Scan]]:
    lines: list[str] = []
    scans: list[Scan] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        kind = str(node.get("Node Type", "?"))
        text = kind
        if node.get("Index Name"):
            text += f" using {node['Index Name']}"
        if node.get("Relation Name"):
            text += f" on {node['Relation Name']}"
            if node.get("Alias") and node["Alias"] != node["Relation Name"]:
                text += f" {node['Alias']}"
        text += f"  (rows={node.get('Plan Rows', '?')})"
        for key in ("Index Cond", "Filter", "Sort Key", "Join Filter", "Hash Cond"):
            if node.get(key):
                value = node[key]
                value = ", ".join(value) if isinstance(value, list) else value
                text += f"  {key}: {value}"
        lines.append("  " * depth + text)
        rel = node.get("Relation Name")
        full = kind == "Seq Scan" or (
            kind in ("Index Scan", "Index Only Scan") and not node.get("Index Cond")
        )
        if rel and full:
            scans.append(Scan(str(rel), str(node.get("Alias") or rel), lines[-1].strip()))
        for child in node.get("Plans") or []:
            walk(child, depth + 1)

    for entry in doc if isinstance(doc, list) else [doc]:
        if isinstance(entry, dict) and isinstance(entry.get("Plan"), dict):
            walk(entry["Plan"], 0)
    return lines, scans


# ---------------------------------------------------------------------- the statement text


def _mask(sql: str) -> str:
    """The statement with quoted text blanked out (same length): keywords found in the
    result are real keywords, at the same positions as in `sql`."""
    out = list(sql)
    quote = ""
    for i, ch in enumerate(sql):
        if quote:
            out[i] = " "
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            out[i] = " "
    return "".join(out)


def _top_level(sql: str) -> str:
    """`_mask` plus everything inside parentheses blanked out."""
    masked = list(_mask(sql))
    depth = 0
    for i, ch in enumerate(masked):
        if ch == "(":
            depth += 1
        if depth:
            masked[i] = " "
        if ch == ")":
            depth = max(depth - 1, 0)
    return "".join(masked)


def _clause(sql: str, top: str, start: str, ends: Iterable[str]) -> str:
    m = re.search(rf"\b{start}\b", top, re.IGNORECASE)
    if not m:
        return ""
    stop = len(sql)
    for end in ends:
        e = re.search(rf"\b{end}\b", top[m.end() :], re.IGNORECASE)
        if e:
            stop = min(stop, m.end() + e.start())
    return sql[m.end() : stop]


def _aliases(sql: str) -> dict[str, str]:
    """alias (or table name) → table, for every quoted table the statement reads."""
    out: dict[str, str] = {}
    for m in _TABLES.finditer(sql):
        table, alias = m.group("table"), m.group("alias")
        if table.upper() in _KEYWORDS:
            continue
        if alias and alias.upper() not in _KEYWORDS:
            out[alias] = table
        else:
            out[table] = table
    return out


def _columns(sql: str, alias: str, ops: str, bare: bool) -> list[str]:
    """Columns of `alias` compared by `ops`, in order of appearance (unqualified ones too,
    in the WHERE clause, when the statement reads a single table)."""
    found = [
        m.group(1)
        for m in re.finditer(rf'"{re.escape(alias)}"\."({_IDENT})"\s*{ops}', sql, re.IGNORECASE)
    ]
    if bare:
        top = _top_level(sql)
        where = _clause(sql, top, "WHERE", ("GROUP BY", "ORDER BY", "LIMIT", "RETURNING"))
        found += [
            m.group(1)
            for m in re.finditer(rf'(?<![.\w"])"({_IDENT})"\s*{ops}', where, re.IGNORECASE)
        ]
    return list(dict.fromkeys(found))


def _first_order_column(sql: str, alias: str, bare: bool) -> str | None:
    top = _top_level(sql)
    order = _clause(sql, top, "ORDER BY", ("LIMIT", "OFFSET", "RETURNING")).strip()
    m = re.match(rf'"{re.escape(alias)}"\."({_IDENT})"', order)
    if m is None and bare:
        m = re.match(rf'"({_IDENT})"(?!\.)', order)
    return m.group(1) if m else None


def candidates(
    store: SchemaStore, sql: str, scans: list[Scan]
) -> list[tuple[Collection, str, str]]:
    """(collection, column, reason) for each full scan an index on one column should avoid."""
    aliases = _aliases(sql)
    single = len(set(aliases.values())) == 1
    out: list[tuple[Collection, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for scan in scans:
        coll = store.get(scan.table)
        if coll is None or coll.system or coll.name.startswith("_") or coll.name != scan.table:
            continue
        data = {f.name for f in coll.data_fields if f.type not in _NOT_INDEXED and not f.is_multi}
        indexed = _indexed_first_columns(coll)
        bare = single and scan.alias == scan.table
        choice: tuple[str, str] | None = None
        for ops, what in ((_EQ, "compared for equality"), (_RANGE, "compared by range")):
            cols = [c for c in _columns(sql, scan.alias, ops, bare) if c in data or c == "id"]
            if cols:
                col = next((c for c in cols if c not in indexed), None)
                if col is not None:
                    choice = (col, f"full scan of {coll.name} where {col} is {what}")
                break  # the planner had an index on a filtered column and chose not to use it
        else:
            col_o = _first_order_column(sql, scan.alias, bare)
            if col_o and col_o in data and col_o not in indexed:
                choice = (col_o, f"full scan of {coll.name} sorted by {col_o}")
        if choice and (coll.name, choice[0]) not in seen:
            seen.add((coll.name, choice[0]))
            out.append((coll, choice[0], choice[1]))
    return out


def _indexed_first_columns(c: Collection) -> set[str]:
    out = {"id"}
    for idef in c.index_defs():
        if idef.columns:
            out.add(idef.columns[0][0])
    return out


def _index_names(collections: Iterable[Collection]) -> set[str]:
    return {parse_index(i).name.lower() for c in collections for i in c.indexes}


def _index_name(coll: str, col: str, taken: set[str]) -> str:
    base = f"idx_{coll}_{col}"
    if len(base) > _PG_MAX_NAME - 4:  # PostgreSQL truncates longer names silently
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        base = f"idx_{coll[:24]}_{col[:20]}_{digest}"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}_{n}", n + 1
    return name


# ---------------------------------------------------------------------- applying

_ON_TABLE = re.compile(rf"\bON\s+[`\"\[]?({_IDENT})[`\"\]]?\s*\(", re.IGNORECASE)


async def apply(store: SchemaStore, indexes: list[str]) -> list[str]:
    """Add index definitions (PocketBase syntax) to their collections through the schema
    store; returns those added. One whose first column already starts an index of the
    collection is skipped. A bad definition refuses the whole request before any change."""
    if not isinstance(indexes, list) or not all(isinstance(i, str) for i in indexes):
        raise bad_request("Invalid indexes: expected a list of index definitions.")
    await store.refresh()
    planned: dict[str, list[str]] = {}
    for i, text in enumerate(indexes):
        m = _ON_TABLE.search(text)
        try:
            idef = parse_index(text)
        except ValueError as exc:
            raise _invalid(i, str(exc)) from None
        coll = store.get(m.group(1)) if m else None
        if coll is None or coll.system or coll.name.startswith("_"):
            raise _invalid(i, "The index must be on an existing, non-system collection.")
        if idef.unique:
            raise _invalid(i, "Only plain (non-unique) indexes are applied here.")
        planned.setdefault(coll.name, []).append(text)
    applied: list[str] = []
    for name, texts in planned.items():
        coll = store.require(name)
        firsts = _indexed_first_columns(coll)
        names = _index_names(store.all())
        new: list[str] = []
        for text in texts:
            idef = parse_index(text)
            if idef.columns[0][0] in firsts or idef.name.lower() in names:
                continue
            firsts.add(idef.columns[0][0])
            names.add(idef.name.lower())
            new.append(text)
        if not new:
            continue
        updated = await store.update(coll, {"indexes": [*coll.indexes, *new]})
        applied += updated.indexes[len(coll.indexes) :]
    return applied


def _invalid(i: int, message: str) -> Exception:
    return bad_request(
        "Failed to apply the indexes.",
        {"indexes": {str(i): {"code": "validation_invalid_index", "message": message}}},
    )
