"""The filter compiler: a parsed filter to one boolean SQL expression over the main row.

One compile composes the parts that hold each concern: `Paths` (identifiers to field paths,
and what the author may read), `RequestValues` (`@request.*`), `Rows` (joins and column
terms, fresh aliases, the shared scope), the operators and the assembly of scopes. What is
left here is the walk: resolve both sides of each comparison, expand list constants, and
quantify paths through row sets (`?`: some row matches, `EXISTS`; plain: every row does,
`NOT EXISTS` of a row that does not).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.records.collections import Collection
from shipyard.records.query.joins import Rows, new_rows
from shipyard.records.query.model import (
    CC,
    DEFAULT_LIMITS,
    MAX_EXPANDED_COMPARISONS,
    NO_ROOTS,
    NULL,
    CLogical,
    Const,
    ConstList,
    FilterLimits,
    Frag,
    Ref,
    Registry,
    Resolved,
    Tree,
)
from shipyard.records.query.operators import condition, items, raw_multi
from shipyard.records.query.parse import parse_cached
from shipyard.records.query.paths import Paths
from shipyard.records.query.request import RequestValues
from shipyard.records.query.scopes import assemble
from shipyard.records.query.values import MACROS, clean
from shipyard.tools.filterexpr import (
    Bool,
    Call,
    Comparison,
    FilterSyntaxError,
    Identifier,
    Node,
    Null,
    Number,
    Operand,
    Text,
)


class Compiler:
    __slots__ = ("comparisons", "now", "paths", "request", "rows")

    def __init__(
        self, paths: Paths, request: RequestValues, rows: Rows, now: datetime | None
    ) -> None:
        self.paths = paths
        self.request = request
        self.rows = rows
        self.now = now
        self.comparisons = 0

    def compile(self, node: Node) -> tuple[str, list[Any]]:
        if isinstance(node, Comparison):  # the common case needs no tree
            cc = self.comparison(node)
            if not cc.roots:
                return cc.sql, cc.params
            tree: Tree = cc
        else:
            tree = self.compile_node(node)
        frag = assemble(self.rows, tree, NO_ROOTS)
        return frag.sql, frag.params

    def compile_node(self, node: Node) -> Tree:
        if isinstance(node, Comparison):
            return self.comparison(node)
        children = [self.compile_node(n) for n in node.items]
        roots = NO_ROOTS
        for child in children:
            if child.roots:
                roots = roots | child.roots
        return CLogical(node.op, children, roots)

    # -------------------------------------------------------------- comparisons

    def comparison(self, node: Comparison) -> CC:
        left = self.resolve(node.left)
        right = self.resolve(node.right)
        if not isinstance(left, ConstList) and not isinstance(right, ConstList):
            return self.pair(node.op, left, right)
        lefts = items(left)
        rights = items(right)
        total = len(lefts) * len(rights)
        self.comparisons += total
        if self.comparisons > MAX_EXPANDED_COMPARISONS:
            raise self.paths.err("too many values to compare", node.pos)
        parts = [self.pair(node.op, a, b) for a in lefts for b in rights]
        if len(parts) == 1:
            return parts[0]
        glue = " OR " if node.op[0] == "?" else " AND "
        keys: list[str] = []
        for p in parts:
            keys.extend(k for k in p.keys if k not in keys)
        return CC(
            "(" + glue.join(p.sql for p in parts) + ")",
            [x for p in parts for x in p.params],
            tuple(keys),
            frozenset().union(*(p.roots for p in parts)),
        )

    def pair(self, op: str, x: Const | Ref, y: Const | Ref) -> CC:
        rows = self.rows
        mode_any = op[0] == "?"
        if not mode_any:
            x, y = raw_multi(x, y), raw_multi(y, x)
        joins: list[Frag] = []
        keys: list[str] = []
        a = rows.operand(x, mode_any, joins, keys)
        b = rows.operand(y, mode_any, joins, keys)
        cond = condition(rows.d, op[1:] if mode_any else op, a, b)
        if joins:
            d = rows.fresh("_d")
            from_sql = " ".join(j.sql for j in joins)
            params = [p for j in joins for p in j.params] + cond.params
            if mode_any:
                sql = f'EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {from_sql} WHERE {cond.sql})'
            else:
                sql = (
                    f'NOT EXISTS (SELECT 1 FROM (SELECT 1) AS "{d}" {from_sql} '
                    f"WHERE NOT COALESCE({cond.sql}, FALSE))"
                )
            cond = Frag(sql, params)
        if not keys:
            return CC(cond.sql, cond.params, (), NO_ROOTS)
        roots = frozenset(rows.scope[k].root for k in keys)
        return CC(cond.sql, cond.params, tuple(keys), roots)

    # -------------------------------------------------------------- operands

    def resolve(self, operand: Operand) -> Resolved:
        if isinstance(operand, Identifier):
            return self.identifier(operand)
        if isinstance(operand, Text):
            return Const(clean(operand.value))
        if isinstance(operand, Number):
            return Const(operand.value, operand.raw)
        if isinstance(operand, Bool):
            return Const(operand.value)
        if isinstance(operand, Null):
            return NULL
        assert isinstance(operand, Call)  # noqa: S101  (narrows a type for mypy; established above)
        raise self.paths.err(f'unsupported function "{operand.name}()"', operand.pos)

    def identifier(self, ident: Identifier) -> Resolved:
        name = ident.name
        if name[0] == "@":
            macro = MACROS.get(name)
            if macro is not None:
                return macro(self.current_time())
            head = name.split(".", 1)[0].split(":", 1)[0]
            if head == "@request":
                return self.request.value(ident)
            if head == "@collection":
                return self.paths.collection_path(ident)
            raise self.paths.err(f'unknown identifier "{name}"', ident.pos)
        if name[0] == "#":
            raise self.paths.err(f'unknown identifier "{name}"', ident.pos)
        return self.paths.field(ident)

    def current_time(self) -> datetime:
        now = self.now or datetime.now(UTC)
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)


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
    tree = parse_cached(text, lim)
    if isinstance(tree, FilterSyntaxError):
        raise bad_request(f"Invalid filter: {tree.message}.")
    rows = new_rows(dialect, alias)
    paths = Paths(collection, registry, allow_hidden, lim, "filter")
    return Compiler(paths, RequestValues(paths, request), rows, now).compile(tree)
