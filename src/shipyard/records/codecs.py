"""How field values are stored and read back, and which columns an audience sees.

Reads decode rows straight into response dicts (JSON columns pass through as parsed
values, text as stored); writes encode each value for its column's storage class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.records.auth import Auth
from shipyard.records.collections import Collection
from shipyard.records.fields import Field, PasswordField

if TYPE_CHECKING:
    from shipyard.records.schema import SchemaStore

# who a shape is for: False (public), True (superusers) or "internal" (auth checks, which
# also need the tokenKey that no response ever carries)
Audience = bool | str


def encode_stored(f: Field, value: Any) -> Any:
    if f.storage == "json":
        return orjson.dumps(value).decode()
    if f.storage == "bool":
        return bool(value)
    if f.storage == "number":
        return float(value or 0)
    return "" if value is None else str(value)


def decode_stored(f: Field, raw: Any) -> Any:
    if f.storage == "json":
        try:
            return orjson.loads(raw) if raw not in (None, "") else f.zero()
        except orjson.JSONDecodeError:
            return f.zero()
    if f.storage == "bool":
        return bool(raw)
    if f.storage == "number":
        return float(raw or 0)
    return "" if raw is None else raw


def _json_out(f: Field) -> Any:
    if f.storage == "json":
        zero = f.zero()

        def out_json(raw: Any) -> Any:
            return orjson.loads(raw) if raw else zero

        return out_json
    if f.storage == "bool":
        return bool
    if f.storage == "number":
        return f.to_json
    return None  # text: as stored


@dataclass
class Shape:
    """How to select and decode one collection's rows for one audience; cached per schema."""

    columns: str
    names: list[str]
    decoders: list[Any]
    fields: list[Field]


class Shapes:
    """The shapes of one schema store's collections, computed once per schema version.

    Owned by that store (`SchemaStore.shapes`, not a module global), so two stores in one
    process, as tests run them, never share or evict each other's entries."""

    MAX_ENTRIES = 2048

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._cache: dict[tuple[int, str, Audience], Shape] = {}

    def of(self, c: Collection, audience: Audience) -> Shape:
        """Columns for an audience: False (public), True (superusers) or "internal"."""
        key = (self.store.version, c.id, audience)
        got = self._cache.get(key)
        if got is None:
            visible = [
                f
                for f in c.fields
                if not isinstance(f, PasswordField)
                and (audience or not f.hidden)
                and (audience == "internal" or not (c.type == "auth" and f.name == "tokenKey"))
            ]
            got = Shape(
                columns=", ".join(f'"_r"."{f.name}"' for f in visible),
                names=[f.name for f in visible],
                decoders=[_json_out(f) for f in visible],
                fields=visible,
            )
            if len(self._cache) > self.MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = got
        return got


def decode_row(c: Collection, sh: Shape, row: tuple[Any, ...]) -> dict[str, Any]:
    rec: dict[str, Any] = {"collectionId": c.id, "collectionName": c.name}
    for name, dec, raw in zip(sh.names, sh.decoders, row, strict=False):
        rec[name] = raw if dec is None else dec(raw)
    return rec


def hide_emails(
    c: Collection, items: list[dict[str, Any]], auth: Auth, managed: frozenset[str] = frozenset()
) -> None:
    """Auth records show `email` only to superusers, to their owner, to those with manage
    access (`managed` ids), or when the owner made it visible (`emailVisibility`), as
    PocketBase does."""
    if c.type != "auth" or auth.is_superuser:
        return
    own = auth.id if auth.collection is not None and auth.collection.id == c.id else None
    for rec in items:
        rid = rec.get("id")
        if not rec.get("emailVisibility") and rid != own and rid not in managed:
            rec.pop("email", None)


def rowid_column(dialect: str) -> str:
    """Insertion order: the default sort and every sort's tie-breaker."""
    return '"_r"."_rowid"' if dialect == "postgres" else '"_r".rowid'
