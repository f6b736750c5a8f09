"""Auth endpoints of auth collections: password login, refresh, impersonation, and the
account actions (verification, password reset, e-mail change), as PocketBase has them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.auth import accounts
from shipyard.auth.accounts import require_own_collection
from shipyard.kernel.errors import ApiError
from shipyard.kernel.web import JSON, client_ip, parse_body, services
from shipyard.records.context import resolve_auth


async def auth_with_password(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    body = await parse_body(request)
    token, record = await svc.auth.auth_with_password(
        c, body.get("identity"), body.get("password"), body.get("identityField"), client_ip(request)
    )
    return JSON({"token": token, "record": record})


async def auth_refresh(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    auth = await resolve_auth(request)
    require_own_collection(auth, c)
    token, record = await svc.auth.refresh(auth)
    return JSON({"token": token, "record": record})


async def impersonate(request: Request) -> Response:
    svc = services(request)
    c = svc.store.require(request.path_params["collection"])
    actor = await resolve_auth(request)
    if actor.collection is None:
        raise ApiError(401, "The request requires valid record authorization token.")
    body = await parse_body(request)
    token, record = await svc.auth.impersonate(
        actor, c, request.path_params["id"], body.get("duration")
    )
    return JSON({"token": token, "record": record})


def _account_action(action: str) -> Any:
    async def handler(request: Request) -> Response:
        svc = services(request)
        c = svc.store.require(request.path_params["collection"])
        if action == "request-email-change":
            # the token is checked before the body is read, as PocketBase's middleware does
            auth = await resolve_auth(request)
            require_own_collection(auth, c)
            body = await parse_body(request)
            await accounts.request_email_change(svc, c, auth, body, client_ip(request))
            return Response(status_code=204)
        body = await parse_body(request)
        if action == "request-verification":
            await accounts.request(svc, c, body, "verification", client_ip(request))
        elif action == "request-password-reset":
            await accounts.request(svc, c, body, "passwordReset", client_ip(request))
        elif action == "confirm-verification":
            await accounts.confirm_verification(svc, c, body)
        elif action == "confirm-email-change":
            await accounts.confirm_email_change(svc, c, body, client_ip(request))
        else:
            await accounts.confirm_password_reset(svc, c, body)
        return Response(status_code=204)

    return handler


ACCOUNT_ACTIONS = (
    "request-verification",
    "confirm-verification",
    "request-password-reset",
    "confirm-password-reset",
    "request-email-change",
    "confirm-email-change",
)


async def auth_methods(request: Request) -> Response:
    """Which ways to log in a collection offers (password only, for now), in PocketBase's shape."""
    c = services(request).store.require(request.path_params["collection"])
    if c.type != "auth":
        raise ApiError(404, "Missing or invalid auth collection context.")
    pw = c.options.get("passwordAuth", {})
    return JSON(
        {
            "password": {
                "enabled": bool(pw.get("enabled", True)),
                "identityFields": list(pw.get("identityFields") or ["email"]),
            },
            "oauth2": {"enabled": False, "providers": []},
            "mfa": {"enabled": False, "duration": 0},
            "otp": {"enabled": False, "duration": 0},
        }
    )


routes = [
    Route("/api/collections/{collection}/auth-methods", auth_methods, methods=["GET"]),
    Route("/api/collections/{collection}/impersonate/{id}", impersonate, methods=["POST"]),
    *(
        Route(
            f"/api/collections/{{collection}}/{action}", _account_action(action), methods=["POST"]
        )
        for action in ACCOUNT_ACTIONS
    ),
    Route("/api/collections/{collection}/auth-with-password", auth_with_password, methods=["POST"]),
    Route("/api/collections/{collection}/auth-refresh", auth_refresh, methods=["POST"]),
]
