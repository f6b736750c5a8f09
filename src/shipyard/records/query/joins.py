"""Reaching the rows a `Ref` reads, and reading them: joins for each kind of hop, the three
ways a path is joined, and the SQL term for the column at its end.

A path through single relations only is a correlated scalar subquery (ids are keys, so at
most one row). Otherwise its rows are joined, either in the comparison's own subquery (plain
operators: "every item matches") or in the filter's shared scope (`?`-operators: every
`?`-comparison on the same path prefix refers to the same related row, as PocketBase's
LEFT JOINs do); assembly later places the shared scope's EXISTS.
"""

from __future__ import annotations

import re
from typing import Any

from shipyard.records.query.dialect import Dialect, dialect_of
from shipyard.records.query.model import Const, Frag, Hop, Ref, ScopeJoin, Val

_ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def new_rows(dialect: str, alias: str) -> Rows:
    """Row access for one compile; a bad dialect or alias is the caller's bug, not a 400."""
    d = dialect_of(dialect)
    if not _ALIAS_RE.fullmatch(alias):
        raise ValueError(f"invalid table alias {alias!r}")
    return Rows(d, alias)


class Rows:
    """The row aliases of one compile: fresh names, and the shared scope's joins by key."""

    __slots__ = ("alias", "counter", "d", "scope")

    def __init__(self, d: Dialect, alias: str) -> None:
        self.d = d
        self.alias = alias  # the main row
        self.counter = 0
        self.scope: dict[str, ScopeJoin] = {}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -------------------------------------------------------------- operands

    def operand(self, x: Const | Ref, mode_any: bool, joins: list[Frag], keys: list[str]) -> Val:
        """Render one side: rows it needs go to the shared scope (`?`, through multi-valued
        paths) or to this comparison's own subquery (`joins`)."""
        if isinstance(x, Const):
            return Val(x.kind if not x.lower else "text", False, const=x)
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
        joins.append(Frag(self.d.each_join(container, each), []))
        term = f'"{each}"."value"'
        if x.modifier == "lower":
            term = f"LOWER({term})"
        return Val("text", True, term=term)

    def terminal(
        self, ref: Ref, wrap: tuple[str, str, list[Any]] | None, alias: str | None = None
    ) -> Val:
        """The column a path ends in, read from `alias` (or inside the scalar `wrap`)."""
        d = self.d
        alias = alias or (wrap[0] if wrap else self.alias)
        col = f'"{alias}"."{ref.column}"'
        if ref.email_guard:
            col = f'(CASE WHEN "{alias}"."emailVisibility" THEN {col} END)'
        nullable = bool(ref.hops) or ref.email_guard
        if ref.modifier == "length":
            term, kind = d.length(col, ref.array), "number"
        elif ref.json_path is not None:
            term, kind, nullable = d.json_extract(col, ref.json_path), "json", True
        else:
            term, kind = col, ref.kind
        if ref.modifier == "lower":
            term, kind = f"LOWER({d.convert(term, kind, 'text', loose=True)})", "text"
        if wrap is None:
            return Val(kind, nullable, term=term)
        return Val(kind, True, term=term, prefix="(SELECT ", suffix=wrap[1], params=tuple(wrap[2]))

    # -------------------------------------------------------------- joins

    def hop_join(self, hop: Hop, prev: str, alias: str) -> Frag:
        d = self.d
        table = f'"{hop.table}" AS "{alias}"'
        if hop.kind == "rel":
            if not hop.array:
                return Frag(f'LEFT JOIN {table} ON "{alias}"."id" = "{prev}"."{hop.column}"', [])
            each = alias + "v"
            join = d.each_join(f'"{prev}"."{hop.column}"', each)
            return Frag(f'{join} LEFT JOIN {table} ON "{alias}"."id" = "{each}"."value"', [])
        if hop.kind == "back":
            if not hop.array:
                return Frag(f'LEFT JOIN {table} ON "{alias}"."{hop.column}" = "{prev}"."id"', [])
            values = d.array_items(f'"{alias}"."{hop.column}"', alias + "v")
            return Frag(f'LEFT JOIN {table} ON "{prev}"."id" IN ({values})', [])
        if hop.kind == "coll":
            return Frag(f"LEFT JOIN {table} ON 1=1", [])
        marks = ", ".join(d.ph("text") for _ in hop.ids)
        return Frag(f'LEFT JOIN {table} ON "{alias}"."id" IN ({marks})', list(hop.ids))

    def local_chain(self, hops: tuple[Hop, ...], joins: list[Frag]) -> str:
        """Join `hops` for one comparison only; the alias of the last row."""
        prev = self.alias
        for hop in hops:
            alias = self.fresh("_j")
            joins.append(self.hop_join(hop, prev, alias))
            prev = alias
        return prev

    def scope_chain(self, hops: tuple[Hop, ...], keys: list[str]) -> str:
        """Join `hops` in the shared scope (once per path key); the alias of the last row."""
        prev = self.alias
        root = hops[0].key
        for hop in hops:
            entry = self.scope.get(hop.key)
            if entry is None:
                alias = self.fresh("_s")
                entry = ScopeJoin(alias, root, self.hop_join(hop, prev, alias), len(self.scope))
                self.scope[hop.key] = entry
            if hop.key not in keys:
                keys.append(hop.key)
            prev = entry.alias
        return prev

    def scalar_wrap(self, ref: Ref) -> tuple[str, str, list[Any]]:
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
            where = f'"{q}"."id" = {self.d.ph("text")}'
            params.append(first.ids[0])
        else:
            where = f'"{q}"."id" = "{self.alias}"."{first.column}"'
        joined = (" " + " ".join(joins)) if joins else ""
        return prev, f' FROM "{first.table}" AS "{q}"{joined} WHERE {where})', params
