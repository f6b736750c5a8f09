"""Small builders for the OpenAPI descriptions of superuser-only route modules
(db, jobs, webhooks); error responses refer to the document's shared `components`."""

from __future__ import annotations

from typing import Any

JSON_TYPE = "application/json"
STR: dict[str, Any] = {"type": "string"}
NUM: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
STRS: dict[str, Any] = {"type": "array", "items": STR}
ANY: dict[str, Any] = {}


def error(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON_TYPE: {"schema": schema}}}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON_TYPE: {"schema": schema}}}


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or STR}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def superuser_op(
    tag: str, op_id: str, summary: str, doc: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "tags": [tag],
        "operationId": op_id,
        "summary": summary,
        "description": f"Superusers only. See {doc}.",
        "security": [{"Authorization": []}],
        "x-shipyard-guard": "superuser",  # openapi.GUARD_SUPERUSER
        "responses": {**responses, "401": error("Unauthorized"), "403": error("Forbidden")},
        **extra,
    }


def page_of(item: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "page": INT,
            "perPage": INT,
            "totalItems": INT,
            "totalPages": INT,
            "items": {"type": "array", "items": item},
        },
        "required": ["page", "perPage", "totalItems", "totalPages", "items"],
    }
