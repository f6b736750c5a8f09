"""A team extension whose route holds its request until the test lets it go: requests that
stay in flight for as long as a test needs, in a real server process.

`GET /api/test-hold/{name}` writes `<data dir>/held-<name>` once it is running, then waits
until `<data dir>/release` exists, and answers 200.

`GET /api/test-busy` runs 30 ms without yielding: many of them at once keep the loop
behind, as an overload does.

`GET /api/test-block` holds the whole event loop instead (a request that runs without
yielding, as a slow SQLite query does): it writes `<data dir>/blocking`, waits without
yielding until `<data dir>/unblock` exists, and 1 s more for requests sent meanwhile to
reach the server, then answers 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shipyard.kernel.extension import Extension


class Hold(Extension):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="hold")
        self.data_dir = data_dir

    def routes(self) -> Sequence[BaseRoute]:
        async def hold(request: Request) -> Response:
            (self.data_dir / f"held-{request.path_params['name']}").touch()
            while not (self.data_dir / "release").exists():
                await asyncio.sleep(0.02)
            return Response(b"released")

        async def block(request: Request) -> Response:
            (self.data_dir / "blocking").touch()
            while not (self.data_dir / "unblock").exists():
                time.sleep(0.01)  # blocking the loop is the point
            time.sleep(1.0)
            return Response(b"unblocked")

        async def busy(request: Request) -> Response:
            time.sleep(0.03)  # CPU the loop cannot interleave, as a burst of work
            return Response(b"done")

        return [
            Route("/api/test-busy", busy, methods=["GET"]),
            Route("/api/test-hold/{name}", hold, methods=["GET"]),
            Route("/api/test-block", block, methods=["GET"]),
        ]


def extension(services: Any) -> Hold:
    return Hold(Path(services.settings.data_dir))
