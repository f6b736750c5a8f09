"""The database part of the OpenAPI document: the routes describe themselves (routes.py);
this adds the tag they carry."""

from __future__ import annotations

from shipyard.dbadvice import routes
from shipyard.kernel.spec import OpenAPIPart, Viewer

TAG = {"name": "db", "description": "Slow-query log and index advisor (superusers only)."}


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]
