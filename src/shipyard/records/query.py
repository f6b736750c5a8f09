"""PocketBase's filter and sort language compiled to parameterized SQL for SQLite and PostgreSQL.

The output is one boolean SQL expression over the main row `"<alias>"` plus its parameters:
every value is a parameter and identifiers are only ever schema names, so nothing a client
types reaches the SQL text. Semantics follow PocketBase:

* Paths through multi-valued relations, back-relations and `@collection` are row sets.
  `?`-operators mean "some row matches" and, as with PocketBase's LEFT JOINs, every
  `?`-comparison on the same path prefix in one filter refers to the *same* related row
  (`members.user ?= @request.auth.id && members.role ?= "admin"` needs one member row with
  both; `@collection.x:alias.f` gives an independent row). That scope becomes an `EXISTS`
  placed at the smallest sub-expression that needs it, so plain conditions stay sargable.
* Plain operators on such paths, and on multi-valued fields themselves (the items of their
  JSON array), mean "every item matches": `NOT EXISTS (an item that does not match)`.
  An empty set behaves as a single NULL item.
* `= null` and `= ""` compare with the field's zero value ('' / 0 / false / JSON null),
  which is what PocketBase stores instead of NULL; a missing related row counts as zero.
* Types never clash on PostgreSQL: number columns against numeric text compare as numbers,
  booleans against 'true'/'false'/1/0 as booleans, anything else as text; JSON values keep
  their JSON type on both engines (the number 5 is not the text "5").

Only the parse is cached: the SQL depends on `@request.*`, the date macros and the schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

import orjson

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.records.collections import Collection
from shipyard.records.fields import (
    Field,
    FieldError,
    FileField,
    JSONField,
    RelationField,
    SelectField,
)
from shipyard.tools.filterexpr import (
    Bool,
    Call,
    Comparison,
    FilterSyntaxError,
    Identifier,
    Logical,
    Node,
    Null,
    Number,
    Operand,
    Text,
    parse,
    parse_sort,
)

__all__ = ["FilterLimits", "Refs", "compile_filter", "compile_sort", "references"]


class Registry(Protocol):
    def get(self, id_or_name: str) -> Collection | None: ...


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """What one filter may ask for. The join limits bound its cost up front: each distinct
    `@collection` source or back-relation is a pass over a whole collection for every row
    it is joined to, so k of them in one scope cost n^(k+1). Rules are the admins' own and
    keep the generous defaults; client filters get the settings'."""

    max_length: int = 3500
    max_expressions: int = 200
    max_depth: int = 32
    max_relation_depth: int = 6
    max_collection_joins: int = 64
    max_back_relations: int = 64


DEFAULT_LIMITS = FilterLimits()
MAX_REQUEST_IDS = 1000  # relation ids taken from @request.body / @request.auth
MAX_EXPANDED_COMPARISONS = 1000  # comparisons after expanding list values of @request.*
MODIFIERS = frozenset(("lower", "length", "each", "isset", "changed"))

_PART_RE = re.compile(r"[A-Za-z0-9_]+")
_VIA_RE = re.compile(r"(\w+)_via_(\w+)")
_COLLECTION_RE = re.compile(r"@collection\.(\w+)(?::(\w+))?\.(.+)")
_NUMERIC_RE = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PG_TYPES = {"text": "TEXT", "number": "DOUBLE PRECISION", "bool": "BOOLEAN"}
_ZERO = {"text": "''", "number": "0", "bool": "FALSE"}
_TRUE, _FALSE = "1=1", "1=0"
_NO_ROOTS: frozenset[str] = frozenset()


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class _Const:
    """A value known at compile time (literal, macro, @request.*): always a parameter."""

    value: str | float | bool | None
    raw: str = ""  # how a number reads as text
    lower: bool = False

    @property
    def kind(self) -> str:
        v = self.value
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "bool"
        return "number" if isinstance(v, float) else "text"

    @property
    def empty(self) -> bool:
        return self.value is None or self.value == ""


_NULL = _Const(None)


@dataclass(frozen=True, slots=True)
class _ConstList:
    """A list-valued constant compared item by item (`?` any item, plain every item)."""

    items: tuple[_Const, ...]


@dataclass(frozen=True, slots=True)
class _Hop:
    """One step from a row to related rows.

    kind: rel (this row's `column` holds the id(s)), back (the target's `column` points here),
    coll (every row of `table`) or ids (rows whose id is one of `ids`).
    """

    kind: str
    table: str
    column: str
    key: str  # the path prefix; `?`-comparisons with equal keys share the joined row
    multi: bool  # may yield several rows
    array: bool = False  # `column` holds a JSON array of ids
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Ref:
    """A resolved field path: hops from the main row, then a value read from the last row."""

    hops: tuple[_Hop, ...]
    column: str
    kind: str  # text | number | bool | json
    json_path: tuple[str, ...] | None = None
    items: bool = False  # compare each item of the JSON array in `column`
    modifier: str = ""  # lower | length
    array: bool = False  # the column holds a JSON array (for :length)
    email_guard: bool = False  # hide emails their owners did not make visible
    each: bool = False  # `:each` asked for item-wise comparison explicitly

    @property
    def multi_hops(self) -> bool:
        return any(h.multi for h in self.hops)


Resolved = _Const | _ConstList | _Ref


@dataclass(slots=True)
class _Val:
    """An operand ready for SQL: a constant, or a parameter-free term over a row alias,
    optionally wrapped in a scalar subquery (whose parameters live in the wrapper)."""

    kind: str
    nullable: bool
    const: _Const | None = None
    term: str = ""
    prefix: str = ""
    suffix: str = ""
    params: tuple[Any, ...] = ()


@dataclass(slots=True)
class _Frag:
    sql: str
    params: list[Any]


@dataclass(slots=True)
class _CC:
    """A compiled comparison and the shared-scope joins it needs."""

    sql: str
    params: list[Any]
    keys: tuple[str, ...]
    roots: frozenset[str]


@dataclass(slots=True)
class _CLogical:
    op: str
    items: list[_CC | _CLogical]
    roots: frozenset[str]


@dataclass(slots=True)
class _ScopeJoin:
    alias: str
    root: str
    frag: _Frag
    order: int


# ----------------------------------------------------------------------------- helpers


def _num_text(value: float | int) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() and abs(f) < 1e16 else repr(f)


def _clean(text: str) -> str:
    """Make any string storable as a parameter on both engines (no NUL, valid UTF-8)."""
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


_PG_ESCAPED_BACKSLASH = r"E'\\\\'"  # the two characters \\ of JSON text
_PG_ESCAPED_NUL = r"E'\\u0000'"  # the six characters \u0000 of JSON text


