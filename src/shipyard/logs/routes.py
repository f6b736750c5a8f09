"""`/api/logs`: PocketBase's request log API, for superusers (the JS SDK's `pb.logs`).

- `GET /api/logs` — a page of entries: `page`, `perPage`, `sort`, `filter` (on `id`,
  `created`, `level`, `message`, `data.*`), `skipTotal`;
- `GET /api/logs/stats` — entries per hour, `[{date, total}]`, with an optional `filter`;
- `GET /api/logs/{id}` — one entry.

Reads run under the request's query budget (SHIPYARD_QUERY_BUDGET_MS), on the raw
database. `openapi_paths()` describes the routes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel import spec
from shipyard.kernel.errors import bad_request, not_found
from shipyard.kernel.params import parse_int
from shipyard.kernel.web import JSON, services
from shipyard.records.context import require_superuser
from shipyard.records.projection import project
from shipyard.tools.db import budget

from . import query

MAX_PAGE = 2**31 - 1


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "")
    return parse_int(raw, f"{name} parameter") if raw else default


def _picked(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    """`fields=id,data.status,message:excerpt(20)`: the keys to keep (PocketBase's picker)."""
    fields = request.query_params.get("fields", "")
    return project(item, fields) if fields.strip() else item


def _filter(request: Request) -> str:
    text = request.query_params.get("filter", "")
    limit = services(request).settings.max_filter_length
    if len(text) > limit:
        raise bad_request(
            f"Invalid filter: the filter is too long ({len(text)} characters, max {limit})."
        )
    return text


async def list_logs(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    s = svc.settings
    page = min(max(_int(request, "page", 1), 1), MAX_PAGE)
    per_page = _int(request, "perPage", s.default_per_page)
    per_page = min(per_page if per_page > 0 else s.default_per_page, s.max_per_page)
    skip = request.query_params.get("skipTotal", "").lower() in ("1", "true", "t", "yes")
    with budget(s.query_budget_ms / 1000):
        result = await query.page(
            svc.aux_db,
            page_no=page,
            per_page=per_page,
            sort=request.query_params.get("sort", ""),
            filter_text=_filter(request),
            skip_total=skip,
            limits=(s.max_filter_length, s.max_filter_expressions, s.max_sort_fields),
        )
    result["items"] = [_picked(request, item) for item in result["items"]]
    return JSON(result)


async def log_stats(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    s = svc.settings
    with budget(s.query_budget_ms / 1000):
        result = await query.stats(
            svc.aux_db, _filter(request), (s.max_filter_length, s.max_filter_expressions)
        )
    return JSON([_picked(request, item) for item in result])


async def view_log(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    with budget(svc.settings.query_budget_ms / 1000):
        entry = await query.view(svc.aux_db, request.path_params["id"])
    if entry is None:
        raise not_found()
    return JSON(_picked(request, entry))


routes = [
    Route("/api/logs", list_logs, methods=["GET"]),
    Route("/api/logs/stats", log_stats, methods=["GET"]),
    Route("/api/logs/{id}", view_log, methods=["GET"]),
]


# ---------------------------------------------------------------------- OpenAPI

_LOG = {
    "type": "object",
    "properties": {
        "id": spec.STR,
        "created": {**spec.STR, "description": "UTC, `2026-12-05 03:00:00.123Z`."},
        "data": {
            "type": "object",
            "description": "For requests: type, execTime, url, method, status, referer, "
            "userAgent, auth, authId, userIP, remoteIP.",
        },
        "message": spec.STR,
        "level": {**spec.INT, "description": "-4 debug, 0 info, 4 warning, 8 error."},
    },
    "description": "Every key unless `fields` picks some.",
}
_STATS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"date": spec.STR, "total": spec.INT},
    },
}
_FIELDS = spec.query_param(
    "fields", spec.STR, "Keys of each entry to keep, e.g. `id,created,data.status`."
)
_FILTER = spec.query_param(
    "filter", spec.STR, "PocketBase filter on id, created, level, message and data.*."
)


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("logs", op_id, summary, "docs/logs.md", responses, **extra)


def openapi_paths() -> dict[str, Any]:
    return {
        "/api/logs": {
            "get": _op(
                "listLogs",
                "A page of request log entries",
                {
                    "200": spec.ok(spec.page_of(_LOG, "A page of entries"), "The entries"),
                    "400": spec.error("BadRequest"),
                },
                parameters=[
                    spec.query_param("page", spec.INT, "Page number (from 1)."),
                    spec.query_param("perPage", spec.INT, "Entries per page."),
                    spec.query_param("sort", spec.STR, "e.g. `-created,level`."),
                    _FILTER,
                    spec.query_param("skipTotal", spec.BOOL, "Leave out the totals (-1)."),
                    _FIELDS,
                ],
            )
        },
        "/api/logs/stats": {
            "get": _op(
                "logStats",
                "Request log entries per hour",
                {"200": spec.ok(_STATS, "Totals per hour"), "400": spec.error("BadRequest")},
                parameters=[_FILTER, _FIELDS],
            )
        },
        "/api/logs/{id}": {
            "get": _op(
                "viewLog",
                "One request log entry",
                {"200": spec.ok(_LOG, "The entry"), "404": spec.error("NotFound")},
                parameters=[spec.path_param("id"), _FIELDS],
            )
        },
    }
