"""Who sees what of the OpenAPI document: superusers see all of it; guests and the records
of auth collections see only the operations they may call, without hidden fields and
without rule expressions.

A rule is not evaluated against the caller: an operation whose rule is not locked (null) is
listed, because whether it lets the caller through depends on the records. Its expression
is shown to superusers only, since a rule can name internal fields, roles or header values.
`_superusers` and the generic `/api/collections/{collection}/…` paths are superuser-only.

The full document is built once per schema version; each audience's view (guests,
superusers, one per auth collection) is derived from it once and kept as bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from shipyard.kernel.spec import (
    GUARD_EMAILED_TOKEN,
    GUARD_EMAILED_TOKEN_AND_PASSWORD,
    GUARD_IDENTITY_PASSWORD,
    GUARD_OWN_TOKEN,
    GUARD_PUBLIC,
    GUARD_RULE,
    RULE_EFFECT,
    Schema,
)
from shipyard.records.auth import Auth
from shipyard.records.collections import SUPERUSERS, Collection

_OPEN_GUARDS = frozenset(
    {GUARD_PUBLIC, GUARD_IDENTITY_PASSWORD, GUARD_EMAILED_TOKEN, GUARD_EMAILED_TOKEN_AND_PASSWORD}
)

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_PREFIX = "/api/collections/"
_GENERIC = "{collection}"
_SUPERUSER_AUDIENCE = "superuser"


def audience(auth: Auth) -> str:
    """The key of the view `auth` gets: views differ by caller kind, never by record."""
    if auth.collection is None:
        return "guest"
    if auth.is_superuser:
        return _SUPERUSER_AUDIENCE
    return "auth:" + auth.collection.id


class Views:
    """The document of one schema version and the views derived from it so far."""

    def __init__(self, version: int, document: Schema, collections: list[Collection]) -> None:
        self.version = version
        self.collections = collections
        self._full = orjson.dumps(document)
        self._bodies: dict[str, bytes] = {_SUPERUSER_AUDIENCE: self._full}

    def body_for(self, auth: Auth) -> bytes:
        key = audience(auth)
        body = self._bodies.get(key)
        if body is None:
            doc = view_for(orjson.loads(self._full), self.collections, auth)
            body = self._bodies[key] = orjson.dumps(doc)
        return body


def _collection_of(path: str, by_name: dict[str, Collection]) -> tuple[bool, Collection | None]:
    """(whether `path` belongs to one collection, that collection if the caller may see it)."""
    if not path.startswith(_PREFIX):
        return False, None
    parts = path[len(_PREFIX) :].split("/")
    if len(parts) < 2:
        return False, None  # /api/collections/import and the like
    if parts[0] == _GENERIC:
        return True, None
    return True, by_name.get(parts[0])


def _action(op: Schema) -> str:
    rule = op.get("x-shipyard-rule")
    name = rule.get("name", "") if isinstance(rule, dict) else ""
    return str(name).removesuffix("Rule")


def _allowed(op: Schema, c: Collection | None, own: str | None) -> bool:
    guard = op.get("x-shipyard-guard")
    if guard in _OPEN_GUARDS:
        return True
    if guard == GUARD_OWN_TOKEN:
        return c is not None and c.id == own
    if guard == GUARD_RULE:
        return c is not None and _action(op) in RULE_EFFECT and c.rule(_action(op)) is not None
    return False  # superuser-only, or an operation that names no guard


def rule_summary(c: Collection, action: str) -> str:
    """What guards a record operation, as told to a caller who is not a superuser."""
    name, rule = f"{action}Rule", c.rule(action)
    if rule is not None and rule.strip() == "":
        text = f'Guarded by {name}: public (`""`): anyone may, guests included.'
    else:
        text = (
            f"Guarded by {name}: a condition on the caller and the record (its expression is "
            f"shown to superusers only); {RULE_EFFECT[action]}."
        )
    if action == "update" and c.type == "auth":
        text += (
            " Changing `email` or `verified`, or setting a password without `oldPassword`, "
            "takes manage access (the collection's manageRule)."
        )
    return text


def _visible_fields(c: Collection) -> set[str]:
    """Names a non-superuser may learn: hidden fields are superusers' business, except the
    system ones every auth collection has (password, tokenKey)."""
    return {f.name for f in c.fields if not f.hidden or f.system}


def _drop_keys(schema: Schema, hidden: set[str], modifiers: bool = False) -> None:
    props = schema.get("properties", {})
    for name in hidden:
        props.pop(name, None)
        if modifiers:
            for key in (f"{name}+", f"+{name}", f"{name}-"):
                props.pop(key, None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in hidden]
        if not schema["required"]:
            del schema["required"]


def _strip_collection(
    schemas: Schema, c: Collection, shown: dict[str, Collection], by_id: dict[str, Collection]
) -> None:
    """Leave hidden fields out of a collection's schemas, and relations to collections the
    caller cannot see (or expand) out of `expand`."""
    hidden = {f.name for f in c.fields} - _visible_fields(c)
    for suffix in ("Record", "AuthRecord", "Create", "Update"):
        schema = schemas.get(f"{c.name}.{suffix}")
        if isinstance(schema, dict):
            _drop_keys(schema, hidden, modifiers=suffix == "Update")
    record = schemas.get(f"{c.name}.Record")
    if not isinstance(record, dict):
        return
    props = record.get("properties", {})
    expand = props.get("expand", {})
    targets = expand.get("properties", {})
    for f in c.relation_fields():
        target = by_id.get(str(f.options.get("collectionId")))
        seen = target is not None and target.name in shown
        if f.name in hidden:
            continue  # gone with the other hidden fields
        if f.name in props and not seen:
            props[f.name]["description"] = "`relation` field: id(s) of related records"
        # expanding needs the target's viewRule: a locked one never expands for this caller
        if target is None or not seen or target.viewRule is None:
            targets.pop(f.name, None)
    if "properties" in expand and not targets:
        del expand["properties"]


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref)
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for item in node:
            _refs(item, out)


def _prune_components(doc: Schema) -> None:
    """Drop the components no remaining operation refers to (directly or through others)."""
    components = doc.get("components", {})
    seen: set[str] = set()
    todo: set[str] = set()
    _refs(doc["paths"], todo)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = [*ref.split("/", 3), "", "", ""][:4]
        target = components.get(kind, {}).get(name)
        if target is not None:
            _refs(target, todo)
    for kind in ("schemas", "parameters", "responses"):
        section = components.get(kind)
        if isinstance(section, dict):
            components[kind] = {
                k: v for k, v in section.items() if f"#/components/{kind}/{k}" in seen
            }


def _prune_links(paths: Schema, op_ids: set[str]) -> None:
    for item in paths.values():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            for response in op.get("responses", {}).values():
                links = response.get("links") if isinstance(response, dict) else None
                if isinstance(links, dict):
                    for name in [
                        n for n, link in links.items() if link["operationId"] not in op_ids
                    ]:
                        del links[name]
                    if not links:
                        del response["links"]


def view_for(doc: Schema, collections: list[Collection], auth: Auth) -> Schema:
    """`doc` (a private copy of the full document, changed in place) as `auth` may see it."""
    if auth.is_superuser:
        return doc
    by_name = {c.name: c for c in collections if c.name != SUPERUSERS}
    by_id = {c.id: c for c in collections}
    own = auth.collection.id if auth.collection is not None else None
    paths: Schema = {}
    shown: dict[str, Collection] = {}
    op_ids: set[str] = set()
    for path, item in doc["paths"].items():
        per_collection, c = _collection_of(path, by_name)
        if per_collection and c is None:
            continue
        kept = {m: op for m, op in item.items() if m in _METHODS and _allowed(op, c, own)}
        if not kept:
            continue
        for op in kept.values():
            op_ids.add(op["operationId"])
            if c is not None and op.get("x-shipyard-guard") == GUARD_RULE:
                action = _action(op)
                op["description"] = rule_summary(c, action)
                op["x-shipyard-rule"] = {
                    "name": f"{action}Rule",
                    "public": (c.rule(action) or "").strip() == "",
                }
        if c is not None:
            shown[c.name] = c
        shared = {k: v for k, v in item.items() if k not in _METHODS}
        paths[path] = {**shared, **kept}
    _prune_links(paths, op_ids)
    doc["paths"] = paths
    schemas = doc.get("components", {}).get("schemas", {})
    for c in shown.values():
        _strip_collection(schemas, c, shown, by_id)
    used = {t for item in paths.values() for op in item.values() if isinstance(op, dict)
            for t in op.get("tags", [])}  # fmt: skip
    tags = []
    for tag in doc.get("tags", []):
        if tag["name"] not in used:
            continue
        c = shown.get(tag["name"])
        if c is not None:
            tag = {"name": c.name, "description": f"`{c.type}` collection `{c.id}`."}
        tags.append(tag)
    doc["tags"] = tags
    _prune_components(doc)
    return doc