def _pg_jsonb(col: str) -> str:
    r"""Stored JSON text as JSONB, which cannot hold U+0000: its escape `\u0000` is dropped
    for the comparison (the stored text, and what the API returns, keep it). Without this
    one record holding it would make every filter reading the column fail, for everyone.
    Escaped backslashes are parked on U+0001 first (JSON text never holds it raw), so a
    literal backslash followed by `u0000` is left alone. Rows without the escape pay one
    STRPOS."""
    fixed = (
        f"REPLACE(REPLACE(REPLACE({col}, {_PG_ESCAPED_BACKSLASH}, CHR(1)), "
        f"{_PG_ESCAPED_NUL}, ''), CHR(1), {_PG_ESCAPED_BACKSLASH})"
    )
    return (
        f"CAST(CASE WHEN STRPOS({col}, {_PG_ESCAPED_NUL}) > 0 THEN {fixed} ELSE {col} END AS JSONB)"
    )


def _like_pattern(value: str) -> str:
    """PocketBase's rule: a value without an unescaped `%` means "contains": escape
    `\\ % _` (keeping existing escapes) and wrap it in `%`; otherwise use it as written."""
    prev = ""
    for ch in value:
        if ch == "%" and prev != "\\":
            return _close_escape(value)
        prev = "" if ch == "\\" and prev == "\\" else ch
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n and value[i + 1] in "\\%_":
            out.append(value[i : i + 2])  # already escaped
            i += 2
            continue
        if ch in "\\%_":
            out.append("\\")
        out.append(ch)
        i += 1
    return "%" + "".join(out) + "%"


