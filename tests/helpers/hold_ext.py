"""A team extension whose route holds its request until the test lets it go: requests that
stay in flight for as long as a test needs, in a real server process.

`GET /api/test-hold/{name}` writes `<data dir>/held-<name>` once it is running, then waits
until `<data dir>/release` exists, and answers 200.
"""

from __future__ import annotations

import asyncio
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

        return [Route("/api/test-hold/{name}", hold, methods=["GET"])]


def extension(services: Any) -> Hold:
    return Hold(Path(services.settings.data_dir))
