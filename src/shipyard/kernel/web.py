"""Request and response plumbing shared by the API modules: JSON via orjson, errors in
PocketBase's shape, bounded body reading, the bearer token (who it names is resolved in
records/context.py: kernel knows no auth records)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from shipyard.kernel.errors import ApiError, bad_request, bad_value, busy, too_large, too_slow
from shipyard.kernel.params import parse_int
from shipyard.kernel.uploads import Upload
from shipyard.tools.db import DataValueError, PoolExhausted, QueryTimeout

if TYPE_CHECKING:  # the composition root, for types only: it imports every capability
    from shipyard.services import Services

log = logging.getLogger("shipyard.api")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(err: ApiError) -> Response:
    return JSON(err.to_dict(), status_code=err.status, headers=err.headers or None)


# database failures that are the request's or the load's doing, never the server's: both
# read paths (the gateway and the Starlette routes) answer them through `db_error`
DB_ERRORS = (DataValueError, QueryTimeout, PoolExhausted)


def db_error(exc: Exception, method: str, path: str) -> ApiError:
    """The API answer to one of DB_ERRORS (logged when it is about load, not input)."""
    if isinstance(exc, DataValueError):
        return bad_value()
    if isinstance(exc, QueryTimeout):
        log.warning("query time limit hit on %s %s", method, path)
        return too_slow()
    log.warning("database pool exhausted on %s %s", method, path)
    return busy()


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or what a trusted proxy forwarded (the gateway
    rewrote the scope, kernel/proxies.py)."""
    return request.client.host if request.client else ""


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def query_params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large(limit)
        except ValueError:
            raise bad_request("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # lets request.form() parse what was already read
    return body


async def parse_body(request: Request) -> dict[str, Any]:
    """A JSON object, or multipart / urlencoded fields (repeated keys become lists,
    `@jsonPayload` is merged), as PocketBase accepts them."""
    svc = services(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":  # streamed: files spool to disk, never all in memory
        return await _parse_form(limited(request, svc.settings.files_max_upload_size))
    body = await read_body(request, svc.settings.max_body_size)
    if ctype == "application/x-www-form-urlencoded":
        return await _parse_form(request)
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"Failed to read the request body: invalid JSON ({exc.msg} at position {exc.pos})."
        ) from None
    if not isinstance(data, dict):
        raise bad_request("Failed to read the request body: expected a JSON object.")
    return data


def limited(request: Request, limit: int) -> Request:
    """The request with its body counted as it streams: past `limit` bytes, a 413."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise bad_request("Invalid Content-Length header.") from None
        if too_big:
            raise too_large(limit)
    received = 0

    async def receive() -> Any:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(limit)
        return message

    limited = Request(request.scope, receive)
    return limited


def close_uploads(body: dict[str, Any]) -> None:
    """Remove the temporary files of a parsed body's uploads (after the write)."""
    for value in body.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Upload):
                item.file.close()


async def _parse_form(request: Request) -> dict[str, Any]:
    try:
        form = await request.form(max_files=100, max_fields=2000)
    except ApiError:
        raise
    except Exception as exc:  # malformed multipart of any kind is the client's error
        raise bad_request(f"Failed to read the multipart body: {exc}") from None
    out: dict[str, Any] = {}
    try:
        for key, part in form.multi_items():
            # a file's spooled temporary file outlives the form: close_uploads removes it
            value: Any = (
                Upload.of(part.filename or "", part.file) if isinstance(part, UploadFile) else part
            )
            if key == "@jsonPayload":
                try:
                    payload = orjson.loads(value if isinstance(value, str) else b"")
                except orjson.JSONDecodeError:
                    raise bad_request("Invalid @jsonPayload: not valid JSON.") from None
                if not isinstance(payload, dict):
                    raise bad_request("Invalid @jsonPayload: expected a JSON object.")
                out.update(payload)
                continue
            if key in out:
                prev = out[key]
                out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                out[key] = value
    except BaseException:
        await form.close()
        raise
    return out


def token_from_header(raw: str) -> str:
    """The token of an Authorization header value, sent raw or as `Bearer <token>`."""
    raw = raw.strip()
    if raw[:7].lower() == "bearer ":
        raw = raw[7:].strip()
    return raw


def bearer(request: Request) -> str:
    return token_from_header(request.headers.get("authorization", ""))


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A bounded integer query parameter; anything else is a 400 naming it."""
    raw = request.query_params.get(name, "")
    return parse_int(raw, f"{name} parameter", low, high) if raw else default