def _close_escape(pattern: str) -> str:
    """A pattern may not end in a lone escape character (PostgreSQL rejects it)."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def _can_convert(c: _Const, kind: str) -> bool:
    """Whether a constant has an unambiguous meaning as `kind`."""
    k = c.kind
    if k == kind or kind == "text":
        return k != "null"
    v = c.value
    if kind == "number":
        if k == "bool":
            return True
        if isinstance(v, str) and _NUMERIC_RE.fullmatch(v):
            return math.isfinite(float(v))
        return False
    if kind == "bool":
        if isinstance(v, float):
            return v in (0.0, 1.0)
        return isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0")
    return False


def _convert_const(c: _Const, kind: str) -> Any:
    v = c.value
    if kind == "number":
        return float(v) if not isinstance(v, bool) else (1.0 if v else 0.0)  # type: ignore[arg-type]
    if kind == "bool":
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1")
        return bool(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return c.raw or _num_text(v)
    return v


def _fallback_kind(a: str, b: str) -> str:
    return "text" if "text" in (a, b) else "number"


def _common_kind(a: _Val, b: _Val) -> str:
    """The type both sides are compared as (see the module docstring)."""
    ka, kb = a.kind, b.kind
    if ka == kb:
        return ka
    if ka == "json":
        return kb
    if kb == "json":
        return ka
    ca, cb = a.const, b.const
    if ca is not None and cb is not None:
        for k in (ka, kb):
            if k != "text" and _can_convert(ca, k) and _can_convert(cb, k):
                return k
        return "text"
    if ca is not None:
        return kb if _can_convert(ca, kb) else _fallback_kind(ka, kb)
    if cb is not None:
        return ka if _can_convert(cb, ka) else _fallback_kind(ka, kb)
    return _fallback_kind(ka, kb)


def _stamp(dt: datetime) -> _Const:
    """A date in the stored format (`format_date`'s, without strftime: this is hot)."""
    return _Const(
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


def _count(value: int) -> _Const:
    return _Const(float(value), str(value))


_DAY_END = timedelta(hours=23, minutes=59, seconds=59, microseconds=999000)


def _day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_end(now: datetime) -> datetime:
    first = _day(now).replace(day=1)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1) + _DAY_END


# PocketBase's date macros, in UTC: dates as stored text, the rest as numbers
_MACROS: dict[str, Callable[[datetime], _Const]] = {
    "@now": _stamp,
    "@yesterday": lambda now: _stamp(now - timedelta(days=1)),
    "@tomorrow": lambda now: _stamp(now + timedelta(days=1)),
    "@todayStart": lambda now: _stamp(_day(now)),
    "@todayEnd": lambda now: _stamp(_day(now) + _DAY_END),
    "@monthStart": lambda now: _stamp(_day(now).replace(day=1)),
    "@monthEnd": lambda now: _stamp(_month_end(now)),
    "@yearStart": lambda now: _stamp(_day(now).replace(month=1, day=1)),
    "@yearEnd": lambda now: _stamp(_day(now).replace(month=12, day=31) + _DAY_END),
    "@second": lambda now: _count(now.second),
    "@minute": lambda now: _count(now.minute),
    "@hour": lambda now: _count(now.hour),
    "@weekday": lambda now: _count((now.weekday() + 1) % 7),  # Sunday is 0, as in Go
    "@day": lambda now: _count(now.day),
    "@month": lambda now: _count(now.month),
    "@year": lambda now: _count(now.year),
}


def _lookup(root: Any, keys: list[str]) -> tuple[bool, Any]:
    """A nested value of the request info: (found, value); lists take numeric keys."""
    cur = root
    for i, key in enumerate(keys):
        if isinstance(cur, dict):
            if key in cur:
                cur = cur[key]
                continue
            if i == 1 and keys[0] == "headers":
                norm = {str(k).lower().replace("-", "_"): v for k, v in cur.items()}
                if key.lower() in norm:
                    cur = norm[key.lower()]
                    continue
            return False, None
        if isinstance(cur, list) and key.isdigit() and len(key) < 10 and int(key) < len(cur):
            cur = cur[int(key)]
            continue
        return False, None
    return True, cur


def _to_const(value: Any, lower: bool = False) -> _Const:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _Const(value)
    if isinstance(value, (int, float)):
        return _Const(float(value), _num_text(value)) if math.isfinite(value) else _NULL
    if isinstance(value, str):
        return _Const(_clean(value), lower=lower)
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = str(value)
    return _Const(_clean(text), lower=lower)


def _multi_valued(f: Field | None) -> bool:
    return isinstance(f, (SelectField, RelationField, FileField))


# ----------------------------------------------------------------------------- parse cache


@lru_cache(maxsize=1024)
def _parse_cached(text: str, limits: FilterLimits) -> Node | FilterSyntaxError:
    """The parse is pure and request-independent, so it is the part worth caching."""
    try:
        tree = parse(text, limits.max_length, limits.max_expressions, limits.max_depth)
        return _expand_changed(tree) if ":changed" in text else tree
    except FilterSyntaxError as exc:
        return exc


_CHANGED_RE = re.compile(r"@request\.body\.(\w+):changed")


def _expand_changed(node: Node) -> Node:
    """`@request.body.f:changed` means "sent and different from the stored value", so it is
    rewritten, as PocketBase does, to `(@request.body.f:isset = true && <sent> != f)` before
    compiling, where <sent> (the identifier kept with its `:changed`) is the sent value
    normalized and encoded as `f` stores it, so lists compare whole. It may only be
    compared with true or false."""
    if isinstance(node, Logical):
        return Logical(node.op, tuple(_expand_changed(n) for n in node.items), node.pos)
    sides = [node.left, node.right]
    hits = [
        (i, m)
        for i, side in enumerate(sides)
        if isinstance(side, Identifier) and (m := _CHANGED_RE.fullmatch(side.name))
    ]
    if not hits:
        for side in sides:
            if isinstance(side, Identifier) and side.name.endswith(":changed"):
                raise FilterSyntaxError(
                    '":changed" can only be used with top-level @request.body fields', side.pos
                )
        return node
    i, m = hits[0]
    other = sides[1 - i]
    if len(hits) > 1 or not isinstance(other, Bool) or node.op not in ("=", "!="):
        raise FilterSyntaxError(
            '":changed" can only be compared with true or false using = or !=', node.pos
        )
    pos, name = node.pos, m.group(1)
    body = Identifier("@request.body." + name, pos)
    if other.value == (node.op == "="):
        return Logical(
            "&&",
            (
                Comparison(Identifier(body.name + ":isset", pos), "=", Bool(True, pos), pos),
                Comparison(Identifier(m.group(0), pos), "!=", Identifier(name, pos), pos),
            ),
            pos,
        )
    return Logical(
        "||",
        (
            Comparison(Identifier(body.name + ":isset", pos), "=", Bool(False, pos), pos),
            Comparison(Identifier(m.group(0), pos), "=", Identifier(name, pos), pos),
        ),
        pos,
    )


# ----------------------------------------------------------------------------- compiler


class _Compiler:
    def __init__(
        self,
        base: Collection,
        registry: Registry | None,
        dialect: str,
        alias: str,
        request: dict[str, Any] | None,
        now: datetime | None,
        allow_hidden: bool,
        limits: FilterLimits,
        what: str = "filter",
    ) -> None:
        if dialect not in ("sqlite", "postgres"):
            raise ValueError(f"unknown dialect {dialect!r}")
        if not _ALIAS_RE.fullmatch(alias):
            raise ValueError(f"invalid table alias {alias!r}")
        self.base = base
        self.registry = registry
        self.pg = dialect == "postgres"
        self.alias = alias
        self.request = request
        self.now = now
        self.allow_hidden = allow_hidden
        self.limits = limits
        self.what = what
        self.counter = 0
        self.scope: dict[str, _ScopeJoin] = {}
        self.comparisons = 0
        self.joined: dict[str, set[str]] = {"coll": set(), "back": set()}

    # -------------------------------------------------------------- small utilities

    def err(self, message: str, pos: int) -> ApiError:
        return bad_request(f"Invalid {self.what}: {message} at position {pos}.")

    def count_join(self, kind: str, key: str, pos: int) -> None:
        """Refuse the filter once it joins more distinct sources of `kind` than allowed."""
        seen = self.joined[kind]
        if key in seen:
            return
        seen.add(key)
        if kind == "coll" and len(seen) > self.limits.max_collection_joins:
            raise self.err(
                "too many @collection sources in one filter "
                f"(at most {self.limits.max_collection_joins})",
                pos,
            )
        if kind == "back" and len(seen) > self.limits.max_back_relations:
            raise self.err(
                f"too many back-relations in one filter (at most {self.limits.max_back_relations})",
                pos,
            )

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def ph(self, kind: str) -> str:
        return f"CAST(? AS {_PG_TYPES[kind]})" if self.pg else "?"

    def load(self, id_or_name: str) -> Collection | None:
        if not id_or_name:
            return None
        if id_or_name in (self.base.id, self.base.name):
            return self.base
        return self.registry.get(id_or_name) if self.registry is not None else None

    # -------------------------------------------------------------- tree

    def compile(self, node: Node) -> tuple[str, list[Any]]:
        if isinstance(node, Comparison):  # the common case needs no tree
            cc = self.comparison(node)
            if not cc.roots:
                return cc.sql, cc.params
            tree: _CC | _CLogical = cc
        else:
            tree = self.compile_node(node)
        frag = self.assemble(tree, _NO_ROOTS)
        return frag.sql, frag.params

    def compile_node(self, node: Node) -> _CC | _CLogical:
        if isinstance(node, Comparison):
            return self.comparison(node)
        items = [self.compile_node(n) for n in node.items]
        roots = _NO_ROOTS
        for item in items:
            if item.roots:
                roots = roots | item.roots
        return _CLogical(node.op, items, roots)

    def assemble(self, node: _CC | _CLogical, bound: frozenset[str]) -> _Frag:
        """Place each shared-scope EXISTS at the smallest sub-expression using that scope.

        Valid because every scope join is a LEFT JOIN (never empty): EXISTS distributes over
        OR, and over AND between parts that use disjoint scopes.
        """
        if not node.roots:
            return _plain(node)
        if isinstance(node, _CC):
            free = node.roots - bound
            if not free:
                return _Frag(node.sql, node.params)
            return self.scope_exists(free, [node], _Frag(node.sql, node.params))
        if node.op == "||":
            parts = [self.assemble(child, bound) for child in node.items]
            return _join_frags(parts, " OR ")
        return _join_frags(self.assemble_and(node.items, bound), " AND ")

    def assemble_and(self, items: list[_CC | _CLogical], bound: frozenset[str]) -> list[_Frag]:
        groups = _group_by_roots(items, bound)
        out: list[_Frag] = []
        for members in groups:
            if len(members) == 1:
                out.append(self.assemble(items[members[0]], bound))
                continue
            children = [items[i] for i in members]
            roots = frozenset().union(*(c.roots for c in children)) - bound
            inner = _join_frags([self.assemble(c, bound | roots) for c in children], " AND ")
            out.append(self.scope_exists(roots, children, inner))
        return out

    def scope_exists(
        self, roots: frozenset[str], nodes: list[_CC | _CLogical], inner: _Frag
    ) -> _Frag:
        keys: set[str] = set()
        for node in nodes:
            _collect_keys(node, keys)
        joins = sorted(
            (self.scope[k] for k in keys if self.scope[k].root in roots), key=lambda j: j.order
        )
        d = self.fresh("_t")
        sql = " ".join(j.frag.sql for j in joins)
        params = [p for j in joins for p in j.frag.params]
        return _Frag(
            f'EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {sql} WHERE {inner.sql})',
            params + inner.params,
        )

    # -------------------------------------------------------------- comparisons

    def comparison(self, node: Comparison) -> _CC:
        left = self.resolve(node.left)
        right = self.resolve(node.right)
        if not isinstance(left, _ConstList) and not isinstance(right, _ConstList):
            return self.pair(node.op, left, right)
        lefts = _items(left)
        rights = _items(right)
        total = len(lefts) * len(rights)
        self.comparisons += total
        if self.comparisons > MAX_EXPANDED_COMPARISONS:
            raise self.err("too many values to compare", node.pos)
        parts = [self.pair(node.op, a, b) for a in lefts for b in rights]
        if len(parts) == 1:
            return parts[0]
        glue = " OR " if node.op[0] == "?" else " AND "
        keys: list[str] = []
        for p in parts:
            keys.extend(k for k in p.keys if k not in keys)
        return _CC(
            "(" + glue.join(p.sql for p in parts) + ")",
            [x for p in parts for x in p.params],
            tuple(keys),
            frozenset().union(*(p.roots for p in parts)),
        )

    def pair(self, op: str, x: _Const | _Ref, y: _Const | _Ref) -> _CC:
        mode_any = op[0] == "?"
        if not mode_any:
            x, y = _raw_multi(x, y), _raw_multi(y, x)
        joins: list[_Frag] = []
        keys: list[str] = []
        a = self.operand(x, mode_any, joins, keys)
        b = self.operand(y, mode_any, joins, keys)
        cond = self.condition(op[1:] if mode_any else op, a, b)
        if joins:
            d = self.fresh("_d")
            from_sql = " ".join(j.sql for j in joins)
            params = [p for j in joins for p in j.params] + cond.params
            if mode_any:
                sql = f'EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {from_sql} WHERE {cond.sql})'
            else:
                sql = (
                    f'NOT EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {from_sql} '
                    f"WHERE NOT COALESCE({cond.sql}, FALSE))"
                )
            cond = _Frag(sql, params)
        if not keys:
            return _CC(cond.sql, cond.params, (), _NO_ROOTS)
        roots = frozenset(self.scope[k].root for k in keys)
        return _CC(cond.sql, cond.params, tuple(keys), roots)

    def condition(self, op: str, a: _Val, b: _Val) -> _Frag:
        if op in ("=", "!="):
            return self.equality(op == "=", a, b)
        if a.kind == "null" or b.kind == "null":
            return _Frag(_FALSE, [])
        if op in ("~", "!~"):
            return self.like(op == "!~", a, b)
        kind = _common_kind(a, b)
        x, y = self.render(a, kind), self.render(b, kind)
        return _Frag(f"{x.sql} {op} {y.sql}", x.params + y.params)

    def equality(self, eq: bool, a: _Val, b: _Val) -> _Frag:
        """`=`/`!=` with PocketBase's empty handling: '' and null are the same, and a
        field compared with them matches its zero value (or a missing related row)."""
        a_empty = a.const is not None and a.const.empty
        b_empty = b.const is not None and b.const.empty
        if a_empty and b_empty:
            return _Frag(_TRUE if eq else _FALSE, [])
        if a_empty or b_empty:
            other, empty = (b, a) if a_empty else (a, b)
            if other.const is not None:
                return _Frag(_FALSE if eq else _TRUE, [])
            assert empty.const is not None
            return self.zero_check(eq, other, empty.const.value is None)
        kind = _common_kind(a, b)
        x, y = self.render(a, kind), self.render(b, kind)
        params = x.params + y.params
        if a.const is not None or b.const is not None:
            if eq:
                return _Frag(f"{x.sql} = {y.sql}", params)
            op = self.is_not if a.nullable or b.nullable else "<>"
            return _Frag(f"{x.sql} {op} {y.sql}", params)
        if "json" in (a.kind, b.kind):
            op = ("IS NOT DISTINCT FROM" if self.pg else "IS") if eq else self.is_not
            return _Frag(f"{x.sql} {op} {y.sql}", params)
        xs = f"COALESCE({x.sql}, {_ZERO[kind]})" if a.nullable else x.sql
        ys = f"COALESCE({y.sql}, {_ZERO[kind]})" if b.nullable else y.sql
        return _Frag(f"{xs} {'=' if eq else '<>'} {ys}", params)

    @property
    def is_not(self) -> str:
        return "IS DISTINCT FROM" if self.pg else "IS NOT"

    def zero_check(self, eq: bool, v: _Val, null_literal: bool) -> _Frag:
        if v.kind == "json":
            if null_literal:
                x = self.render(v, "json")
                return _Frag(f"{x.sql} IS {'' if eq else 'NOT '}NULL", x.params)
            x = self.render(v, "text")
            return _Frag(f"{x.sql} {'=' if eq else self.is_not} ''", x.params)
        x = self.render(v, v.kind)
        zero = _ZERO[v.kind]
        sql = f"COALESCE({x.sql}, {zero})" if v.nullable else x.sql
        return _Frag(f"{sql} {'=' if eq else '<>'} {zero}", x.params)

    def like(self, negate: bool, a: _Val, b: _Val) -> _Frag:
        x = self.render(a, "text", loose=True)
        if b.const is not None:
            pattern = _like_pattern(str(_convert_const(b.const, "text")))
            y = _Frag(self.ph("text"), [pattern])
            if b.const.lower:
                y.sql = f"LOWER({y.sql})"
        else:
            inner = self.render(b, "text", loose=True)
            p = self.ph("text")
            y = _Frag(f"({p} || {inner.sql} || {p})", ["%", *inner.params, "%"])
        op = ("NOT " if negate else "") + ("ILIKE" if self.pg else "LIKE")
        return _Frag(f"{x.sql} {op} {y.sql} ESCAPE {self.ph('text')}", [*x.params, *y.params, "\\"])

    # -------------------------------------------------------------- rendering values

    def render(self, v: _Val, kind: str | None, loose: bool = False) -> _Frag:
        """The operand as SQL of type `kind` (None: as stored, for ORDER BY)."""
        if v.const is not None:
            c = v.const
            target = kind or c.kind
            sql = self.ph(target if target in _PG_TYPES else "text")
            if c.lower and target == "text":
                sql = f"LOWER({sql})"
            return _Frag(sql, [_convert_const(c, target)])
        term = v.term if kind is None else self.convert(v.term, v.kind, kind, loose)
        return _Frag(v.prefix + term + v.suffix, list(v.params))

    def convert(self, term: str, src: str, dst: str, loose: bool = False) -> str:
        """Cast a term between kinds. JSON values stay typed as SQLite's json_extract is
        (the number 5 is not the text '5'); `loose` text (for ~ and :lower) is any JSON
        scalar's text form."""
        if src == "json" and dst != "json":
            if not self.pg:
                if loose or dst == "bool":
                    return term
                types = "'integer', 'real'" if dst == "number" else "'text'"
                return f"(CASE WHEN typeof({term}) IN ({types}) THEN {term} END)"
            if dst == "text":
                if loose:
                    return f"({term} #>> '{{}}')"
                return f"(CASE WHEN jsonb_typeof({term}) = 'string' THEN {term} #>> '{{}}' END)"
            pg_type = _PG_TYPES[dst]
            json_type = "number" if dst == "number" else "boolean"
            return (
                f"(CASE WHEN jsonb_typeof({term}) = '{json_type}' "
                f"THEN CAST({term} #>> '{{}}' AS {pg_type}) END)"
            )
        if src == dst:
            return term
        if dst == "text":
            if src == "bool":
                return f"(CASE WHEN {term} THEN 'true' WHEN NOT {term} THEN 'false' END)"
            return f"CAST({term} AS TEXT)"
        if src == "bool" and dst == "number" and self.pg:
            return f"CAST({term} AS INTEGER)"
        return term

    def operand(
        self, x: _Const | _Ref, mode_any: bool, joins: list[_Frag], keys: list[str]
    ) -> _Val:
        """Render one side: rows it needs go to the shared scope (`?`, through multi-valued
        paths) or to this comparison's own subquery (`joins`)."""
        if isinstance(x, _Const):
            return _Val(x.kind if not x.lower else "text", False, const=x)
        if not (x.items or x.multi_hops):
            return self.terminal(x, self.scalar_wrap(x) if x.hops else None)
        if mode_any and x.multi_hops:
            last = self.scope_chain(x.hops, keys)
        else:
            last = self.local_chain(x.hops, joins)
        if not x.items:
            return self.terminal(x, None, last)
        container = f'"{last}"."{x.column}"'
        each = self.fresh("_e")
        joins.append(_Frag(self.each_join(container, each), []))
        term = f'"{each}"."value"'
        if x.modifier == "lower":
            term = f"LOWER({term})"
        return _Val("text", True, term=term)

    def terminal(
        self, ref: _Ref, wrap: tuple[str, str, list[Any]] | None, alias: str | None = None
    ) -> _Val:
        alias = alias or (wrap[0] if wrap else self.alias)
        col = f'"{alias}"."{ref.column}"'
        if ref.email_guard:
            col = f'(CASE WHEN "{alias}"."emailVisibility" THEN {col} END)'
        nullable = bool(ref.hops) or ref.email_guard
        if ref.modifier == "length":
            term, kind = self.length(col, ref.array), "number"
        elif ref.json_path is not None:
            term, kind, nullable = self.json_extract(col, ref.json_path), "json", True
        else:
            term, kind = col, ref.kind
        if ref.modifier == "lower":
            term, kind = f"LOWER({self.convert(term, kind, 'text', loose=True)})", "text"
        if wrap is None:
            return _Val(kind, nullable, term=term)
        return _Val(kind, True, term=term, prefix="(SELECT ", suffix=wrap[1], params=tuple(wrap[2]))

    def json_extract(self, col: str, path: tuple[str, ...]) -> str:
        if self.pg:  # JSON null reads as SQL NULL, as with SQLite's json_extract
            value = _pg_jsonb(col)
            if path:
                value = f"({value} #> '{{{','.join(path)}}}')"
            return f"NULLIF({value}, 'null')"
        jpath = "$" + "".join(f"[{k}]" if k.isdigit() else f'."{k}"' for k in path)
        return f"json_extract(CASE WHEN json_valid({col}) THEN {col} ELSE json_quote({col}) END, '{jpath}')"

    def length(self, col: str, array: bool) -> str:
        empty = f"{col} IS NULL OR {col} = ''"
        if not array:
            return f"(CASE WHEN {empty} THEN 0 ELSE 1 END)"
        if self.pg:
            counted = f"WHEN LEFT({col}, 1) = '[' THEN jsonb_array_length({_pg_jsonb(col)})"
        else:
            counted = f"WHEN json_valid({col}) THEN json_array_length({col})"
        return f"(CASE WHEN {empty} THEN 0 {counted} ELSE 1 END)"

    def array_guard(self, col: str) -> str:
        """A JSON array whatever the column holds (legacy scalars become one item)."""
        if self.pg:
            return f"CASE WHEN LEFT({col}, 1) = '[' THEN {_pg_jsonb(col)} ELSE jsonb_build_array({col}) END"
        return (
            f"CASE WHEN CASE WHEN json_valid({col}) THEN json_type({col}) = 'array' ELSE 0 END "
            f"THEN {col} ELSE json_array({col}) END"
        )

    def each_join(self, container: str, alias: str) -> str:
        guard = self.array_guard(container)
        if self.pg:
            return f'LEFT JOIN LATERAL jsonb_array_elements_text({guard}) AS "{alias}"("value") ON TRUE'
        return f'LEFT JOIN json_each({guard}) AS "{alias}" ON 1=1'

    def hop_join(self, hop: _Hop, prev: str, alias: str) -> _Frag:
        table = f'"{hop.table}" AS "{alias}"'
        if hop.kind == "rel":
            if not hop.array:
                return _Frag(f'LEFT JOIN {table} ON "{alias}"."id" = "{prev}"."{hop.column}"', [])
            each = alias + "v"
            join = self.each_join(f'"{prev}"."{hop.column}"', each)
            return _Frag(f'{join} LEFT JOIN {table} ON "{alias}"."id" = "{each}"."value"', [])
        if hop.kind == "back":
            if not hop.array:
                return _Frag(f'LEFT JOIN {table} ON "{alias}"."{hop.column}" = "{prev}"."id"', [])
            guard = self.array_guard(f'"{alias}"."{hop.column}"')
            if self.pg:
                values = f"SELECT jsonb_array_elements_text({guard})"
            else:
                values = f'SELECT "{alias}v"."value" FROM json_each({guard}) AS "{alias}v"'
            return _Frag(f'LEFT JOIN {table} ON "{prev}"."id" IN ({values})', [])
        if hop.kind == "coll":
            return _Frag(f"LEFT JOIN {table} ON 1=1", [])
        marks = ", ".join(self.ph("text") for _ in hop.ids)
        return _Frag(f'LEFT JOIN {table} ON "{alias}"."id" IN ({marks})', list(hop.ids))

    def local_chain(self, hops: tuple[_Hop, ...], joins: list[_Frag]) -> str:
        prev = self.alias
        for hop in hops:
            alias = self.fresh("_j")
            joins.append(self.hop_join(hop, prev, alias))
            prev = alias
        return prev

    def scope_chain(self, hops: tuple[_Hop, ...], keys: list[str]) -> str:
        prev = self.alias
        root = hops[0].key
        for hop in hops:
            entry = self.scope.get(hop.key)
            if entry is None:
                alias = self.fresh("_s")
                entry = _ScopeJoin(alias, root, self.hop_join(hop, prev, alias), len(self.scope))
                self.scope[hop.key] = entry
            if hop.key not in keys:
                keys.append(hop.key)
            prev = entry.alias
        return prev

    def scalar_wrap(self, ref: _Ref) -> tuple[str, str, list[Any]]:
        """A correlated scalar subquery over single relations (at most one row: ids are keys)."""
        first, rest = ref.hops[0], ref.hops[1:]
        q = self.fresh("_q")
        params: list[Any] = []
        joins: list[str] = []
        prev = q
        for hop in rest:
            alias = self.fresh("_q")
            frag = self.hop_join(hop, prev, alias)
            joins.append(frag.sql)
            params += frag.params
            prev = alias
        if first.kind == "ids":
            where = f'"{q}"."id" = {self.ph("text")}'
            params.append(first.ids[0])
        else:
            where = f'"{q}"."id" = "{self.alias}"."{first.column}"'
        joined = (" " + " ".join(joins)) if joins else ""
        return prev, f' FROM "{first.table}" AS "{q}"{joined} WHERE {where})', params

    # -------------------------------------------------------------- resolving identifiers

    def resolve(self, operand: Operand) -> Resolved:
        if isinstance(operand, Identifier):
            return self.identifier(operand)
        if isinstance(operand, Text):
            return _Const(_clean(operand.value))
        if isinstance(operand, Number):
            return _Const(operand.value, operand.raw)
        if isinstance(operand, Bool):
            return _Const(operand.value)
        if isinstance(operand, Null):
            return _NULL
        assert isinstance(operand, Call)
        raise self.err(f'unsupported function "{operand.name}()"', operand.pos)

    def identifier(self, ident: Identifier) -> Resolved:
        name = ident.name
        if name[0] == "@":
            macro = _MACROS.get(name)
            if macro is not None:
                return macro(self.current_time())
            head = name.split(".", 1)[0].split(":", 1)[0]
            if head == "@request":
                return self.request_value(ident)
            if head == "@collection":
                return self.collection_path(ident)
            raise self.err(f'unknown identifier "{name}"', ident.pos)
        if name[0] == "#":
            raise self.err(f'unknown identifier "{name}"', ident.pos)
        if "." not in name and ":" not in name:  # the common case: a field of this collection
            return self.path(self.base, [name], "", (), "", ident)
        parts, modifier = self.split(name, ident.pos)
        return self.path(self.base, parts, modifier, (), "", ident)

    def current_time(self) -> datetime:
        now = self.now or datetime.now(UTC)
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)

    def split(self, name: str, pos: int) -> tuple[list[str], str]:
        """`a.b.c:mod` into (["a", "b", "c"], "mod"), validating every part."""
        body, sep, modifier = name.partition(":")
        if sep:
            if ":" in modifier or "." in modifier:
                raise self.err(f'a modifier can only end an identifier, in "{name}"', pos)
            if modifier not in MODIFIERS:
                raise self.err(f'unknown modifier ":{modifier}" in "{name}"', pos)
        parts = body.split(".")
        offset = 0
        for part in parts:
            if not _PART_RE.fullmatch(part):
                raise self.err(f'invalid identifier "{name}"', pos + offset)
            offset += len(part) + 1
        return parts, modifier

    def check_field(self, f: Field, pos: int) -> None:
        if f.type == "password":
            raise self.err(f'field "{f.name}" cannot be used in a {self.what}', pos)
        if f.hidden and not self.allow_hidden:
            raise self.err(f'field "{f.name}" is hidden and cannot be used in a {self.what}', pos)

    def check_depth(self, hops: list[_Hop], ident: Identifier) -> None:
        depth = sum(1 for h in hops if h.kind != "coll")
        if depth > self.limits.max_relation_depth:
            raise self.err(
                f'too many nested relations in "{ident.name}" '
                f"(max {self.limits.max_relation_depth})",
                ident.pos,
            )

    def path(
        self,
        coll: Collection,
        parts: list[str],
        modifier: str,
        start: tuple[_Hop, ...],
        key: str,
        ident: Identifier,
        part_pos: int | None = None,
    ) -> Resolved:
        """Walk `parts` from `coll` through relations, back-relations and into JSON."""
        hops = list(start)
        pos = ident.pos if part_pos is None else part_pos
        for i, part in enumerate(parts[:-1]):
            key = f"{key}.{part}" if key else part
            f = coll.field(part)
            if f is None:
                coll, hop = self.back_relation(coll, part, key, ident.name, pos)
                hops.append(hop)
            else:
                self.check_field(f, pos)
                if isinstance(f, JSONField):
                    return self.json_ref(hops, f, parts[i + 1 :], modifier, pos)
                if not isinstance(f, RelationField):
                    raise self.err(f'field "{part}" is not a relation in "{ident.name}"', pos)
                target = self.relation_target(f, pos)
                if not f.is_multi and i == len(parts) - 2 and parts[-1] == "id":
                    return self.field_ref(hops, coll, f, modifier, pos)
                hops.append(_Hop("rel", target.name, f.name, key, f.is_multi, f.is_multi))
                coll = target
            self.check_depth(hops, ident)
            pos += len(part) + 1
        last = parts[-1]
        f = coll.field(last)
        if f is None:
            where = f' in "{ident.name}"' if len(parts) > 1 or start else ""
            raise self.err(f'unknown field "{last}"{where}', pos)
        self.check_field(f, pos)
        if isinstance(f, JSONField):
            return self.json_ref(hops, f, [], modifier, pos)
        return self.field_ref(hops, coll, f, modifier, pos)

    def back_relation(
        self, coll: Collection, part: str, key: str, name: str, pos: int
    ) -> tuple[Collection, _Hop]:
        """`<collection>_via_<relation field>`: the rows of another collection pointing here."""
        m = _VIA_RE.fullmatch(part)
        if m is None:
            raise self.err(f'unknown field "{part}" in "{name}"', pos)
        target = self.load(m.group(1))
        if target is None:
            raise self.err(f'unknown collection "{m.group(1)}" in back-relation "{part}"', pos)
        f = target.field(m.group(2))
        if not isinstance(f, RelationField):
            raise self.err(f'"{m.group(2)}" is not a relation field of "{target.name}"', pos)
        if f.options.get("collectionId") not in (coll.id, coll.name):
            raise self.err(f'"{target.name}.{f.name}" does not point to "{coll.name}"', pos)
        if f.hidden and not self.allow_hidden:
            raise self.err(f'field "{f.name}" is hidden and cannot be used in a {self.what}', pos)
        self.guard(target, pos)
        self.count_join("back", key, pos)
        return target, _Hop("back", target.name, f.name, key, True, f.is_multi)

    def guard(self, target: Collection, pos: int) -> None:
        """A client filter or sort may read another collection's rows only when anyone may
        list them (listRule ""): otherwise `author.email ~ 'a'` would reveal, one probe at a
        time, values of records the client cannot see. Rules themselves (allow_hidden) and
        superusers are trusted. Stricter than PocketBase, which applies the target's rule."""
        if self.allow_hidden:
            return
        if target.listRule is None or target.listRule.strip() != "":
            raise self.err(
                f'cannot read "{target.name}" in a {self.what}: only collections that anyone '
                "may list can be reached through relations",
                pos,
            )

    def relation_target(self, f: RelationField, pos: int) -> Collection:
        target = self.load(str(f.options.get("collectionId") or ""))
        if target is None:
            raise self.err(f'relation field "{f.name}" points to a missing collection', pos)
        self.guard(target, pos)
        return target

    def field_ref(
        self, hops: list[_Hop], coll: Collection, f: Field, modifier: str, pos: int
    ) -> _Ref:
        multi_valuer = _multi_valued(f)
        if modifier in ("length", "each") and not multi_valuer:
            raise self.err(
                f'":{modifier}" needs a select, relation or file field, not "{f.name}"', pos
            )
        if modifier in ("isset", "changed"):
            raise self.err(f'":{modifier}" can only be used with @request.body fields', pos)
        items = (f.is_multi and modifier != "length") or modifier == "each"
        return _Ref(
            hops=tuple(hops),
            column=f.name,
            kind="text" if multi_valuer else f.storage,
            items=items,
            modifier=modifier if modifier in ("lower", "length") else "",
            array=f.is_multi,
            email_guard=f.name == "email" and coll.type == "auth" and not self.allow_hidden,
            each=modifier == "each",
        )

    def json_ref(
        self, hops: list[_Hop], f: JSONField, keys: list[str], modifier: str, pos: int
    ) -> _Ref:
        if modifier not in ("", "lower"):
            raise self.err(f'":{modifier}" cannot be used with the JSON field "{f.name}"', pos)
        return _Ref(tuple(hops), f.name, "json", json_path=tuple(keys), modifier=modifier)

    def collection_path(self, ident: Identifier) -> Resolved:
        m = _COLLECTION_RE.fullmatch(ident.name)
        if m is None:
            raise self.err(
                f'invalid "{ident.name}", expected @collection.<name>.<field>', ident.pos
            )
        target = self.load(m.group(1))
        if target is None:
            raise self.err(f'unknown collection "{m.group(1)}"', ident.pos)
        self.guard(target, ident.pos)
        key = "@collection." + m.group(1) + (":" + m.group(2) if m.group(2) else "")
        self.count_join("coll", key, ident.pos)
        hop = _Hop("coll", target.name, "", key, True)
        rest_pos = ident.pos + len(ident.name) - len(m.group(3))
        parts, modifier = self.split(m.group(3), rest_pos)
        return self.path(target, parts, modifier, (hop,), key, ident, rest_pos)

    # -------------------------------------------------------------- @request.*

    def request_value(self, ident: Identifier) -> Resolved:
        body, _, modifier = ident.name.partition(":")
        if modifier and (modifier not in MODIFIERS or ":" in modifier or "." in modifier):
            raise self.err(f'unknown modifier ":{modifier}" in "{ident.name}"', ident.pos)
        parts = body.split(".")
        sub = parts[1] if len(parts) > 1 else ""
        if sub not in ("auth", "query", "headers", "body", "method", "context") or not all(
            _PART_RE.fullmatch(p) for p in parts[1:]
        ):
            raise self.err(f'unknown identifier "{ident.name}"', ident.pos)
        if self.request is None:
            return _Const(False) if modifier == "isset" else _NULL
        if modifier == "changed":  # only reached through _expand_changed's rewrite
            return self.sent_as_stored(parts[2] if len(parts) == 3 else "", ident)
        if sub == "auth":
            return self.request_auth(parts[2:], modifier, ident)
        if sub == "body" and len(parts) >= 3:
            f = self.base.field(parts[2])
            found, value = _lookup(self.request, parts[1:3])
            if isinstance(f, RelationField) and len(parts) > 3:
                return self.ids_path(
                    f, value, parts[3:], modifier, "@request.body." + parts[2], ident
                )
            if len(parts) == 3 and f is not None:
                return self.static(found, value, modifier, ident, items=f.is_multi)
        found, value = _lookup(self.request, parts[1:])
        return self.static(found, value, modifier, ident, items=False)

    def sent_as_stored(self, name: str, ident: Identifier) -> Resolved:
        f = self.base.field(name)
        if f is None or f.type == "password":
            raise self.err(f'unknown field "{name}" in "{ident.name}"', ident.pos)
        found, value = _lookup(self.request, ["body", name])
        if not found:
            return _NULL
        try:
            value = f.normalize(value)
        except FieldError:
            return _Const(orjson.dumps(value).decode() if isinstance(value, list) else str(value))
        if f.storage == "json":
            return _Const(orjson.dumps(value).decode())
        if f.storage == "bool":
            return _Const(bool(value))
        if f.storage == "number":
            return _Const(float(value or 0), _num_text(float(value or 0)))
        return _Const("" if value is None else str(value))

    def static(
        self, found: bool, value: Any, modifier: str, ident: Identifier, items: bool
    ) -> Resolved:
        """A request value; lists of multi-valued fields (and `:each`) compare item by item,
        other lists as their JSON text (as PocketBase)."""
        if modifier == "isset":
            return _Const(found)
        if modifier == "length":
            n = 0 if value is None else len(value) if isinstance(value, list) else 1
            return _Const(float(n), str(n))
        lower = modifier == "lower"
        if modifier == "each" or (items and isinstance(value, list)):
            seq = value if isinstance(value, list) else ([] if value is None else [value])
            if len(seq) > MAX_REQUEST_IDS:
                raise self.err(f'too many values in "{ident.name}"', ident.pos)
            return _ConstList(tuple(_to_const(v, lower) for v in seq))
        return _to_const(value, lower)

    def request_auth(self, rest: list[str], modifier: str, ident: Identifier) -> Resolved:
        auth = self.request.get("auth") if self.request else None
        if not isinstance(auth, dict) or not auth.get("id"):
            return _Const(False) if modifier == "isset" else _NULL
        if not rest:
            raise self.err('expected a field after "@request.auth"', ident.pos)
        coll = self.load(str(auth.get("collectionId") or auth.get("collectionName") or ""))
        first = rest[0]
        f = coll.field(first) if coll is not None else None
        if f is not None and (f.type == "password" or (f.hidden and not self.allow_hidden)):
            # a client filter must not probe the asker's own hidden fields (rules may)
            raise self.err(f'field "{first}" cannot be used in a {self.what}', ident.pos)
        row = None
        if coll is not None:
            row = _Hop("ids", coll.name, "", "@request.auth", False, ids=(str(auth["id"]),))
        if len(rest) == 1 and (first in auth or modifier == "isset"):
            return self.static(first in auth, auth.get(first), modifier, ident, items=_is_multi(f))
        if first in auth and len(rest) > 1:
            if isinstance(f, RelationField):
                key = "@request.auth." + first
                return self.ids_path(f, auth[first], rest[1:], modifier, key, ident)
            found, value = _lookup(auth, rest)
            return self.static(found, value, modifier, ident, items=False)
        if f is not None and coll is not None and row is not None:
            return self.path(coll, rest, modifier, (row,), "@request.auth", ident)
        return _Const(False) if modifier == "isset" else _NULL

    def ids_path(
        self,
        f: RelationField,
        value: Any,
        rest: list[str],
        modifier: str,
        key: str,
        ident: Identifier,
    ) -> Resolved:
        """Follow a relation from ids known at compile time (@request.body/auth values)."""
        raw = value if isinstance(value, list) else [value]
        ids = tuple(dict.fromkeys(_clean(v) for v in raw if isinstance(v, str) and v))
        if not ids:
            return _Const(False) if modifier == "isset" else _NULL
        if len(ids) > MAX_REQUEST_IDS:
            raise self.err(f'too many ids in "{ident.name}"', ident.pos)
        target = self.relation_target(f, ident.pos)
        multi = f.is_multi and len(ids) > 1
        hop = _Hop("ids", target.name, "", key, multi, ids=ids if multi else ids[:1])
        return self.path(target, rest, modifier, (hop,), key, ident)

    # -------------------------------------------------------------- sort

    def sort_expr(self, name: str, desc: bool, pos: int) -> str:
        if name == "@random":
            return "RANDOM()"
        direction = " DESC" if desc else " ASC"
        if name == "@rowid":
            return (f'"{self.alias}"."_rowid"' if self.pg else f'"{self.alias}".rowid') + direction
        ident = Identifier(name, pos)
        parts, modifier = self.split(name, pos)
        if modifier in ("each", "isset", "changed"):
            raise self.err(f'":{modifier}" cannot be used to sort', pos)
        ref = self.path(self.base, parts, modifier, (), "", ident)
        if not isinstance(ref, _Ref):
            raise self.err(f'cannot sort by "{name}"', pos)
        if ref.multi_hops:
            raise self.err(f'cannot sort by "{name}": it goes through a multi-valued relation', pos)
        ref = replace(ref, items=False)  # multi-valued fields sort by their JSON text
        val = self.terminal(ref, self.scalar_wrap(ref) if ref.hops else None)
        frag = self.render(val, None)
        nulls = ""
        if self.pg and val.nullable:
            nulls = " NULLS LAST" if desc else " NULLS FIRST"  # SQLite's order of NULLs
        return frag.sql + direction + nulls


