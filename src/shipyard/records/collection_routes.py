"""`/api/collections`: superuser-only schema management in PocketBase's shapes."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.params import parse_int
from shipyard.kernel.web import JSON, parse_body, query_params, services
from shipyard.records.context import resolve_auth


async def _superuser(request: Request) -> None:
    auth = await resolve_auth(request)
    if auth.collection is None:
        raise ApiError(401, "The request requires valid record authorization token.")
    if not auth.is_superuser:
        raise ApiError(403, "The authorized record is not allowed to perform this action.")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def list_collections(request: Request) -> Response:
    await _superuser(request)
    svc = services(request)
    params = query_params(request)
    items = [c.to_dict() for c in svc.store.all()]
    name_filter = params.get("filter", "").strip()
    if name_filter:
        # the collections list supports the common name filters the admin UIs send
        import re

        m = re.fullmatch(r"""name\s*(=|~)\s*['"]([^'"]*)['"]""", name_filter)
        if not m:
            raise bad_request(
                "Invalid filter: collections can be filtered by name = or name ~ only."
            )
        op, value = m.groups()
        items = [
            i
            for i in items
            if (i["name"] == value if op == "=" else value.lower() in i["name"].lower())
        ]
    page = min(max(parse_int(params.get("page") or "1", "page parameter"), 1), 2**31 - 1)
    per_page = min(max(parse_int(params.get("perPage") or "30", "perPage parameter"), 1), 1000)
    total = len(items)
    chunk = items[(page - 1) * per_page : page * per_page]
    return JSON(
        {
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": math.ceil(total / per_page),
            "items": chunk,
        }
    )


async def view_collection(request: Request) -> Response:
    await _superuser(request)
    c = services(request).store.require(request.path_params["collection"])
    return JSON(c.to_dict())


async def create_collection(request: Request) -> Response:
    await _superuser(request)
    body = await parse_body(request)
    c = await services(request).store.create(body)
    return JSON(c.to_dict())


async def update_collection(request: Request) -> Response:
    await _superuser(request)
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    body = await parse_body(request)
    updated = await svc.store.update(c, body, confirm_data_loss=_flag(request, "confirmDataLoss"))
    return JSON(updated.to_dict())


async def delete_collection(request: Request) -> Response:
    await _superuser(request)
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    await svc.store.delete(c, svc.events.dropped)
    return Response(status_code=204)


async def truncate_collection(request: Request) -> Response:
    await _superuser(request)
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    await svc.records.truncate(c)
    return Response(status_code=204)


async def import_collections(request: Request) -> Response:
    await _superuser(request)
    body = await parse_body(request)
    svc = services(request)
    await svc.store.import_collections(
        body.get("collections"),
        delete_missing=bool(body.get("deleteMissing")),
        confirm_data_loss=_flag(request, "confirmDataLoss") or bool(body.get("confirmDataLoss")),
        dropped=svc.events.dropped,
    )
    return Response(status_code=204)


routes = [
    Route("/api/collections", list_collections, methods=["GET"]),
    Route("/api/collections", create_collection, methods=["POST"]),
    Route("/api/collections/import", import_collections, methods=["PUT"]),
    Route("/api/collections/{collection}", view_collection, methods=["GET"]),
    Route("/api/collections/{collection}", update_collection, methods=["PATCH"]),
    Route("/api/collections/{collection}", delete_collection, methods=["DELETE"]),
    Route("/api/collections/{collection}/truncate", truncate_collection, methods=["DELETE"]),
]
