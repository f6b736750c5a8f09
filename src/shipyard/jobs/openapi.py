"""The jobs part of the OpenAPI document: the routes describe themselves (routes.py); this
adds the tag they carry."""

from __future__ import annotations

from shipyard.jobs import routes
from shipyard.kernel.spec import OpenAPIPart, Viewer

TAG = {
    "name": "jobs",
    "description": "Background jobs: status, enqueue, retry, cancel, exports (superusers only).",
}


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]
