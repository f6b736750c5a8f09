"""The batch part of the OpenAPI document (docs/batch.md)."""

from __future__ import annotations

from typing import Any

from shipyard.kernel import spec
from shipyard.kernel.spec import OpenAPIPart

TAG = {"name": "batch", "description": "Several record writes in one transaction."}

_SUB = {
    "type": "object",
    "properties": {
        "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
        "url": {
            "type": "string",
            "maxLength": 2000,
            "description": "`/api/collections/{collection}/records[/{id}]`, with `expand` "
            "and `fields` if wanted. PUT is an upsert: an update when the body's `id` exists.",
        },
        "headers": {"type": "object", "additionalProperties": spec.STR},
        "body": {"type": "object"},
    },
    "required": ["method", "url"],
}
_RESULT = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"status": spec.INT, "body": {}},
        "required": ["status", "body"],
    },
}


def openapi() -> list[OpenAPIPart]:
    op: dict[str, Any] = {
        "tags": ["batch"],
        "operationId": "batch",
        "summary": "Create, update, upsert and delete records in one transaction",
        "description": "Every sub-request runs under its collection's rules with the "
        "caller's auth; the first that fails rolls all back and is named under "
        "`data.requests.N` (`batch_request_failed`). Multipart: the JSON under "
        "`@jsonPayload`, files as `requests.N.field`. Off by default (403): the `batch` "
        "settings. See docs/batch.md.",
        "x-shipyard-guard": spec.GUARD_PUBLIC,
        "requestBody": spec.form_body(
            {
                "type": "object",
                "properties": {"requests": {"type": "array", "items": _SUB}},
                "required": ["requests"],
            }
        ),
        "responses": {
            **spec.json_ok(_RESULT, "Each sub-request's status and body, in order"),
            **spec.errors(400, 403, 413),
        },
    }
    return [OpenAPIPart(paths={"/api/batch": {"post": op}}, tags=[TAG])]
