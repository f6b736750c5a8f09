"""Identifiers to field paths: `a.b.c:mod` from a collection through relations,
back-relations (`<collection>_via_<field>`), `@collection.<name>[:alias]` sources and into
JSON fields, resolved against the schema to a `Ref` (hops, then a column).

This is also where a filter is held to what its author may read (hidden and password
fields, collections not anyone may list) and to its join limits. No SQL is written here.
"""

from __future__ import annotations

import re

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.records.collections import Collection
from shipyard.records.fields import Field, FileField, JSONField, RelationField, SelectField
from shipyard.records.query.model import FilterLimits, Hop, Ref, Registry, Resolved
from shipyard.tools.filterexpr import Identifier

MODIFIERS = frozenset(("lower", "length", "each", "isset", "changed"))
PART_RE = re.compile(r"[A-Za-z0-9_]+")
_VIA_RE = re.compile(r"(\w+)_via_(\w+)")
_COLLECTION_RE = re.compile(r"@collection\.(\w+)(?::(\w+))?\.(.+)")


def is_multi(f: Field | None) -> bool:
    return f is not None and f.is_multi


def _multi_valued(f: Field | None) -> bool:
    return isinstance(f, (SelectField, RelationField, FileField))


class Paths:
    """Resolves field paths for one compile of a filter or sort (`what`, for messages)."""

    __slots__ = ("allow_hidden", "base", "joined", "limits", "registry", "what")

    def __init__(
        self,
        base: Collection,
        registry: Registry | None,
        allow_hidden: bool,
        limits: FilterLimits,
        what: str,
    ) -> None:
        self.base = base
        self.registry = registry
        self.allow_hidden = allow_hidden
        self.limits = limits
        self.what = what
        self.joined: dict[str, set[str]] = {"coll": set(), "back": set()}

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

    def load(self, id_or_name: str) -> Collection | None:
        if not id_or_name:
            return None
        if id_or_name in (self.base.id, self.base.name):
            return self.base
        return self.registry.get(id_or_name) if self.registry is not None else None

    # -------------------------------------------------------------- identifiers

    def field(self, ident: Identifier) -> Resolved:
        """A plain identifier: a path from the base collection."""
        name = ident.name
        if "." not in name and ":" not in name:  # the common case: a field of this collection
            return self.path(self.base, [name], "", (), "", ident)
        parts, modifier = self.split(name, ident.pos)
        return self.path(self.base, parts, modifier, (), "", ident)

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
            if not PART_RE.fullmatch(part):
                raise self.err(f'invalid identifier "{name}"', pos + offset)
            offset += len(part) + 1
        return parts, modifier

    def collection_path(self, ident: Identifier) -> Resolved:
        """`@collection.<name>[:alias].<path>`: every row of a collection (its own scope)."""
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
        hop = Hop("coll", target.name, "", key, True)
        rest_pos = ident.pos + len(ident.name) - len(m.group(3))
        parts, modifier = self.split(m.group(3), rest_pos)
        return self.path(target, parts, modifier, (hop,), key, ident, rest_pos)

    # -------------------------------------------------------------- paths

    def path(
        self,
        coll: Collection,
        parts: list[str],
        modifier: str,
        start: tuple[Hop, ...],
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
                hops.append(Hop("rel", target.name, f.name, key, f.is_multi, f.is_multi))
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

    def check_field(self, f: Field, pos: int) -> None:
        if f.type == "password":
            raise self.err(f'field "{f.name}" cannot be used in a {self.what}', pos)
        if f.hidden and not self.allow_hidden:
            raise self.err(f'field "{f.name}" is hidden and cannot be used in a {self.what}', pos)

    def check_depth(self, hops: list[Hop], ident: Identifier) -> None:
        depth = sum(1 for h in hops if h.kind != "coll")
        if depth > self.limits.max_relation_depth:
            raise self.err(
                f'too many nested relations in "{ident.name}" '
                f"(max {self.limits.max_relation_depth})",
                ident.pos,
            )

    def back_relation(
        self, coll: Collection, part: str, key: str, name: str, pos: int
    ) -> tuple[Collection, Hop]:
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
        return target, Hop("back", target.name, f.name, key, True, f.is_multi)

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
        self, hops: list[Hop], coll: Collection, f: Field, modifier: str, pos: int
    ) -> Ref:
        multi_valuer = _multi_valued(f)
        if modifier in ("length", "each") and not multi_valuer:
            raise self.err(
                f'":{modifier}" needs a select, relation or file field, not "{f.name}"', pos
            )
        if modifier in ("isset", "changed"):
            raise self.err(f'":{modifier}" can only be used with @request.body fields', pos)
        items = (f.is_multi and modifier != "length") or modifier == "each"
        return Ref(
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
        self, hops: list[Hop], f: JSONField, keys: list[str], modifier: str, pos: int
    ) -> Ref:
        if modifier not in ("", "lower"):
            raise self.err(f'":{modifier}" cannot be used with the JSON field "{f.name}"', pos)
        return Ref(tuple(hops), f.name, "json", json_path=tuple(keys), modifier=modifier)
