"""PocketBase's backups API, answered as PocketBase answers it (statuses, messages, error
codes checked against the binary in tests/backups): superusers only; the download
takes a superuser's file token (`POST /api/files/token`) in `?token=`, since browsers
download through a plain link."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.backups.service import BUSY, KEY_RE, NAME_RE, BackupError, Busy, iso
from shipyard.files import tokens
from shipyard.files.serve import respond
from shipyard.kernel.errors import ApiError, FieldError, bad_request, not_found
from shipyard.kernel.uploads import Upload
from shipyard.kernel.web import JSON, limited, read_body, services
from shipyard.records.collections import SUPERUSERS
from shipyard.records.context import require_superuser

T = TypeVar("T")
LOADING = "An error occurred while loading the submitted data."
VALIDATING = "An error occurred while validating the submitted data."
FORBIDDEN = "Insufficient permissions to access the resource."


def _backups(request: Request) -> Any:
    return services(request).extension("backups").backups


def _invalid(field: str, code: str, message: str) -> ApiError:
    return ApiError(400, VALIDATING, {field: FieldError(code, message).to_dict()})


async def _guarded(work: Awaitable[T]) -> T:
    """Run to the end even if the client goes away; Busy and BackupError become 400s."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except (Busy, BackupError) as exc:
        raise bad_request(str(exc)) from None


async def list_backups(request: Request) -> Response:
    await require_superuser(request)
    items = await _backups(request).listing()
    return JSON([{"key": i.key, "size": i.size, "modified": iso(i.modified)} for i in items])


async def create(request: Request) -> Response:
    await require_superuser(request)
    backups = _backups(request)
    if await backups.state.running():
        raise bad_request(BUSY)
    body = await read_body(request, services(request).settings.max_body_size)
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise bad_request(LOADING) from None
    if not isinstance(data, dict) or not isinstance(data.get("name", ""), str):
        raise bad_request(LOADING)
    name: str = data.get("name", "")
    if name:
        if len(name) > 150:
            err = _invalid(
                "name", "validation_length_out_of_range", "The length must be between 1 and 150."
            )
            err.data["name"]["params"] = {"max": 150, "min": 1}
            raise err
        if not NAME_RE.match(name):
            raise _invalid("name", "validation_match_invalid", "Must be in a valid format.")
        if await backups.exists(name):
            raise _invalid(
                "name",
                "validation_backup_name_exists",
                "The backup file name is invalid or already exists.",
            )
    await _guarded(backups.create(name))
    return Response(status_code=204)


async def _form_file(request: Request, limit: int) -> Any:
    try:
        form = await limited(request, limit).form(max_files=1, max_fields=10)
    except ApiError:
        raise
    except Exception as exc:  # malformed multipart of any kind is the client's error
        raise bad_request(f"Failed to read the multipart body: {exc}") from None
    return form


async def upload(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    backups = _backups(request)
    form = await _form_file(request, svc.settings.backups_max_upload_size)
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise _invalid("file", "validation_required", "Cannot be blank.")
        up = Upload.of(part.filename or "", part.file)
        name = (part.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        if up.mime != "application/zip":
            raise _invalid(
                "file",
                "validation_invalid_mime_type",
                f'"{name}" mime type must be one of: application/zip.',
            )
        if not KEY_RE.match(name):
            raise _invalid("file", "validation_match_invalid", "Must be in a valid format.")
        if await backups.exists(name):
            raise _invalid(
                "file",
                "validation_backup_name_exists",
                "Backup file with the specified name already exists.",
            )
        await _guarded(backups.upload(name, up.file, up.size))
    finally:
        await form.close()
    return Response(status_code=204)


async def _token_is_superuser(request: Request, token: str) -> bool:
    claims = tokens.claims_of(token) if token else None
    if claims is None:
        return False
    svc = services(request)
    coll = svc.store.get(claims["collectionId"])
    if coll is None or coll.name != SUPERUSERS:
        return False
    rec = await svc.auth.auth_record_by(coll, "id", claims["id"])
    return rec is not None and tokens.verify(
        svc.settings.secret_key, token, coll, str(rec.get("tokenKey", ""))
    )


async def download(request: Request) -> Response:
    if not await _token_is_superuser(request, request.query_params.get("token", "")):
        raise ApiError(403, FORBIDDEN)
    key = request.path_params["key"]
    if not KEY_RE.match(key):
        raise not_found()
    storage = await _backups(request).target.storage()
    stat = await storage.stat(key)
    if stat is None:
        raise not_found()
    return respond(request, storage, key, key, stat)


async def delete(request: Request) -> Response:
    await require_superuser(request)
    key = request.path_params["key"]
    if not KEY_RE.match(key):
        raise bad_request("Invalid or already deleted backup file.")
    await _guarded(_backups(request).delete(key))
    return Response(status_code=204)


async def restore(request: Request) -> Response:
    await require_superuser(request)
    key = request.path_params["key"]
    backups = _backups(request)
    if await backups.state.running():
        raise bad_request(BUSY)
    if not KEY_RE.match(key) or not await backups.exists(key):
        raise bad_request("Missing or invalid backup file.")
    await _guarded(backups.restore(key))
    return Response(status_code=204)


DRILLS_SHOWN = 50


async def list_drills(request: Request) -> Response:
    """The latest restore drills, newest first (docs/operations/drills.md)."""
    await require_superuser(request)
    runs = await _backups(request).state.runs("drill", DRILLS_SHOWN)
    return JSON(
        [{**r.to_json(), "started": iso(r.started), "finished": iso(r.finished)} for r in runs]
    )


routes = [
    Route("/api/backups", list_backups, methods=["GET"]),
    Route("/api/backups/drills", list_drills, methods=["GET"]),
    Route("/api/backups", create, methods=["POST"]),
    Route("/api/backups/upload", upload, methods=["POST"]),
    Route("/api/backups/{key}", download, methods=["GET", "HEAD"]),
    Route("/api/backups/{key}", delete, methods=["DELETE"]),
    Route("/api/backups/{key}/restore", restore, methods=["POST"]),
]
