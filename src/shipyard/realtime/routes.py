"""`/api/realtime`, PocketBase's realtime API.

- `GET /api/realtime`: an SSE stream; the first event is `PB_CONNECT` with `{clientId}`;
- `POST /api/realtime {clientId, subscriptions}`: replaces the client's subscriptions and
  binds the request's auth to it (204); 404 for an unknown client, 403 when the client
  already has another auth, 400 for a malformed body (PocketBase's limits: a client id of
  1..255 characters, at most 1000 topics of at most 2500 characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.errors import FieldError, bad_request, validation_failed
from shipyard.kernel.web import parse_body, services
from shipyard.realtime.stream import EventStream
from shipyard.realtime.topics import MAX_TOPIC_LENGTH, MAX_TOPICS
from shipyard.records.context import resolve_auth

if TYPE_CHECKING:
    from shipyard.realtime.service import Realtime


def _realtime(request: Request) -> Realtime:
    rt: Realtime = services(request).extension("realtime").service
    return rt


async def connect(request: Request) -> Response:
    rt = _realtime(request)
    client = await rt.connect()
    return EventStream(rt.hub, client, rt.disconnect)


class _Length(FieldError):
    """A length error with its bounds, as PocketBase reports them (`params`)."""

    def __init__(self, code: str, message: str, lo: int, hi: int) -> None:
        super().__init__(code, message)
        self.params = {"max": hi, "min": lo}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "params": self.params}


class _Each(FieldError):
    """The errors of a list's items, by index (as PocketBase nests them)."""

    def __init__(self, items: dict[str, FieldError]) -> None:
        super().__init__("", "")
        self.items = items

    def to_dict(self) -> dict[str, Any]:
        return {i: e.to_dict() for i, e in self.items.items()}


def _form(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The body as PocketBase's form reads it, or its 400: a value of the wrong type fails
    the whole body (no field data), a bad length is reported per field."""
    cid = body.get("clientId")
    subs = body.get("subscriptions")
    cid = "" if cid is None else cid
    subs = [] if subs is None else subs
    if not isinstance(cid, str) or not (
        isinstance(subs, list) and all(isinstance(t, str) for t in subs)
    ):
        raise bad_request()
    errors: dict[str, FieldError] = {}
    if cid == "":
        errors["clientId"] = FieldError("validation_required", "Cannot be blank.")
    elif len(cid) > 255:
        errors["clientId"] = _Length(
            "validation_length_out_of_range", "The length must be between 1 and 255.", 1, 255
        )
    if len(subs) > MAX_TOPICS:
        errors["subscriptions"] = _Length(
            "validation_length_too_long",
            f"The length must be no more than {MAX_TOPICS}.",
            0,
            MAX_TOPICS,
        )
    else:
        long: dict[str, FieldError] = {
            str(i): _Length(
                "validation_length_too_long",
                f"The length must be no more than {MAX_TOPIC_LENGTH}.",
                0,
                MAX_TOPIC_LENGTH,
            )
            for i, t in enumerate(subs)
            if len(t) > MAX_TOPIC_LENGTH
        }
        if long:
            errors["subscriptions"] = _Each(long)
    if errors:
        raise validation_failed("Something went wrong while processing your request.", errors)
    return cid, list(subs)


async def subscribe(request: Request) -> Response:
    rt = _realtime(request)
    client_id, topics = _form(await parse_body(request))
    auth = await resolve_auth(request)
    await rt.subscribe(client_id, auth, topics)
    return Response(status_code=204)


routes = [
    Route("/api/realtime", connect, methods=["GET"]),
    Route("/api/realtime", subscribe, methods=["POST"]),
]
