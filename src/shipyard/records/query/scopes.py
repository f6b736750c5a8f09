"""Assembly: the compiled tree into one SQL expression, with each shared scope's `EXISTS`
placed at the smallest sub-expression that needs it, so plain conditions stay sargable.

Valid because every scope join is a LEFT JOIN (never empty): EXISTS distributes over OR,
and over AND between parts that use disjoint scopes.
"""

from __future__ import annotations

from shipyard.records.query.joins import Rows
from shipyard.records.query.model import CC, Frag, Tree


def assemble(rows: Rows, node: Tree, bound: frozenset[str]) -> Frag:
    """`node` as SQL where the scopes in `bound` are already joined around it."""
    if not node.roots:
        return _plain(node)
    if isinstance(node, CC):
        free = node.roots - bound
        if not free:
            return Frag(node.sql, node.params)
        return _scope_exists(rows, free, [node], Frag(node.sql, node.params))
    if node.op == "||":
        parts = [assemble(rows, child, bound) for child in node.items]
        return _join_frags(parts, " OR ")
    return _join_frags(_assemble_and(rows, node.items, bound), " AND ")


def _assemble_and(rows: Rows, items: list[Tree], bound: frozenset[str]) -> list[Frag]:
    groups = _group_by_roots(items, bound)
    out: list[Frag] = []
    for members in groups:
        if len(members) == 1:
            out.append(assemble(rows, items[members[0]], bound))
            continue
        children = [items[i] for i in members]
        roots = frozenset().union(*(c.roots for c in children)) - bound
        inner = _join_frags([assemble(rows, c, bound | roots) for c in children], " AND ")
        out.append(_scope_exists(rows, roots, children, inner))
    return out


def _scope_exists(rows: Rows, roots: frozenset[str], nodes: list[Tree], inner: Frag) -> Frag:
    keys: set[str] = set()
    for node in nodes:
        _collect_keys(node, keys)
    joins = sorted(
        (rows.scope[k] for k in keys if rows.scope[k].root in roots), key=lambda j: j.order
    )
    d = rows.fresh("_t")
    sql = " ".join(j.frag.sql for j in joins)
    params = [p for j in joins for p in j.frag.params]
    return Frag(
        f'EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {sql} WHERE {inner.sql})',
        params + inner.params,
    )


def _plain(node: Tree) -> Frag:
    """A sub-tree without shared scopes: just SQL glued together."""
    if isinstance(node, CC):
        return Frag(node.sql, node.params)
    glue = " OR " if node.op == "||" else " AND "
    return _join_frags([_plain(child) for child in node.items], glue)


def _join_frags(parts: list[Frag], glue: str) -> Frag:
    if len(parts) == 1:
        return parts[0]
    return Frag("(" + glue.join(p.sql for p in parts) + ")", [x for p in parts for x in p.params])


def _collect_keys(node: Tree, out: set[str]) -> None:
    if isinstance(node, CC):
        out.update(node.keys)
        return
    for child in node.items:
        _collect_keys(child, out)


def _group_by_roots(items: list[Tree], bound: frozenset[str]) -> list[list[int]]:
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
