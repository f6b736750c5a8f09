"""`@request.*`: what the request being served resolves to in a filter or rule.

Its values are known at compile time, so they become constants (parameters), except where
they lead into the schema: `@request.auth.<relation>.…` and `@request.body.<relation>.…`
follow relations from ids the request holds, and `@request.auth.<field>` not carried by the
auth record reads the asker's own row.
"""

from __future__ import annotations

from typing import Any

import orjson

from shipyard.kernel.errors import FieldError
from shipyard.records.fields import RelationField
from shipyard.records.query.model import (
    MAX_REQUEST_IDS,
    NULL,
    Const,
    ConstList,
    Hop,
    Resolved,
)
from shipyard.records.query.paths import MODIFIERS, PART_RE, Paths, is_multi
from shipyard.records.query.values import clean, num_text, to_const
from shipyard.tools.filterexpr import Identifier

_SOURCES = ("auth", "query", "headers", "body", "method", "context")


def lookup(root: Any, keys: list[str]) -> tuple[bool, Any]:
    """A nested value of the request info: (found, value); lists take numeric keys."""
    cur = root
    for i, key in enumerate(keys):
        if isinstance(cur, dict):
            if key in cur:
                cur = cur[key]
                continue
            if i == 1 and keys[0] == "headers":
                norm = {str(k).lower().replace("-", "_"): v for k, v in cur.items()}
                if key.lower() in norm:
                    cur = norm[key.lower()]
                    continue
            return False, None
        if isinstance(cur, list) and key.isdigit() and len(key) < 10 and int(key) < len(cur):
            cur = cur[int(key)]
            continue
        return False, None
    return True, cur


class RequestValues:
    """Resolves `@request.*` identifiers; `request` None makes every one of them null
    (and `:isset` false), as when a rule is checked outside a request."""

    __slots__ = ("paths", "request")

    def __init__(self, paths: Paths, request: dict[str, Any] | None) -> None:
        self.paths = paths
        self.request = request

    def value(self, ident: Identifier) -> Resolved:
        body, _, modifier = ident.name.partition(":")
        err = self.paths.err
        if modifier and (modifier not in MODIFIERS or ":" in modifier or "." in modifier):
            raise err(f'unknown modifier ":{modifier}" in "{ident.name}"', ident.pos)
        parts = body.split(".")
        sub = parts[1] if len(parts) > 1 else ""
        if sub not in _SOURCES or not all(PART_RE.fullmatch(p) for p in parts[1:]):
            raise err(f'unknown identifier "{ident.name}"', ident.pos)
        if self.request is None:
            return Const(False) if modifier == "isset" else NULL
        if modifier == "changed":  # only reached through the parse's `:changed` rewrite
            return self.sent_as_stored(parts[2] if len(parts) == 3 else "", ident)
        if sub == "auth":
            return self.auth(parts[2:], modifier, ident)
        if sub == "body" and len(parts) >= 3:
            f = self.paths.base.field(parts[2])
            found, value = lookup(self.request, parts[1:3])
            if isinstance(f, RelationField) and len(parts) > 3:
                return self.ids_path(
                    f, value, parts[3:], modifier, "@request.body." + parts[2], ident
                )
            if len(parts) == 3 and f is not None:
                return self.static(found, value, modifier, ident, items=f.is_multi)
        found, value = lookup(self.request, parts[1:])
        return self.static(found, value, modifier, ident, items=False)

    def sent_as_stored(self, name: str, ident: Identifier) -> Resolved:
        """The body's value of `name` normalized and encoded as the field stores it."""
        f = self.paths.base.field(name)
        if f is None or f.type == "password":
            raise self.paths.err(f'unknown field "{name}" in "{ident.name}"', ident.pos)
        found, value = lookup(self.request, ["body", name])
        if not found:
            return NULL
        try:
            value = f.normalize(value)
        except FieldError:
            return Const(orjson.dumps(value).decode() if isinstance(value, list) else str(value))
        if f.storage == "json":
            return Const(orjson.dumps(value).decode())
        if f.storage == "bool":
            return Const(bool(value))
        if f.storage == "number":
            return Const(float(value or 0), num_text(float(value or 0)))
        return Const("" if value is None else str(value))

    def static(
        self, found: bool, value: Any, modifier: str, ident: Identifier, items: bool
    ) -> Resolved:
        """A request value; lists of multi-valued fields (and `:each`) compare item by item,
        other lists as their JSON text (as PocketBase)."""
        if modifier == "isset":
            return Const(found)
        if modifier == "length":
            n = 0 if value is None else len(value) if isinstance(value, list) else 1
            return Const(float(n), str(n))
        lower = modifier == "lower"
        if modifier == "each" or (items and isinstance(value, list)):
            seq = value if isinstance(value, list) else ([] if value is None else [value])
            if len(seq) > MAX_REQUEST_IDS:
                raise self.paths.err(f'too many values in "{ident.name}"', ident.pos)
            return ConstList(tuple(to_const(v, lower) for v in seq))
        return to_const(value, lower)

    def auth(self, rest: list[str], modifier: str, ident: Identifier) -> Resolved:
        """`@request.auth.…`: the auth record's own values, else the asker's row."""
        paths = self.paths
        auth = self.request.get("auth") if self.request else None
        if not isinstance(auth, dict) or not auth.get("id"):
            return Const(False) if modifier == "isset" else NULL
        if not rest:
            raise paths.err('expected a field after "@request.auth"', ident.pos)
        coll = paths.load(str(auth.get("collectionId") or auth.get("collectionName") or ""))
        first = rest[0]
        f = coll.field(first) if coll is not None else None
        if f is not None and (f.type == "password" or (f.hidden and not paths.allow_hidden)):
            # a client filter must not probe the asker's own hidden fields (rules may)
            raise paths.err(f'field "{first}" cannot be used in a {paths.what}', ident.pos)
        row = None
        if coll is not None:
            row = Hop("ids", coll.name, "", "@request.auth", False, ids=(str(auth["id"]),))
        if len(rest) == 1 and (first in auth or modifier == "isset"):
            return self.static(first in auth, auth.get(first), modifier, ident, items=is_multi(f))
        if first in auth and len(rest) > 1:
            if isinstance(f, RelationField):
                key = "@request.auth." + first
                return self.ids_path(f, auth[first], rest[1:], modifier, key, ident)
            found, value = lookup(auth, rest)
            return self.static(found, value, modifier, ident, items=False)
        if f is not None and coll is not None and row is not None:
            return paths.path(coll, rest, modifier, (row,), "@request.auth", ident)
        return Const(False) if modifier == "isset" else NULL

    def ids_path(
        self,
        f: RelationField,
        value: Any,
        rest: list[str],
        modifier: str,
        key: str,
        ident: Identifier,
    ) -> Resolved:
        """Follow a relation from ids known at compile time (@request.body/auth values)."""
        raw = value if isinstance(value, list) else [value]
        ids = tuple(dict.fromkeys(clean(v) for v in raw if isinstance(v, str) and v))
        if not ids:
            return Const(False) if modifier == "isset" else NULL
        if len(ids) > MAX_REQUEST_IDS:
            raise self.paths.err(f'too many ids in "{ident.name}"', ident.pos)
        target = self.paths.relation_target(f, ident.pos)
        multi = f.is_multi and len(ids) > 1
        hop = Hop("ids", target.name, "", key, multi, ids=ids if multi else ids[:1])
        return self.paths.path(target, rest, modifier, (hop,), key, ident)
