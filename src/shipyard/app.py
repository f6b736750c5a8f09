"""Wires settings to implementations and routes; the only place that knows both."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors.envelope import INGEST_PATH
from shipyard.http import health, openapi, openapi_system
from shipyard.http.admission import Admission
from shipyard.http.cors import Cors
from shipyard.http.gateway import Gateway
from shipyard.http.headers import SecurityHeaders
from shipyard.http.openapi import without_collections
from shipyard.http.router import IndexedRouter
from shipyard.kernel.errors import ApiError
from shipyard.kernel.proxies import TrustedProxies
from shipyard.kernel.telemetry import UNMATCHED
from shipyard.kernel.web import DB_ERRORS, JSON, db_error, error_response
from shipyard.logs import lines as log_lines
from shipyard.services import Services
from shipyard.settings import Settings, load_settings

log = logging.getLogger("shipyard")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101  (narrows a type for mypy; established above)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101  (narrows a type for mypy; established above)
    messages = {404: "The requested resource wasn't found.", 405: "Method not allowed."}
    msg = messages.get(exc.status_code, str(exc.detail))
    return JSON(
        {"status": exc.status_code, "message": msg, "data": {}}, status_code=exc.status_code
    )


async def _db_error(request: Request, exc: Exception) -> Response:
    return error_response(db_error(exc, request.method, request.url.path))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    svc = getattr(request.app.state, "services", None)
    if svc is not None:
        route = getattr(request.scope.get("route"), "path", UNMATCHED)
        svc.telemetry.exception(exc, {"kind": "request", "method": request.method, "route": route})
    return JSON(
        {
            "status": 500,
            "message": "Something went wrong while processing your request.",
            "data": {},
        },
        status_code=500,
    )


def create_app(settings: Settings | None = None) -> Gateway:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = await Services.open(settings)
        await startup(svc)
        await svc.start()
        # each capability's routes, as its extension contributes them
        app.router.routes.extend(svc.routes())
        # what no route matched: the public directory at / (assets/public.py)
        app.router.default = svc.extension("assets").public_app(not_found)
        app.state.openapi_parts = [without_collections(openapi_system.openapi)] + [
            ext.openapi for ext in svc.extensions
        ]
        app.state.services = svc
        try:
            yield
        finally:
            del app.router.routes[len(own_routes) :]
            app.router.default = not_found
            await svc.close()

    own_routes = [*health.routes, *openapi.routes]
    app = Starlette(
        routes=list(own_routes),
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            **{cls: _db_error for cls in DB_ERRORS},
            Exception: _server_error,
        },
    )
    # the same routes, found by their first two path segments (http/router.py)
    app.router = IndexedRouter(list(own_routes), lifespan=lifespan)
    not_found = app.router.default
    app.state.settings = settings
    return Gateway(
        app,
        Cors.from_settings(settings, open_paths=INGEST_PATH),
        TrustedProxies.parse(settings.trusted_proxies),
        security=SecurityHeaders.from_settings(settings),
        admission=Admission.from_settings(settings),
    )


async def startup(svc: Services) -> None:
    """Apply the declarative schema file and the demo data set when settings ask for them."""
    from shipyard import declarative

    if svc.settings.schema_file:
        await declarative.apply_file(svc, svc.settings.schema_file)
    if svc.settings.demo:
        from shipyard import demo

        await demo.load(svc)


def configure_logging(level: str, fmt: str = "json") -> None:
    """Shipyard's own log lines (`shipyard.*`) at the configured level: JSON lines on
    stdout (`fmt="json"`, docs/logs.md) or text on stderr, unless the embedding program
    configured logging itself."""
    log_lines.configure(level, fmt)


def app_factory() -> Gateway:
    """Entry point for server processes (`granian --factory shipyard.app:app_factory`)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
