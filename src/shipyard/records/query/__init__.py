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

The modules, in the order a filter meets them: `parse` (cached parse, `references`),
`paths` (identifiers to field paths) and `request` (`@request.*`), `values` (constants and
types), `joins` (rows and column terms), `operators`, `scopes` (placing shared scopes),
`dialect` (SQLite/PostgreSQL differences), `compiler` (the walk, `compile_filter`); `sort`
parses and compiles sorts; `model` holds the limits and the values passed between them.
"""

from __future__ import annotations

from shipyard.records.query.compiler import compile_filter
from shipyard.records.query.model import DEFAULT_LIMITS, FilterLimits, Registry
from shipyard.records.query.parse import NO_REFS, Refs, references
from shipyard.records.query.parse import parse_cached as _parse_cached  # noqa: F401  (tests)
from shipyard.records.query.sort import (
    DEFAULT_MAX_SORT_FIELDS,
    Sort,
    SortKind,
    compile_sort,
    is_random,
    parse_sort,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_SORT_FIELDS",
    "NO_REFS",
    "FilterLimits",
    "Refs",
    "Registry",
    "Sort",
    "SortKind",
    "compile_filter",
    "compile_sort",
    "is_random",
    "parse_sort",
    "references",
]
