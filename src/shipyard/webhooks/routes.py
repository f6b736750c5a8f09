"""`/api/webhooks…`: outgoing webhook subscriptions and their delivery log (superusers).

The secret is returned whole only by the request that creates (or sets) it; afterwards
responses carry `secretHint` (its last characters) so it never leaks through a listing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel import spec
from shipyard.kernel.web import JSON, int_param, parse_body, services
from shipyard.records.context import require_superuser


async def list_webhooks(request: Request) -> Response:
    await require_superuser(request)
    hooks = await services(request).webhooks.all()
    return JSON({"items": [w.to_json() for w in hooks], "totalItems": len(hooks)})


async def create_webhook(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    w = await svc.webhooks.create(await parse_body(request))
    return JSON(w.to_json(with_secret=True))


async def get_webhook(request: Request) -> Response:
    await require_superuser(request)
    w = await services(request).webhooks.get(request.path_params["id"])
    return JSON(w.to_json())


async def update_webhook(request: Request) -> Response:
    await require_superuser(request)
    body = await parse_body(request)
    w = await services(request).webhooks.update(request.path_params["id"], body)
    return JSON(w.to_json(with_secret="secret" in body))


async def delete_webhook(request: Request) -> Response:
    await require_superuser(request)
    await services(request).webhooks.delete(request.path_params["id"])
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    await require_superuser(request)
    page = int_param(request, "page", 1, 1, 1_000_000)
    per_page = int_param(request, "perPage", 30, 1, 500)
    out = await services(request).webhooks.deliveries(
        request.path_params["id"],
        page=page,
        per_page=per_page,
        event=request.query_params.get("event") or None,
    )
    return JSON(out)


routes = [
    Route("/api/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/webhooks", create_webhook, methods=["POST"]),
    Route("/api/webhooks/{id}", get_webhook, methods=["GET"]),
    Route("/api/webhooks/{id}", update_webhook, methods=["PATCH"]),
    Route("/api/webhooks/{id}", delete_webhook, methods=["DELETE"]),
    Route("/api/webhooks/{id}/deliveries", list_deliveries, methods=["GET"]),
]


# ---------------------------------------------------------------------- OpenAPI

_EVENTS = {"type": "array", "items": {"type": "string", "enum": ["create", "update", "delete"]}}
_WEBHOOK = {
    "type": "object",
    "properties": {
        "id": spec.STR,
        "name": spec.STR,
        "collection": {**spec.STR, "description": 'A collection name, or "*" for all.'},
        "events": _EVENTS,
        "url": spec.STR,
        "active": spec.BOOL,
        "secret": {**spec.STR, "description": "Only in the answer that created or set it."},
        "secretHint": spec.STR,
        "created": spec.STR,
        "updated": spec.STR,
    },
    "required": ["id", "name", "collection", "events", "url", "active", "secretHint"],
}
_INPUT = {
    "type": "object",
    "properties": {
        "name": spec.STR,
        "collection": spec.STR,
        "events": _EVENTS,
        "url": {**spec.STR, "description": "http(s); private addresses need the allow-list."},
        "secret": {**spec.STR, "description": "whsec_… (generated when omitted)."},
        "active": spec.BOOL,
    },
}
_DELIVERY = {
    "type": "object",
    "properties": {
        "id": spec.INT,
        "event": spec.STR,
        "type": spec.STR,
        "job": {"type": ["integer", "null"]},
        "attempt": spec.INT,
        "status": {"type": "string", "enum": ["delivered", "failed", "refused"]},
        "code": {"type": ["integer", "null"]},
        "durationMs": spec.NUM,
        "error": spec.STR,
        "response": spec.STR,
        "at": spec.STR,
    },
}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("webhooks", op_id, summary, "docs/webhooks.md", responses, **extra)


def openapi_paths() -> dict[str, Any]:
    one = spec.ok(_WEBHOOK, "The subscription")
    listing = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _WEBHOOK}, "totalItems": spec.INT},
        "required": ["items", "totalItems"],
    }
    bad = {"400": spec.error("BadRequest"), "413": spec.error("TooLarge")}
    return {
        "/api/webhooks": {
            "get": _op("listWebhooks", "List webhook subscriptions", {"200": spec.ok(listing, "All")}),
            "post": _op("createWebhook", "Subscribe a URL to record events",
                        {"200": one, **bad}, requestBody=spec.body({**_INPUT, "required": ["name", "collection", "url"]})),
        },
        "/api/webhooks/{id}": {
            "parameters": [spec.path_param("id")],
            "get": _op("getWebhook", "One subscription", {"200": one, "404": spec.error("NotFound")}),
            "patch": _op("updateWebhook", "Change a subscription",
                         {"200": one, **bad, "404": spec.error("NotFound")}, requestBody=spec.body(_INPUT)),
            "delete": _op("deleteWebhook", "Delete a subscription (pending deliveries are dropped)",
                          {"204": {"description": "Deleted"}, "404": spec.error("NotFound")}),
        },
        "/api/webhooks/{id}/deliveries": {
            "parameters": [spec.path_param("id")],
            "get": _op(
                "listWebhookDeliveries",
                "The delivery log of a subscription, newest first",
                {"200": spec.ok(spec.page_of(_DELIVERY, "Attempts"), "Deliveries"),
                 "400": spec.error("BadRequest"), "404": spec.error("NotFound")},
                parameters=[
                    spec.query_param("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "Page."),
                    spec.query_param("perPage", {"type": "integer", "minimum": 1, "maximum": 500}, "Per page."),
                    spec.query_param("event", spec.STR, "Only this event id."),
                ],
            ),
        },
    }  # fmt: skip


__all__ = ["openapi_paths", "routes"]
