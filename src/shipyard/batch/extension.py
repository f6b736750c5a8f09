"""Batch requests as an extension: the route, its OpenAPI part and the `batch` settings
section. The one transaction is the database seam's shared transaction (tools/db_base.py),
so records needs nothing batch-specific."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer

from .openapi import openapi
from .routes import routes
from .section import BATCH


class BatchExtension(Extension):
    def __init__(self) -> None:
        super().__init__(name="batch", requires=("records", "ratelimit"))

    def routes(self) -> Sequence[BaseRoute]:
        return routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return openapi()

    def settings_sections(self) -> Sequence[Section]:
        return (BATCH,)
