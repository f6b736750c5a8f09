"""The slow-query log and index advisor as an extension (its API; the log itself is part
of the database platform, since it times every statement)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.dbadvice import openapi as spec
from shipyard.dbadvice import routes
from shipyard.kernel.extension import Extension
from shipyard.kernel.spec import OpenAPIPart, Viewer


class DbAdviceExtension(Extension):
    def __init__(self) -> None:
        super().__init__(name="dbadvice", requires=("records",))

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes
