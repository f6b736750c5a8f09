"""The webhooks part of the OpenAPI document: the routes describe themselves (routes.py);
this adds the tag they carry."""

from __future__ import annotations

from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.webhooks import routes

TAG = {
    "name": "webhooks",
    "description": "Outgoing webhook subscriptions and their delivery log (superusers only).",
}


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]
