"""The files part of the OpenAPI document: downloads and file tokens (docs/files.md)."""

from __future__ import annotations

from typing import Any

from shipyard.kernel import spec
from shipyard.kernel.spec import OpenAPIPart, Viewer

TAG = {"name": "files", "description": "Record files: downloads, thumbnails, file tokens."}
_DOC = "docs/files.md"
_BYTES = {"description": "The file (206 with a Range; 304 when not modified)",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}  # fmt: skip


def _download() -> dict[str, Any]:
    return {
        "tags": ["files"],
        "operationId": "downloadFile",
        "summary": "Download a record's file",
        "description": "Public unless the field is protected: then `token` (a file token) "
        f"must name someone the view rule lets see the record. See {_DOC}.",
        "parameters": [
            spec.query_param("thumb", spec.STR, "`100x100` or a size in the field's `thumbs`."),
            spec.query_param("download", spec.STR, "`1`: Content-Disposition attachment."),
            spec.query_param("token", spec.STR, "A file token (POST /api/files/token)."),
        ],
        "responses": {"200": _BYTES, "404": spec.error("NotFound")},
    }


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    token = spec.ok(
        {"type": "object", "properties": {"token": spec.STR}, "required": ["token"]},
        "A file token",
    )
    paths: dict[str, dict[str, Any]] = {
        "/api/files/token": {
            "post": {
                "tags": ["files"],
                "operationId": "fileToken",
                "summary": "A short-lived token for protected files",
                "description": f"Needs an auth token. See {_DOC}.",
                "responses": {"200": token, "401": spec.error("Unauthorized")},
            }
        },
        "/api/files/{collection}/{recordId}/{filename}": {
            "parameters": [
                spec.path_param("collection"),
                spec.path_param("recordId"),
                spec.path_param("filename"),
            ],
            "get": _download(),
            "head": {**_download(), "operationId": "headFile", "summary": "A file's headers"},
        },
    }
    return [OpenAPIPart(paths=paths, tags=[TAG])]
