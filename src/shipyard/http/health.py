"""`GET /api/health`: liveness plus every capability's health checks (the database round
trip among them). A failing critical check answers 503 naming it; details of the failure
stay in the server log, never in the response."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.web import JSON, services

log = logging.getLogger("shipyard.health")


async def health(request: Request) -> Response:
    for check in services(request).health_checks():
        try:
            await check.check()
        except Exception:
            log.warning("health check %s failed", check.name, exc_info=True)
            if check.critical:
                message = (
                    "Database unavailable."
                    if check.name == "database"
                    else (f"{check.name} unavailable.")
                )
                return JSON({"code": 503, "message": message, "data": {}}, status_code=503)
    return JSON({"code": 200, "message": "API is healthy.", "data": {}})


routes = [Route("/api/health", health, methods=["GET", "HEAD"])]
