"""The records capability's parts of the OpenAPI document, one per route module: schema
management (`/api/collections`, collection_routes.py), and records (routes.py): those of any
collection by name (`/api/collections/{collection}/records`) and, for every live
collection, its own record paths, schemas and tag, with the rules that guard them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipyard.kernel.spec import (
    GUARD_RULE,
    GUARD_SUPERUSER,
    JSON_TYPE,
    NO_CONTENT,
    OpenAPIPart,
    Schema,
    Viewer,
    errors,
    form_body,
    json_ok,
    param_ref,
    query_param,
    schema_ref,
)
from shipyard.records.collections import Collection
from shipyard.records.openapi_schemas import (
    RULE_ACTIONS,
    list_schema,
    record_body_schema,
    record_schema,
    rule_access,
    rule_description,
    rule_extension,
)
from shipyard.settings import Settings


def _collection_schemas() -> Schema:
    field_def: Schema = {
        "type": "object",
        "description": "A field definition in PocketBase's shape; type-specific options sit "
        "beside the common keys (e.g. `min`, `max`, `values`, `maxSelect`, `collectionId`).",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$"},
            "type": {
                "type": "string",
                "enum": [
                    "text",
                    "editor",
                    "number",
                    "bool",
                    "email",
                    "url",
                    "date",
                    "autodate",
                    "select",
                    "json",
                    "relation",
                    "file",
                    "password",
                ],
            },
            "system": {"type": "boolean"},
            "hidden": {"type": "boolean"},
            "presentable": {"type": "boolean"},
            "required": {"type": "boolean"},
        },
        "required": ["name", "type"],
    }
    rule = {"type": ["string", "null"], "description": 'null: superusers only; "": public.'}
    rules = {f"{a}Rule": rule for a in ("list", "view", "create", "update", "delete")}
    collection_out: Schema = {
        "type": "object",
        "description": "Auth collections also carry their auth options (e.g. `authToken`, "
        "`passwordAuth`); secrets never leave the server.",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string", "enum": ["base", "auth"]},
            "system": {"type": "boolean"},
            **rules,
            "fields": {"type": "array", "items": {**field_def, "required": ["id", "name", "type"]}},
            "indexes": {"type": "array", "items": {"type": "string"}},
            "created": {"type": "string"},
            "updated": {"type": "string"},
        },
        "required": [
            "id",
            "name",
            "type",
            "system",
            *rules,
            "fields",
            "indexes",
            "created",
            "updated",
        ],
    }
    collection_in: Schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]{0,54}$"},
            "type": {"type": "string", "enum": ["base"]},
            **rules,
            "fields": {"type": "array", "items": schema_ref("FieldDefinition")},
            "indexes": {
                "type": "array",
                "items": {"type": "string"},
                "examples": [["CREATE UNIQUE INDEX idx_slug ON posts (slug)"]],
            },
        },
    }
    return {
        "FieldDefinition": field_def,
        "Collection": collection_out,
        "CollectionCreate": {**collection_in, "required": ["name"]},
        "CollectionUpdate": collection_in,
        "CollectionList": list_schema(schema_ref("Collection"), "collections"),
        "CollectionsImport": {
            "type": "object",
            "properties": {
                "collections": {"type": "array", "items": {**collection_in, "required": ["name"]}},
                "deleteMissing": {
                    "type": "boolean",
                    "description": "Delete every non-system collection the list leaves out.",
                },
                "confirmDataLoss": {"type": "boolean"},
            },
            "required": ["collections"],
        },
    }


_RECORD_SCHEMAS: Schema = {
    "Record": {
        "type": "object",
        "description": "A record of any collection: the system keys plus its fields.",
        "properties": {
            "collectionId": {"type": "string"},
            "collectionName": {"type": "string"},
            "id": {"type": "string"},
            "expand": {"type": "object"},
        },
    },
    "RecordList": list_schema(schema_ref("Record"), "records"),
    "RecordBody": {
        "type": "object",
        "description": "Field values by name; each collection's own paths list its fields.",
    },
}


def _shared_parameters(settings: Settings) -> Schema:
    return {
        "collection": {
            "name": "collection",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "Collection name or id.",
        },
        "id": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "Record id.",
        },
        "page": query_param(
            "page", {"type": "integer", "minimum": 1, "default": 1}, "Page number (1-based)."
        ),
        "perPage": query_param(
            "perPage",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": settings.max_per_page,
                "default": settings.default_per_page,
            },
            f"Items per page (at most {settings.max_per_page}).",
        ),
        "sort": query_param(
            "sort",
            {"type": "string"},
            "Comma separated fields, `-` for descending (e.g. `-created,title`); `@random`.",
        ),
        "filter": query_param(
            "filter",
            {"type": "string"},
            "PocketBase filter expression, e.g. `title ~ 'abc' && views > 10`.",
        ),
        "expand": query_param(
            "expand",
            {"type": "string"},
            "Comma separated relation fields to expand; dot paths nest "
            f"(at most {settings.max_expand_depth} levels).",
        ),
        "fields": query_param(
            "fields",
            {"type": "string"},
            "Comma separated keys to return: `*`, dot paths into `expand`, `f:excerpt(200,true)`.",
        ),
        "skipTotal": query_param(
            "skipTotal",
            {"type": "boolean"},
            "Skip counting: `totalItems` and `totalPages` become -1.",
        ),
        "confirmDataLoss": query_param(
            "confirmDataLoss",
            {"type": "boolean"},
            "Allow a change that drops or converts stored values.",
        ),
    }


_SUPERUSER: list[Schema] = [{"Authorization": []}]
_SUPERUSER_NOTE = (
    "Guarded by a superuser's token: superusers only (401 without a valid token, 403 with a "
    "token of any other collection)."
)


def _superuser_op(op_id: str, summary: str, responses: Schema, **extra: Any) -> Schema:
    return {
        "tags": ["collections"],
        "operationId": op_id,
        "summary": summary,
        "description": _SUPERUSER_NOTE,
        "security": _SUPERUSER,
        "x-shipyard-guard": GUARD_SUPERUSER,
        "responses": responses,
        **extra,
    }


def _collection_paths() -> Schema:
    coll = param_ref("collection")
    return {
        "/api/collections": {
            "get": _superuser_op(
                "listCollections",
                "List collections",
                {**json_ok(schema_ref("CollectionList")), **errors(400, 401, 403)},
                parameters=[
                    param_ref("page"),
                    param_ref("perPage"),
                    query_param("filter", {"type": "string"}, "Only `name = 'x'` or `name ~ 'x'`."),
                ],
            ),
            "post": _superuser_op(
                "createCollection",
                "Create a collection",
                {**json_ok(schema_ref("Collection")), **errors(400, 401, 403, 413)},
                requestBody=form_body(schema_ref("CollectionCreate")),
            ),
        },
        "/api/collections/import": {
            "put": _superuser_op(
                "importCollections",
                "Apply a list of collections (PocketBase's export format)",
                {**NO_CONTENT, **errors(400, 401, 403, 404, 413)},
                parameters=[param_ref("confirmDataLoss")],
                requestBody=form_body(schema_ref("CollectionsImport"), form=False),
            ),
        },
        "/api/collections/{collection}": {
            "parameters": [coll],
            "get": _superuser_op(
                "viewCollection",
                "View a collection",
                {**json_ok(schema_ref("Collection")), **errors(401, 403, 404)},
            ),
            "patch": _superuser_op(
                "updateCollection",
                "Update a collection (its table is migrated in place)",
                {**json_ok(schema_ref("Collection")), **errors(400, 401, 403, 404, 413)},
                parameters=[param_ref("confirmDataLoss")],
                requestBody=form_body(schema_ref("CollectionUpdate")),
            ),
            "delete": _superuser_op(
                "deleteCollection",
                "Delete a collection and its records",
                {**NO_CONTENT, **errors(400, 401, 403, 404)},
            ),
        },
        "/api/collections/{collection}/truncate": {
            "parameters": [coll],
            "delete": _superuser_op(
                "truncateCollection",
                "Delete every record of a collection",
                {**NO_CONTENT, **errors(400, 401, 403, 404)},
            ),
        },
    }


def _record_ops(c: Collection | None) -> tuple[Schema, Schema]:
    """The five record operations, generic or for one collection (with its schemas and rules)."""
    suffix = f"_{c.name}" if c else ""
    tag = c.name if c else "records"
    rec = schema_ref(f"{c.name}.Record") if c else schema_ref("Record")
    lst = schema_ref(f"{c.name}.List") if c else schema_ref("RecordList")
    create_body = schema_ref(f"{c.name}.Create") if c else schema_ref("RecordBody")
    update_body = schema_ref(f"{c.name}.Update") if c else schema_ref("RecordBody")
    view = [param_ref("expand"), param_ref("fields")]
    list_params = [
        param_ref(n) for n in ("page", "perPage", "sort", "filter", "expand", "fields", "skipTotal")
    ]

    def op(action: str, op_id: str, summary: str, responses: Schema, **extra: Any) -> Schema:
        out: Schema = {"tags": [tag], "operationId": op_id + suffix, "summary": summary}
        if c is not None:
            out["description"] = rule_description(c, action)
            out["x-shipyard-rule"] = rule_extension(c, action)
        else:
            out["description"] = (
                f"Guarded by {action}Rule of the named collection; each collection's own path "
                "states its current expression."
            )
            out["x-shipyard-rule"] = {"name": f"{action}Rule"}
        out["x-shipyard-guard"] = GUARD_RULE
        out["responses"] = responses
        out.update(extra)
        return out

    where = f"`{c.name}`" if c else "a collection"
    # setting a password hashes it: 503 while every hashing slot is taken
    hashing = (400, 403, 404, 413) + ((503,) if c is None or c.type == "auth" else ())
    links: Schema = {}
    if c is not None:
        links = {
            "links": {
                name: {
                    "operationId": f"{name}Record{suffix}",
                    "parameters": {"id": "$response.body#/id"},
                }
                for name in ("view", "update", "delete")
            }
        }
    created = {
        "200": {
            "description": "The created record",
            "content": {JSON_TYPE: {"schema": rec}},
            **links,
        }
    }
    collection_ops = {
        "get": op(
            "list",
            "listRecords",
            f"List records of {where}",
            {**json_ok(lst), **errors(400, 403, 404)},
            parameters=list_params,
        ),
        "post": op(
            "create",
            "createRecord",
            f"Create a record in {where}",
            {**created, **errors(*hashing)},
            parameters=view,
            requestBody=form_body(create_body),
        ),
    }
    record_ops = {
        "get": op(
            "view",
            "viewRecord",
            f"View a record of {where}",
            {**json_ok(rec), **errors(400, 403, 404)},
            parameters=view,
        ),
        "patch": op(
            "update",
            "updateRecord",
            f"Update a record of {where}",
            {**json_ok(rec), **errors(*hashing)},
            parameters=view,
            requestBody=form_body(update_body, required=False),
        ),
        "delete": op(
            "delete",
            "deleteRecord",
            f"Delete a record of {where}",
            {**NO_CONTENT, **errors(400, 403, 404)},
        ),
    }
    return collection_ops, record_ops


def _paths(prefix: str, c: Collection | None) -> Schema:
    coll_ops, rec_ops = _record_ops(c)
    shared = [] if c else [param_ref("collection")]
    return {
        f"{prefix}/records": {**({"parameters": shared} if shared else {}), **coll_ops},
        f"{prefix}/records/{{id}}": {"parameters": [*shared, param_ref("id")], **rec_ops},
    }


def record_schemas(c: Collection, by_key: dict[str, Collection]) -> Schema:
    """The schemas of one collection's records: as returned, as listed, as created and as
    updated (`by_key`: every collection by id and by name, for relations)."""
    return {
        f"{c.name}.Record": record_schema(c, by_key, complete=False),
        f"{c.name}.List": list_schema(schema_ref(f"{c.name}.Record"), f"`{c.name}` records"),
        f"{c.name}.Create": record_body_schema(c, create=True),
        f"{c.name}.Update": record_body_schema(c, create=False),
    }


def collections_openapi(viewer: Viewer) -> list[OpenAPIPart]:
    """Schema management: the `/api/collections` paths, for superusers only."""
    tag = {"name": "collections", "description": "Schema management (superusers only)."}
    return [OpenAPIPart(paths=_collection_paths(), schemas=_collection_schemas(), tags=[tag])]


def openapi(
    collections: Sequence[Collection], viewer: Viewer, settings: Settings
) -> list[OpenAPIPart]:
    """The records of `collections`, and the query parameters the document shares;
    `settings` bound the page size and the expand depth those state."""
    by_key = {c.id: c for c in collections} | {c.name: c for c in collections}
    schemas = dict(_RECORD_SCHEMAS)
    paths = _paths("/api/collections/{collection}", None)
    tags: list[Schema] = [
        {
            "name": "records",
            "description": "Records of any collection by name or id; per-collection tags "
            "have the schemas.",
        },
    ]
    for c in collections:
        schemas.update(record_schemas(c, by_key))
        rules = "; ".join(f"{a}Rule: {rule_access(c.rule(a))}" for a in RULE_ACTIONS)
        tags.append({"name": c.name, "description": f"`{c.type}` collection `{c.id}`. {rules}."})
        paths.update(_paths(f"/api/collections/{c.name}", c))
    return [
        OpenAPIPart(
            paths=paths,
            schemas=schemas,
            parameters=_shared_parameters(settings),
            tags=tags,
        )
    ]
