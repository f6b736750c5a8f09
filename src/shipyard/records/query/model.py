"""What the filter compiler works with: the limits a filter is held to, and the values that
stand between the parse tree and the SQL text.

An operand resolves to a `Const` (known at compile time: a literal, a date macro, an
`@request.*` value, always sent as a parameter), a `ConstList` (a list-valued request value,
compared item by item) or a `Ref` (a path of `Hop`s from the main row, then a column read
from the last row). Each side of a comparison then becomes a `Val` ready for SQL; a compiled
comparison is a `CC` that remembers the shared-scope joins it needs, and `CLogical` nodes
keep them until assembly places every scope's EXISTS and glues all into one `Frag`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.records.collections import Collection


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
NO_ROOTS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Const:
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


NULL = Const(None)


@dataclass(frozen=True, slots=True)
class ConstList:
    """A list-valued constant compared item by item (`?` any item, plain every item)."""

    items: tuple[Const, ...]


@dataclass(frozen=True, slots=True)
class Hop:
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
class Ref:
    """A resolved field path: hops from the main row, then a value read from the last row."""

    hops: tuple[Hop, ...]
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


Resolved = Const | ConstList | Ref


@dataclass(slots=True)
class Val:
    """An operand ready for SQL: a constant, or a parameter-free term over a row alias,
    optionally wrapped in a scalar subquery (whose parameters live in the wrapper)."""

    kind: str
    nullable: bool
    const: Const | None = None
    term: str = ""
    prefix: str = ""
    suffix: str = ""
    params: tuple[Any, ...] = ()


@dataclass(slots=True)
class Frag:
    """A piece of SQL and its parameters, in order."""

    sql: str
    params: list[Any]


@dataclass(slots=True)
class CC:
    """A compiled comparison and the shared-scope joins it needs."""

    sql: str
    params: list[Any]
    keys: tuple[str, ...]
    roots: frozenset[str]


@dataclass(slots=True)
class CLogical:
    """A compiled `&&`/`||` whose items still wait for their shared scopes to be placed."""

    op: str
    items: list[CC | CLogical]
    roots: frozenset[str]


Tree = CC | CLogical


@dataclass(slots=True)
class ScopeJoin:
    """A join of the shared scope: every `?`-comparison on the path `key` reads its row."""

    alias: str
    root: str
    frag: Frag
    order: int
