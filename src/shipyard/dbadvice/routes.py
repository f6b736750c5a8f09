"""`/api/db/…`: the slow-query log and the index advisor, for superusers.

- `GET /api/db/advise?top=20&by=total` — the slowest recorded query shapes with their plans
  and the indexes proposed for them (see dbadvice/advise.py);
- `POST /api/db/advise/apply` — `{"indexes": ["CREATE INDEX …", …]}` or `{"all": true}`;
- `DELETE /api/db/slow-queries` — forget the recorded shapes.

`openapi_paths()` describes these routes for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.dbadvice import advise
from shipyard.kernel import spec
from shipyard.kernel.errors import bad_request
from shipyard.kernel.params import parse_int
from shipyard.kernel.web import JSON, parse_body, services
from shipyard.records.context import require_superuser


async def _superuser(request: Request) -> None:
    await require_superuser(request)


def _top(request: Request) -> int:
    return parse_int(
        request.query_params.get("top", "") or "20", "top parameter", 1, advise.MAX_TOP
    )


async def get_advice(request: Request) -> Response:
    await _superuser(request)
    by = request.query_params.get("by", "") or "total"
    rep = await advise.report(services(request), top=_top(request), by=by)
    return JSON(rep.to_dict())


async def apply_advice(request: Request) -> Response:
    await _superuser(request)
    svc = services(request)
    body = await parse_body(request)
    if body.get("all") is True:
        applied = await advise.apply_all(svc)
    elif "indexes" in body:
        applied = await advise.apply(svc.store, body["indexes"])
    else:
        raise bad_request(
            'Missing indexes: send {"indexes": ["CREATE INDEX …", …]} or {"all": true}.'
        )
    return JSON({"applied": applied})


async def reset_slow_queries(request: Request) -> Response:
    await _superuser(request)
    await advise.reset(services(request))
    return Response(status_code=204)


routes = [
    Route("/api/db/advise", get_advice, methods=["GET"]),
    Route("/api/db/advise/apply", apply_advice, methods=["POST"]),
    Route("/api/db/slow-queries", reset_slow_queries, methods=["DELETE"]),
]


# ---------------------------------------------------------------------- OpenAPI

_STR, _NUM, _STRS = spec.STR, spec.NUM, spec.STRS
_error, _ok = spec.error, spec.ok

_PROPOSAL = {
    "type": "object",
    "properties": {
        "collection": _STR,
        "column": _STR,
        "index": {
            **_STR,
            "description": "PocketBase index syntax, for the collection's `indexes`.",
        },
        "reason": _STR,
        "shapes": {**_STRS, "description": "Ids of the shapes it would help."},
        "totalMs": _NUM,
    },
    "required": ["collection", "column", "index", "reason", "shapes", "totalMs"],
}

_SHAPE = {
    "type": "object",
    "properties": {
        "id": _STR,
        "sql": {**_STR, "description": "The statement with `?` placeholders; values are never kept."},
        "calls": {"type": "integer"},
        "totalMs": _NUM,
        "maxMs": _NUM,
        "avgMs": _NUM,
        "rows": {"type": "integer", "description": "Rows of the latest occurrence (-1: failed)."},
        "firstSeen": _STR,
        "lastSeen": _STR,
        "plan": _STRS,
        "fullScans": _STRS,
        "proposals": _STRS,
        "error": {"type": ["string", "null"]},
    },
    "required": [
        "id", "sql", "calls", "totalMs", "maxMs", "avgMs", "rows", "firstSeen", "lastSeen",
        "plan", "fullScans", "proposals", "error",
    ],
}  # fmt: skip

_REPORT = {
    "type": "object",
    "properties": {
        "engine": {"type": "string", "enum": ["sqlite", "postgres"]},
        "slowQueryMs": _NUM,
        "items": {"type": "array", "items": _SHAPE},
        "proposals": {"type": "array", "items": _PROPOSAL},
    },
    "required": ["engine", "slowQueryMs", "items", "proposals"],
}

_APPLY_BODY = {
    "type": "object",
    "properties": {
        "indexes": {**_STRS, "description": "Index definitions, e.g. from `proposals[].index`."},
        "all": {"type": "boolean", "description": "Apply every current proposal."},
    },
}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("db", op_id, summary, "docs/performance.md", responses, **extra)


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3.1 path items of these routes (error responses refer to the document's
    shared `components.responses`)."""
    return {
        "/api/db/advise": {
            "get": _op(
                "dbAdvise",
                "The slowest query shapes, their plans and proposed indexes",
                {"200": _ok(_REPORT, "The advice"), "400": _error("BadRequest")},
                parameters=[
                    {
                        "name": "top",
                        "in": "query",
                        "required": False,
                        "description": "How many shapes (1..200).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
                    },
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "description": "Slowest by total, max or average time, or by calls.",
                        "schema": {"type": "string", "enum": list(advise.ORDER_BY)},
                    },
                ],
            )
        },
        "/api/db/advise/apply": {
            "post": _op(
                "dbAdviseApply",
                "Add proposed indexes to their collections",
                {
                    "200": _ok(
                        {
                            "type": "object",
                            "properties": {"applied": _STRS},
                            "required": ["applied"],
                        },
                        "The indexes added (as stored in the collections)",
                    ),
                    "400": _error("BadRequest"),
                    "413": _error("TooLarge"),
                },
                requestBody=spec.body(_APPLY_BODY),
            )
        },
        "/api/db/slow-queries": {
            "delete": _op(
                "dbResetSlowQueries",
                "Forget the recorded slow-query shapes",
                {"204": {"description": "Done; no content."}},
            )
        },
    }