def _raw_multi(ref: _Const | _Ref, other: _Const | _Ref) -> _Const | _Ref:
    """PocketBase compares a bare multi-valued field with a plain operator as its stored JSON
    text (`tags ~ "x"` finds "x" in any item); `?` operators and `:each` go item by item.
    Comparing with null or "" keeps the item form so it still tests for emptiness."""
    if not isinstance(ref, _Ref) or not ref.items or not ref.array or ref.each:
        return ref
    if isinstance(other, _Const) and other.empty:
        return ref
    return replace(ref, items=False)


def _is_multi(f: Field | None) -> bool:
    return f is not None and f.is_multi


def _items(x: Resolved) -> tuple[_Const | _Ref, ...]:
    if isinstance(x, _ConstList):
        return x.items or (_NULL,)
    return (x,)


def _plain(node: _CC | _CLogical) -> _Frag:
    """A sub-tree without shared scopes: just SQL glued together."""
    if isinstance(node, _CC):
        return _Frag(node.sql, node.params)
    glue = " OR " if node.op == "||" else " AND "
    return _join_frags([_plain(child) for child in node.items], glue)


def _join_frags(parts: list[_Frag], glue: str) -> _Frag:
    if len(parts) == 1:
        return parts[0]
    return _Frag("(" + glue.join(p.sql for p in parts) + ")", [x for p in parts for x in p.params])


