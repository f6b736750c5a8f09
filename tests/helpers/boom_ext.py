"""A team extension with a route that fails: a real unhandled exception inside Shipyard,
which error tracking must record in the built-in project."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shipyard.kernel.extension import Extension


def _divide(a: int, b: int) -> float:
    return a / b


class Boom(Extension):
    def __init__(self) -> None:
        super().__init__(name="boom")

    def routes(self) -> Sequence[BaseRoute]:
        async def boom(request: Request) -> Response:
            _divide(1, 0)
            return Response()

        return [Route("/api/test-boom/{n}", boom, methods=["GET"])]


def extension(services: Any) -> Boom:
    return Boom()
