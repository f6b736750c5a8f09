"""The public directory at `/`: what answers a request that no route matched.

It is the router's not-found handler rather than a catch-all route, so it shadows nothing:
every capability's routes (and a team's) match first, a wrong method on a known path is
still a 405, and `/api/*` and `/metrics` are never served from the directory (an unknown
API path keeps its JSON 404), whatever files it holds.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.tools.staticfiles import StaticDirectory

RESERVED = ("/api", "/metrics")


class _Label:
    """What request telemetry reads as the route of a served file (one label for all)."""

    path = "/{path...}"


_ROUTE = _Label()


def reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED)


class PublicDirectory:
    """An ASGI app for the router's `default`: serves GET and HEAD from the directory."""

    def __init__(self, directory: StaticDirectory, fallback: ASGIApp | None = None) -> None:
        self.directory = directory
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not reserved(path):
            response = await self.directory.respond(
                path.lstrip("/"), Headers(scope=scope), scope["query_string"].decode("latin-1")
            )
            if response is not None:
                scope["route"] = _ROUTE
                await response(scope, receive, send)
                return
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        raise HTTPException(404)


__all__ = ["RESERVED", "PublicDirectory", "reserved"]
