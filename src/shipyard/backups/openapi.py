"""The backups part of the OpenAPI document (docs/backups.md): PocketBase's endpoints,
superusers only; the download takes a superuser's file token instead."""

from __future__ import annotations

from typing import Any

from shipyard.kernel import spec
from shipyard.kernel.spec import OpenAPIPart

TAG = {"name": "backups", "description": "Backups of the database and files (superusers)."}
_DOC = "docs/backups.md"
_ITEM = {
    "type": "object",
    "properties": {"key": spec.STR, "size": spec.INT, "modified": spec.STR},
    "required": ["key", "size", "modified"],
}
_ZIP = {
    "description": "The archive",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
}
_KEY = spec.path_param("key")
_NUM = {"type": "number"}
_DRILL = {
    "type": "object",
    "properties": {
        "key": spec.STR,
        "action": {"type": "string", "const": "drill"},
        "ok": {"type": "boolean"},
        "started": spec.STR,
        "finished": spec.STR,
        "size": spec.INT,
        "rto": {**_NUM, "description": "Seconds from the drill's start to the first read."},
        "rpo": {**_NUM, "description": "Seconds of live writes newer than the backup's."},
        "problems": {"type": "array", "items": spec.STR},
        "verified": {"type": "boolean"},
        "integrity": spec.STR,
        "tables": spec.INT,
        "rows": spec.INT,
        "collections": spec.INT,
        "reads": spec.INT,
        "backupNewest": spec.STR,
        "liveNewest": spec.STR,
        "startSeconds": _NUM,
        "seconds": _NUM,
    },
    "required": ["key", "action", "ok", "started", "finished", "problems"],
}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("backups", op_id, summary, _DOC, responses, **extra)


def _download(op_id: str, summary: str) -> dict[str, Any]:
    return {
        "tags": ["backups"],
        "operationId": op_id,
        "summary": summary,
        "description": f"`token`: a superuser's file token (POST /api/files/token). See {_DOC}.",
        "x-shipyard-guard": spec.GUARD_SUPERUSER,
        "parameters": [spec.query_param("token", spec.STR, "A superuser's file token.")],
        "responses": {"200": _ZIP, "403": spec.error("Forbidden"), "404": spec.error("NotFound")},
    }


def openapi() -> list[OpenAPIPart]:
    create = {
        "type": "object",
        "properties": {"name": {**spec.STR, "pattern": r"^[a-z0-9_-]+\.zip$", "maxLength": 150}},
    }
    upload = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
    bad = spec.errors(400)
    paths: dict[str, dict[str, Any]] = {
        "/api/backups": {
            "get": _op(
                "listBackups",
                "The stored backups",
                spec.json_ok({"type": "array", "items": _ITEM}, "Backups, sorted by key"),
            ),
            "post": _op(
                "createBackup",
                "Make a backup now (answers once it is made and checked)",
                {**spec.NO_CONTENT, **bad},
                requestBody={**spec.body(create), "required": False},
            ),
        },
        "/api/backups/drills": {
            "get": _op(
                "listBackupDrills",
                "The latest restore drills, newest first (docs/operations/drills.md)",
                spec.json_ok({"type": "array", "items": _DRILL}, "Drills, newest first"),
            ),
        },
        "/api/backups/upload": {
            "post": _op(
                "uploadBackup",
                "Store an uploaded archive",
                {**spec.NO_CONTENT, **bad, **spec.errors(413)},
                requestBody=upload,
            ),
        },
        "/api/backups/{key}": {
            "parameters": [_KEY],
            "get": _download("downloadBackup", "Download an archive"),
            "head": _download("headBackup", "An archive's headers"),
            "delete": _op("deleteBackup", "Delete an archive", {**spec.NO_CONTENT, **bad}),
        },
        "/api/backups/{key}/restore": {
            "parameters": [_KEY],
            "post": _op(
                "restoreBackup",
                "Restore an archive into this instance (a safety backup first)",
                {**spec.NO_CONTENT, **bad},
            ),
        },
    }
    return [OpenAPIPart(paths=paths, tags=[TAG])]
