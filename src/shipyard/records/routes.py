"""`/api/collections/{collection}/records`: thin handlers over records.Records.

Each handler builds the request's `RequestContext` and parses its query once (the same
`ListQuery`/`ViewQuery` the read gateway uses, so limits and their 400s are the same on both
paths), then runs under the request's query budget (SHIPYARD_QUERY_BUDGET_MS): reads, counts,
rules and expands are cut when they take too long; writes, in their transaction, are not.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.web import JSON, close_uploads, parse_body, services
from shipyard.records.context import request_context
from shipyard.tools.db import budget


def _budget(request: Request) -> float:
    return services(request).settings.query_budget_ms / 1000


async def list_records(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    ctx = await request_context(request)
    q = svc.records.list_query(ctx.query)
    with budget(_budget(request)):
        return JSON(await svc.records.list_page(c, ctx, q))


async def view_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    ctx = await request_context(request)
    q = svc.records.view_query(ctx.query)
    rid = request.path_params["id"]
    with budget(_budget(request)):
        return JSON(await svc.records.view(c, rid, ctx, q))


async def create_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    ctx = await request_context(request)
    body = await parse_body(request)
    try:
        q = svc.records.view_query(ctx.query)
        with budget(_budget(request)):
            return JSON(await svc.records.create(c, body, ctx, q))
    finally:
        close_uploads(body)


async def update_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    ctx = await request_context(request)
    body = await parse_body(request)
    try:
        q = svc.records.view_query(ctx.query)
        with budget(_budget(request)):
            return JSON(await svc.records.update(c, request.path_params["id"], body, ctx, q))
    finally:
        close_uploads(body)


async def delete_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    ctx = await request_context(request)
    with budget(_budget(request)):
        await svc.records.delete(c, request.path_params["id"], ctx)
    return Response(status_code=204)


routes = [
    Route("/api/collections/{collection}/records", list_records, methods=["GET"]),
    Route("/api/collections/{collection}/records", create_record, methods=["POST"]),
    Route("/api/collections/{collection}/records/{id}", view_record, methods=["GET"]),
    Route("/api/collections/{collection}/records/{id}", update_record, methods=["PATCH"]),
    Route("/api/collections/{collection}/records/{id}", delete_record, methods=["DELETE"]),
]
