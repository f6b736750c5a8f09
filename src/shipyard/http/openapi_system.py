"""The system part of the OpenAPI document: health, the document itself and its docs page."""

from __future__ import annotations

from shipyard.http.openapi import DOCS_PATH, OPENAPI_PATH
from shipyard.kernel.spec import GUARD_PUBLIC, OpenAPIPart, Schema, Viewer, json_ok, schema_ref

HEALTH_PATH = "/api/health"


def _public(op_id: str, summary: str, responses: Schema) -> Schema:
    return {
        "tags": ["system"],
        "operationId": op_id,
        "summary": summary,
        "security": [{}],
        "x-shipyard-guard": GUARD_PUBLIC,
        "responses": responses,
    }


def _paths() -> Schema:
    health = {"content": {"application/json": {"schema": schema_ref("Health")}}}
    return {
        HEALTH_PATH: {
            "get": _public(
                "health",
                "Liveness with a database round trip",
                {
                    "200": {"description": "Healthy", **health},
                    "503": {"description": "The database is unreachable.", **health},
                },
            ),
            "head": _public(
                "healthHead",
                "Liveness for load balancers (no body)",
                {
                    "200": {"description": "Healthy"},
                    "503": {"description": "The database is unreachable."},
                },
            ),
        },
        OPENAPI_PATH: {
            "get": _public(
                "openapi",
                "This document",
                json_ok({"type": "object"}, "The OpenAPI 3.1 document"),
            )
        },
        DOCS_PATH: {
            "get": _public(
                "docs",
                "Interactive API docs (Swagger UI)",
                {
                    "200": {
                        "description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
    }


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    health: Schema = {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "data": {"type": "object"},
        },
        "required": ["code", "message", "data"],
    }
    return [
        OpenAPIPart(
            paths=_paths(),
            schemas={"Health": health},
            tags=[{"name": "system", "description": "Health and this documentation."}],
        )
    ]
