"""PocketBase's sort language (`-a,+b.c,@random`): parsed to typed `Sort` keys, then
compiled to an ORDER BY body.

Callers decide by the keys, never by the SQL text: whether the order is random (no
tie-breaker, nothing to page by), which way the last key runs (the tie-breaker follows it).
The number of keys is bounded here, at the parse, so every path that sorts (offset pages,
cursor pages, the read gateway) refuses the same sorts with the same 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from typing import NamedTuple

from shipyard.kernel.errors import bad_request
from shipyard.records.collections import Collection
from shipyard.records.query.joins import Rows, new_rows
from shipyard.records.query.model import DEFAULT_LIMITS, Ref, Registry
from shipyard.records.query.operators import render
from shipyard.records.query.paths import Paths
from shipyard.tools import filterexpr
from shipyard.tools.filterexpr import FilterSyntaxError, Identifier

DEFAULT_MAX_SORT_FIELDS = 8  # the settings' default (max_sort_fields)


class SortKind(StrEnum):
    FIELD = "field"  # a field path of the collection (through single relations, into JSON)
    RANDOM = "random"  # `@random`: a new order for every query
    ROWID = "rowid"  # `@rowid`: insertion order


class Sort(NamedTuple):
    """One sort key as the client wrote it."""

    field: str  # the path with its modifier (`author.name`, `title:lower`) or `@random`/`@rowid`
    descending: bool = False
    kind: SortKind = SortKind.FIELD
    pos: int = 0  # where the key starts in the sort text, for error messages


_KINDS = {"@random": SortKind.RANDOM, "@rowid": SortKind.ROWID}


def parse_sort(text: str, max_fields: int = DEFAULT_MAX_SORT_FIELDS) -> tuple[Sort, ...]:
    """The keys of a sort text ("" gives none); a 400 for anything malformed or for more
    than `max_fields` keys."""
    if not isinstance(text, str):
        raise bad_request("Invalid sort: expected a string.")
    try:
        entries = filterexpr.parse_sort(text, max_fields)
    except FilterSyntaxError as exc:
        raise bad_request(f"Invalid sort: {exc.message}.") from None
    if not entries:
        return ()
    positions = _positions(text)
    return tuple(
        Sort(name, desc, _KINDS.get(name, SortKind.FIELD), positions[i])
        for i, (name, desc) in enumerate(entries)
    )


def is_random(sorts: Sequence[Sort]) -> bool:
    """Whether the order is random: it has no tie-breaker and no position to resume from."""
    return any(s.kind is SortKind.RANDOM for s in sorts)


def compile_sort(
    sort: str | Sequence[Sort],
    collection: Collection,
    registry: Registry | None,
    dialect: str,
    alias: str = "_r",
    allow_hidden: bool = False,
    *,
    max_fields: int = DEFAULT_MAX_SORT_FIELDS,
) -> str:
    """Compile `-a,+b.c,@random` (or its parsed keys) to an ORDER BY body (no keyword), or
    "" for no sort. `max_fields` bounds a text; parsed keys were bounded by their parse.

    Sort keys never need parameters; paths through single relations become scalar
    subqueries and multi-valued relation paths are rejected (400).
    """
    if isinstance(sort, str):
        sorts: Sequence[Sort] = parse_sort(sort, max_fields)
    elif isinstance(sort, (tuple, list)):
        sorts = sort
    else:
        raise bad_request("Invalid sort: expected a string.")
    if not sorts:  # the common case of a list page
        return ""
    rows = new_rows(dialect, alias)
    paths = Paths(collection, registry, allow_hidden, DEFAULT_LIMITS, "sort")
    return ", ".join(_sort_expr(paths, rows, key) for key in sorts)


def _sort_expr(paths: Paths, rows: Rows, key: Sort) -> str:
    if key.kind is SortKind.RANDOM:
        return "RANDOM()"
    direction = " DESC" if key.descending else " ASC"
    if key.kind is SortKind.ROWID:
        rowid = f'"{rows.alias}"."_rowid"' if rows.d.pg else f'"{rows.alias}".rowid'
        return rowid + direction
    name, pos = key.field, key.pos
    ident = Identifier(name, pos)
    parts, modifier = paths.split(name, pos)
    if modifier in ("each", "isset", "changed"):
        raise paths.err(f'":{modifier}" cannot be used to sort', pos)
    ref = paths.path(paths.base, parts, modifier, (), "", ident)
    if not isinstance(ref, Ref):
        raise paths.err(f'cannot sort by "{name}"', pos)
    if ref.multi_hops:
        raise paths.err(f'cannot sort by "{name}": it goes through a multi-valued relation', pos)
    ref = replace(ref, items=False)  # multi-valued fields sort by their JSON text
    val = rows.terminal(ref, rows.scalar_wrap(ref) if ref.hops else None)
    frag = render(rows.d, val, None)
    nulls = ""
    if rows.d.pg and val.nullable:
        nulls = " NULLS LAST" if key.descending else " NULLS FIRST"  # SQLite's order of NULLs
    return frag.sql + direction + nulls


def _positions(text: str) -> list[int]:
    """Where each comma-separated key starts (after its leading blanks)."""
    out, offset = [], 0
    for part in text.split(","):
        out.append(offset + len(part) - len(part.lstrip()))
        offset += len(part) + 1
    return out
