"""The filter parse, cached, and what can be learnt from it alone.

Only the parse is cached: the SQL depends on `@request.*`, the date macros and the schema.
`references` reads the same parse to tell the response cache what a filter depends on
beyond its own collection's relations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from shipyard.records.query.model import DEFAULT_LIMITS, FilterLimits
from shipyard.tools.filterexpr import (
    Bool,
    Call,
    Comparison,
    FilterSyntaxError,
    Identifier,
    Logical,
    Node,
    Operand,
    parse,
)


@lru_cache(maxsize=1024)
def parse_cached(text: str, limits: FilterLimits) -> Node | FilterSyntaxError:
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


# ----------------------------------------------------------------------------- references


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
    tree = parse_cached(text, limits)
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
