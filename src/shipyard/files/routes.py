"""`GET /api/files/{collection}/{recordId}/{filename}` and `POST /api/files/token`, as
PocketBase answers them: files are public unless their field is `protected`, in which
case a file token (`?token=`) must name someone the collection's view rule lets see the
record; `?thumb=` serves a thumbnail of an image for `100x100`, a size the field lists or an
allowed responsive width (else the original), in the format the client's `Accept` takes
(files/images.py); `?download=1` forces an attachment."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.files import tokens
from shipyard.files.serve import respond
from shipyard.files.store import file_key
from shipyard.images import PoolBusy
from shipyard.kernel.errors import ApiError, not_found, unauthorized
from shipyard.kernel.web import JSON, services
from shipyard.records.auth import ANONYMOUS, Auth
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext, resolve_auth
from shipyard.records.fields import Field, FileField
from shipyard.tools.storage import StorageError


def _files(request: Request) -> Any:
    return services(request).extension("files")


async def file_token(request: Request) -> Response:
    auth = await resolve_auth(request)
    if auth.collection is None:
        raise unauthorized("Missing auth context.")
    svc = services(request)
    rec = await svc.auth.auth_record_by(auth.collection, "id", auth.id)
    if rec is None:
        raise unauthorized("Missing auth context.")
    token = tokens.issue(
        svc.settings.secret_key,
        auth,
        str(rec.get("tokenKey", "")),
        svc.settings.files_token_duration,
    )
    return JSON({"token": token})


async def _token_auth(request: Request, token: str) -> Auth:
    claims = tokens.claims_of(token) if token else None
    if claims is None:
        return ANONYMOUS
    svc = services(request)
    coll = svc.store.get(claims["collectionId"])
    if coll is None or coll.type != "auth":
        return ANONYMOUS
    rec = await svc.auth.auth_record_by(coll, "id", claims["id"])
    if rec is None or not tokens.verify(
        svc.settings.secret_key, token, coll, str(rec.get("tokenKey", ""))
    ):
        return ANONYMOUS
    return Auth(collection=coll, record={k: v for k, v in rec.items() if k != "tokenKey"})


async def _record(request: Request, c: Collection, rid: str, auth: Auth) -> dict[str, Any]:
    svc = services(request)
    ctx = RequestContext.from_scope(request.scope, auth)
    try:
        return await svc.records.view(c, rid, ctx)
    except ApiError:
        raise not_found() from None


async def _field_holding(svc: Any, c: Collection, rid: str, name: str) -> Field | None:
    """The file field of record `rid` that holds `name`, read straight from its row: the
    hot path of every download (the rules come after, for protected files only)."""
    fields = [f for f in c.fields if isinstance(f, FileField)]
    if not fields:
        return None
    cols = ", ".join(f'"{f.name}"' for f in fields)
    row = await svc.db.fetchone(f'SELECT {cols} FROM "{c.table}" WHERE "id" = ?', (rid,))
    for f, raw in zip(fields, row or (), strict=False):
        if isinstance(raw, str) and f.is_multi:
            with contextlib.suppress(orjson.JSONDecodeError):
                raw = orjson.loads(raw)
        if name == raw or (isinstance(raw, list) and name in raw):
            return f
    return None


async def download(request: Request) -> Response:
    svc = services(request)
    c = svc.store.get(request.path_params["collection"])
    rid, name = request.path_params["recordId"], request.path_params["filename"]
    if c is None or not rid:
        raise not_found()
    field = await _field_holding(svc, c, rid, name)
    if field is None:
        raise not_found()
    if field.options.get("protected"):
        auth = await _token_auth(request, request.query_params.get("token", ""))
        await _record(request, c, rid, auth)  # the view rule, for the token's owner
    files = _files(request)
    storage = await files.store.storage_for_download()
    key, served = file_key(c.id, rid, name), name
    vary = False
    try:
        stat = await storage.stat(key)
        if stat is None:
            raise not_found()
        thumb = request.query_params.get("thumb", "")
        field_thumbs = [str(t) for t in field.options.get("thumbs") or []]
        accept = request.headers.get("accept")
        fmt = files.images.thumb_format(thumb, field_thumbs, stat.content_type, accept)
        if fmt is not None:
            vary = True  # the format depends on Accept: caches keep one copy per format
            where = (c.id, rid, name)
            got = await files.images.thumb(storage, key, where, thumb, fmt, stat.content_type)
            if got is not None:
                key, stat, served = got
    except PoolBusy as exc:
        raise ApiError(503, f"The thumbnail is not ready: {exc.message}.") from exc
    except StorageError as exc:
        raise ApiError(503, "The file storage is unavailable, try again later.") from exc
    response = respond(request, storage, key, served, stat)
    if vary:
        response.headers["Vary"] = "Accept"
    return response


routes = [
    Route("/api/files/token", file_token, methods=["POST"]),
    Route("/api/files/{collection}/{recordId}/{filename}", download, methods=["GET", "HEAD"]),
]
