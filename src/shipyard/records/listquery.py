"""The read endpoints' query parameters as typed values, parsed and checked once.

Both read paths (the hot GET gateway and the Starlette routes) and internal callers turn
the raw parameters into a `ListQuery` or `ViewQuery` here, so every limit from the settings
(items per page, filter length, sort keys, expand depth, `fields` syntax) applies on every
path with the same 400, before any rule or query runs. What needs the collection (field
names, the sort and filter compilers, cursor values) is checked where it is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.kernel.params import parse_int
from shipyard.records.projection import parse_fields
from shipyard.records.query import Sort, parse_sort
from shipyard.settings import Settings

MAX_PAGE = 2**31 - 1  # keeps OFFSET inside a 64-bit integer on both engines
_EXPAND_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# `expand=a.b,c`: each relation key with what to expand under it, in the order given
Expand = tuple[tuple[str, "Expand"], ...]


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    """A 64-bit integer, as PocketBase takes it (the caller clamps it to what it serves)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, f"{name} parameter")


def _truthy(raw: str | None) -> bool:
    return (raw or "").lower() in ("1", "true", "t", "yes")


def parse_expand(text: str, max_depth: int) -> Expand:
    """`expand` as a tree of relation keys; a path deeper than `max_depth` or a part that is
    not a field name is a 400. Repeated paths merge (`a.b,a.c` expands `a` once)."""
    tree: dict[str, Any] = {}
    for path in text.split(","):
        path = path.strip()
        if not path:
            continue
        parts = path.split(".")
        if len(parts) > max_depth:
            raise bad_request(
                f"Invalid expand {path!r}: at most {max_depth} levels of relations can be expanded."
            )
        node = tree
        for part in parts:
            if not _EXPAND_PART.match(part):
                raise bad_request(f"Invalid expand {path!r}: {part!r} is not a field name.")
            node = node.setdefault(part, {})
    return _freeze(tree)


def _freeze(tree: dict[str, Any]) -> Expand:
    return tuple((key, _freeze(sub)) for key, sub in tree.items())


@dataclass(frozen=True, slots=True)
class ViewQuery:
    """What shapes a returned record: the relations to expand and the `fields` to keep
    ("" keeps them all). Also what writes take for the record they answer with."""

    expand: Expand = ()
    fields: str = ""
    # (parameter, value) of the record decorations asked for (records/decorate.py)
    decorations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls, params: Mapping[str, str], settings: Settings, decorations: Iterable[str] = ()
    ) -> ViewQuery:
        return cls(*_view_parts(params, settings, decorations))


def _view_parts(
    params: Mapping[str, str], settings: Settings, decorations: Iterable[str]
) -> tuple[Expand, str, tuple[tuple[str, str], ...]]:
    expand = parse_expand(params.get("expand", ""), settings.max_expand_depth)
    fields = params.get("fields", "")
    if fields.strip():
        parse_fields(fields)  # a 400 for a malformed spec, even when no record comes back
    asked = tuple((name, params[name]) for name in decorations if params.get(name))
    return expand, fields, asked


@dataclass(frozen=True, slots=True)
class ListQuery(ViewQuery):
    """A list request. `page` and `per_page` are clamped to what is served (1…MAX_PAGE and
    1…settings.max_per_page, 0 or less meaning the default), as PocketBase does; `sort` is
    the text as sent (a cursor is signed with it) and `sorts` its keys, at most
    settings.max_sort_fields of them; `filter` is the raw text its compiler checks against the
    collection; `cursor` is None for offset paging and the client's cursor ("" to start)
    for keyset paging."""

    page: int = 1
    per_page: int = 30
    sort: str = ""
    sorts: tuple[Sort, ...] = ()
    filter: str = ""
    skip_total: bool = False
    cursor: str | None = None

    @classmethod
    def parse(
        cls, params: Mapping[str, str], settings: Settings, decorations: Iterable[str] = ()
    ) -> ListQuery:
        page = min(max(_int_param(params, "page", 1), 1), MAX_PAGE)
        per_page = _int_param(params, "perPage", settings.default_per_page)
        if per_page <= 0:
            per_page = settings.default_per_page
        per_page = min(per_page, settings.max_per_page)
        filt = params.get("filter", "")
        if len(filt) > settings.max_filter_length:
            # worded as the filter compiler words it
            raise bad_request(
                f"Invalid filter: the filter is too long ({len(filt)} characters, "
                f"max {settings.max_filter_length})."
            )
        sort = params.get("sort", "")
        sorts = parse_sort(sort, settings.max_sort_fields)
        expand, fields, asked = _view_parts(params, settings, decorations)
        return cls(
            expand=expand,
            fields=fields,
            decorations=asked,
            page=page,
            per_page=per_page,
            sort=sort,
            sorts=sorts,
            filter=filt,
            skip_total=_truthy(params.get("skipTotal")),
            cursor=params.get("cursor"),
        )


PLAIN = ViewQuery()  # the whole record, nothing expanded: what internal callers read and write
