"""The realtime part of the OpenAPI document: `/api/realtime` (SSE and subscriptions)."""

from __future__ import annotations

from shipyard.kernel.spec import (
    GUARD_PUBLIC,
    NO_CONTENT,
    STR,
    STRS,
    OpenAPIPart,
    Viewer,
    body,
    errors,
)

TAG = {"name": "realtime", "description": "PocketBase's realtime API: record events over SSE."}

_CONNECT_DOC = (
    "Opens a Server-Sent Events stream. The first event, `PB_CONNECT`, carries "
    "`{clientId}`; then each event is named by the subscribed topic and carries "
    "`{action, record}` for every committed change the subscriber's rules let it see. "
    "The stream ends after the idle timeout without events (the SDK reconnects). "
    "See docs/realtime.md."
)
_SUBSCRIBE_DOC = (
    "Replaces the client's subscriptions (`posts/*`, `posts/RECORD_ID`, with options "
    '`?options={"query": {...}, "headers": {...}}`) and binds the request\'s auth to the '
    "client: a client with an auth keeps it (403 otherwise). 404 for an unknown client."
)


# one server-sent event (`PB_CONNECT` first, then `collection/topic` events): what tools that
# read the stream (schemathesis) check each event against
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string", "description": "the event's JSON"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    paths = {
        "/api/realtime": {
            "get": {
                "tags": ["realtime"],
                "operationId": "realtimeConnect",
                "summary": "Open a realtime event stream",
                "description": _CONNECT_DOC,
                "x-shipyard-guard": GUARD_PUBLIC,
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {"text/event-stream": {"schema": SSE_EVENT}},
                    },
                    **errors(503),
                },
            },
            "post": {
                "tags": ["realtime"],
                "operationId": "realtimeSubscribe",
                "summary": "Set a realtime client's subscriptions",
                "description": _SUBSCRIBE_DOC,
                "x-shipyard-guard": GUARD_PUBLIC,
                "requestBody": body(
                    {
                        "type": "object",
                        "properties": {
                            "clientId": {**STR, "minLength": 1, "maxLength": 255},
                            "subscriptions": {**STRS, "maxItems": 1000},
                        },
                        "required": ["clientId"],
                    }
                ),
                "responses": {**NO_CONTENT, **errors(400, 403, 404)},
            },
        }
    }
    return [OpenAPIPart(paths=paths, tags=[TAG])]
