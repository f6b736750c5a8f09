"""`GET /api/health`: liveness plus every capability's health checks (the database round
trip among them). A failing critical check answers 503 naming it; details of the failure
stay in the server log, never in the response.

Guests get nothing more. A superuser's token adds `data`: each check's result and time,
the database engine, Redis, and what extensions contribute (`Extension.health_detail`:
disk free, job queue depth and lag, database size…), plus a slot for the last backup.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.web import JSON, bearer, services
from shipyard.records.context import resolve_auth

if TYPE_CHECKING:  # the composition root, for types only
    from shipyard.services import Services

log = logging.getLogger("shipyard.health")


async def health(request: Request) -> Response:
    svc = services(request)
    failed = ""
    checks: dict[str, dict[str, Any]] = {}
    for check in svc.health_checks():
        t0 = perf_counter()
        try:
            await check.check()
            checks[check.name] = {"ok": True, "ms": round((perf_counter() - t0) * 1000, 3)}
        except Exception:
            log.warning("health check %s failed", check.name, exc_info=True)
            checks[check.name] = {"ok": False, "ms": round((perf_counter() - t0) * 1000, 3)}
            if check.critical and not failed:
                failed = check.name
    data: dict[str, Any] = {}
    if bearer(request) and await _superuser(request):
        data = await detail(svc, checks)
    if failed:
        message = "Database unavailable." if failed == "database" else f"{failed} unavailable."
        return JSON({"code": 503, "message": message, "data": data}, status_code=503)
    return JSON({"code": 200, "message": "API is healthy.", "data": data})


async def _superuser(request: Request) -> bool:
    try:
        return (await resolve_auth(request)).is_superuser
    except Exception:  # the database is down: no detail
        return False


async def detail(svc: Services, checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a superuser sees: each check, the database, Redis, and extensions' details."""
    db = checks.get("database", {})
    data: dict[str, Any] = {
        "checks": checks,
        "database": {"engine": svc.raw_db.dialect, "ok": db.get("ok"), "ms": db.get("ms")},
        "redis": {
            "configured": svc.redis is not None,
            "up": svc.redis.up if svc.redis is not None else None,
        },
        "backup": {"last": None},  # no backups yet: the slot a backup capability fills
    }
    for ext in svc.extensions:
        try:
            extra = await ext.health_detail()
        except Exception:
            log.warning("health detail of %s failed", ext.name, exc_info=True)
            continue
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    return data


routes = [Route("/api/health", health, methods=["GET", "HEAD"])]
