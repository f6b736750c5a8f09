"""Operators on two operands ready for SQL: `= != > >= < <= ~ !~`, with PocketBase's empty
handling and the type both sides compare as.

* `= null` and `= ""` compare with the field's zero value ('' / 0 / false / JSON null),
  which is what PocketBase stores instead of NULL; a missing related row counts as zero.
* Every constant is a parameter, typed for PostgreSQL (see `values.common_kind`).
"""

from __future__ import annotations

from dataclasses import replace

from shipyard.records.query.dialect import PG_TYPES, ZERO, Dialect
from shipyard.records.query.model import NULL, Const, ConstList, Frag, Ref, Resolved, Val
from shipyard.records.query.values import common_kind, convert_const, like_pattern

TRUE, FALSE = "1=1", "1=0"


def items(x: Resolved) -> tuple[Const | Ref, ...]:
    """The operands a side stands for: each item of a list constant (an empty list is one
    null), else the side itself."""
    if isinstance(x, ConstList):
        return x.items or (NULL,)
    return (x,)


def raw_multi(ref: Const | Ref, other: Const | Ref) -> Const | Ref:
    """PocketBase compares a bare multi-valued field with a plain operator as its stored JSON
    text (`tags ~ "x"` finds "x" in any item); `?` operators and `:each` go item by item.
    Comparing with null or "" keeps the item form so it still tests for emptiness."""
    if not isinstance(ref, Ref) or not ref.items or not ref.array or ref.each:
        return ref
    if isinstance(other, Const) and other.empty:
        return ref
    return replace(ref, items=False)


def render(d: Dialect, v: Val, kind: str | None, loose: bool = False) -> Frag:
    """The operand as SQL of type `kind` (None: as stored, for ORDER BY)."""
    if v.const is not None:
        c = v.const
        target = kind or c.kind
        sql = d.ph(target if target in PG_TYPES else "text")
        if c.lower and target == "text":
            sql = f"LOWER({sql})"
        return Frag(sql, [convert_const(c, target)])
    term = v.term if kind is None else d.convert(v.term, v.kind, kind, loose)
    return Frag(v.prefix + term + v.suffix, list(v.params))


def condition(d: Dialect, op: str, a: Val, b: Val) -> Frag:
    """`a op b` for one pair of operands (`op` without its `?`)."""
    if op in ("=", "!="):
        return equality(d, op == "=", a, b)
    if a.kind == "null" or b.kind == "null":
        return Frag(FALSE, [])
    if op in ("~", "!~"):
        return like(d, op == "!~", a, b)
    kind = common_kind(a, b)
    x, y = render(d, a, kind), render(d, b, kind)
    return Frag(f"{x.sql} {op} {y.sql}", x.params + y.params)


def equality(d: Dialect, eq: bool, a: Val, b: Val) -> Frag:
    """`=`/`!=` with PocketBase's empty handling: '' and null are the same, and a
    field compared with them matches its zero value (or a missing related row)."""
    a_empty = a.const is not None and a.const.empty
    b_empty = b.const is not None and b.const.empty
    if a_empty and b_empty:
        return Frag(TRUE if eq else FALSE, [])
    if a_empty or b_empty:
        other, empty = (b, a) if a_empty else (a, b)
        if other.const is not None:
            return Frag(FALSE if eq else TRUE, [])
        assert empty.const is not None  # noqa: S101  (narrows a type for mypy; established above)
        return zero_check(d, eq, other, empty.const.value is None)
    kind = common_kind(a, b)
    x, y = render(d, a, kind), render(d, b, kind)
    params = x.params + y.params
    if a.const is not None or b.const is not None:
        if eq:
            return Frag(f"{x.sql} = {y.sql}", params)
        op = d.is_not if a.nullable or b.nullable else "<>"
        return Frag(f"{x.sql} {op} {y.sql}", params)
    if "json" in (a.kind, b.kind):
        op = d.is_ if eq else d.is_not
        return Frag(f"{x.sql} {op} {y.sql}", params)
    xs = f"COALESCE({x.sql}, {ZERO[kind]})" if a.nullable else x.sql
    ys = f"COALESCE({y.sql}, {ZERO[kind]})" if b.nullable else y.sql
    return Frag(f"{xs} {'=' if eq else '<>'} {ys}", params)


def zero_check(d: Dialect, eq: bool, v: Val, null_literal: bool) -> Frag:
    """Whether `v` holds its zero value (JSON: is null, or for "" empty text)."""
    if v.kind == "json":
        if null_literal:
            x = render(d, v, "json")
            return Frag(f"{x.sql} IS {'' if eq else 'NOT '}NULL", x.params)
        x = render(d, v, "text")
        return Frag(f"{x.sql} {'=' if eq else d.is_not} ''", x.params)
    x = render(d, v, v.kind)
    zero = ZERO[v.kind]
    sql = f"COALESCE({x.sql}, {zero})" if v.nullable else x.sql
    return Frag(f"{sql} {'=' if eq else '<>'} {zero}", x.params)


def like(d: Dialect, negate: bool, a: Val, b: Val) -> Frag:
    """`~`: a constant is a pattern (see `values.like_pattern`), a field is "contains"."""
    x = render(d, a, "text", loose=True)
    if b.const is not None:
        pattern = like_pattern(str(convert_const(b.const, "text")))
        y = Frag(d.ph("text"), [pattern])
        if b.const.lower:
            y.sql = f"LOWER({y.sql})"
    else:
        inner = render(d, b, "text", loose=True)
        p = d.ph("text")
        y = Frag(f"({p} || {inner.sql} || {p})", ["%", *inner.params, "%"])
    op = ("NOT " if negate else "") + ("ILIKE" if d.pg else "LIKE")
    return Frag(f"{x.sql} {op} {y.sql} ESCAPE {d.ph('text')}", [*x.params, *y.params, "\\"])