def _collect_keys(node: _CC | _CLogical, out: set[str]) -> None:
    if isinstance(node, _CC):
        out.update(node.keys)
        return
    for child in node.items:
        _collect_keys(child, out)


def _group_by_roots(items: list[_CC | _CLogical], bound: frozenset[str]) -> list[list[int]]:
    """Indexes of AND-ed items, grouped when they share a not-yet-bound scope (in order)."""
    groups: list[tuple[set[str], list[int]]] = []
    for i, item in enumerate(items):
        free = set(item.roots - bound)
        merged: tuple[set[str], list[int]] = (free, [i])
        if free:
            keep = []
            for g in groups:
                if g[0] & merged[0]:
                    merged = (g[0] | merged[0], sorted(g[1] + merged[1]))
                else:
                    keep.append(g)
            groups = keep
        groups.append(merged)
    return [g[1] for g in sorted(groups, key=lambda g: g[1][0])]


def _sort_positions(text: str) -> list[int]:
    out, offset = [], 0
    for part in text.split(","):
        out.append(offset + len(part) - len(part.lstrip()))
        offset += len(part) + 1
    return out


# ----------------------------------------------------------------------------- public API


def compile_filter(
    text: str,
    collection: Collection,
    registry: Registry | None,
    dialect: str,
    *,
    alias: str = "_r",
    request: dict[str, Any] | None = None,
    limits: FilterLimits | None = None,
    now: datetime | None = None,
    allow_hidden: bool = False,
) -> tuple[str, list[Any]]:
    """Compile a filter to `(sql, params)`: a boolean SQL expression over `"<alias>"`.

    `registry.get(id_or_name)` resolves related collections; `request` feeds `@request.*`
    (missing keys are null); `now` fixes the date macros (UTC). Any problem with the
    filter raises ApiError 400 saying what and where.
    """
    lim = limits or DEFAULT_LIMITS
    if not isinstance(text, str):
        raise bad_request("Invalid filter: expected a string.")
    if len(text) > lim.max_length:
        raise bad_request(
            f"Invalid filter: the filter is too long ({len(text)} characters, "
            f"max {lim.max_length})."
        )
    tree = _parse_cached(text, lim)
    if isinstance(tree, FilterSyntaxError):
        raise bad_request(f"Invalid filter: {tree.message}.")
    compiler = _Compiler(collection, registry, dialect, alias, request, now, allow_hidden, lim)
    return compiler.compile(tree)


