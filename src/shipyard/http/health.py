"""`GET /api/health`: liveness plus a database round trip."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.web import JSON, services


async def health(request: Request) -> Response:
    svc = services(request)
    try:
        await svc.db.fetchone("SELECT 1")
    except Exception:
        return JSON({"code": 503, "message": "Database unavailable.", "data": {}}, status_code=503)
    return JSON({"code": 200, "message": "API is healthy.", "data": {}})


routes = [Route("/api/health", health, methods=["GET", "HEAD"])]
