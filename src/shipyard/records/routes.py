"""`/api/collections/{collection}/records`: thin handlers over core.records.

Each handler runs under the request's query budget (SHIPYARD_QUERY_BUDGET_MS): reads, counts,
rules and expands are cut when they take too long; writes, in their transaction, are not.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.web import JSON, parse_body, query_params, resolve_auth, services
from shipyard.tools.db import budget


def _budget(request: Request) -> float:
    return services(request).settings.query_budget_ms / 1000


async def list_records(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    with budget(_budget(request)):
        return JSON(await svc.records.list_page(c, query_params(request), auth))


async def view_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    rid = request.path_params["id"]
    with budget(_budget(request)):
        return JSON(await svc.records.view(c, rid, query_params(request), auth))


async def create_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    body = await parse_body(request)
    with budget(_budget(request)):
        return JSON(await svc.records.create(c, body, auth, query_params(request)))


async def update_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    body = await parse_body(request)
    rid = request.path_params["id"]
    with budget(_budget(request)):
        return JSON(await svc.records.update(c, rid, body, auth, query_params(request)))


async def delete_record(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    with budget(_budget(request)):
        await svc.records.delete(c, request.path_params["id"], auth, query_params(request))
    return Response(status_code=204)


routes = [
    Route("/api/collections/{collection}/records", list_records, methods=["GET"]),
    Route("/api/collections/{collection}/records", create_record, methods=["POST"]),
    Route("/api/collections/{collection}/records/{id}", view_record, methods=["GET"]),
    Route("/api/collections/{collection}/records/{id}", update_record, methods=["PATCH"]),
    Route("/api/collections/{collection}/records/{id}", delete_record, methods=["DELETE"]),
]