@dataclass(frozen=True, slots=True)
class Refs:
    """What a filter or rule reads beyond its own collection's relations (see `references`)."""

    collections: frozenset[str] = frozenset()  # `@collection.<id or name>` targets
    auth: bool = False  # `@request.auth.*`: the asker's record and whatever it relates to
    headers: bool = False  # `@request.headers.*`: differs per request
    clock: bool = False  # date macros (and any other `@` identifier): differs over time


NO_REFS = Refs()


@lru_cache(maxsize=2048)
def references(text: str, limits: FilterLimits = DEFAULT_LIMITS) -> Refs | None:
    """Every identifier of the compiler's own parse of `text` that leads outside the base
    collection's relation paths; None when `text` does not parse (the compile fails too).
    Request values other than auth and headers (query, body, method) are fixed by the URL."""
    tree = _parse_cached(text, limits)
    if isinstance(tree, FilterSyntaxError):
        return None
    names: set[str] = set()
    flags = {"auth": False, "headers": False, "clock": False}
    todo: list[Node | Operand] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, Logical):
            todo += node.items
        elif isinstance(node, Comparison):
            todo += (node.left, node.right)
        elif isinstance(node, Call):
            todo += node.args
        elif isinstance(node, Identifier) and node.name[0] == "@":
            head, _, rest = node.name.partition(".")
            head = head.partition(":")[0]
            first = rest.partition(".")[0].partition(":")[0]  # without alias or modifier
            if head == "@collection":
                names.add(first)
            elif head == "@request" and first in ("auth", "headers"):
                flags[first] = True
            elif head != "@request":
                flags["clock"] = True
    return Refs(frozenset(names), **flags)


def compile_sort(
    text: str,
    collection: Collection,
    registry: Registry | None,
    dialect: str,
    alias: str = "_r",
    allow_hidden: bool = False,
    *,
    max_fields: int = 8,
) -> str:
    """Compile `-a,+b.c,@random` to an ORDER BY body (no keyword), or "" for no sort.

    Sort keys never need parameters; paths through single relations become scalar
    subqueries and multi-valued relation paths are rejected (400).
    """
    if not isinstance(text, str):
        raise bad_request("Invalid sort: expected a string.")
    try:
        entries = parse_sort(text, max_fields)
    except FilterSyntaxError as exc:
        raise bad_request(f"Invalid sort: {exc.message}.") from None
    compiler = _Compiler(
        collection, registry, dialect, alias, None, None, allow_hidden, DEFAULT_LIMITS, "sort"
    )
    positions = _sort_positions(text)
    parts = [compiler.sort_expr(name, desc, positions[i]) for i, (name, desc) in enumerate(entries)]
    return ", ".join(parts)
