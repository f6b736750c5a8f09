"""`GET /metrics`: the whole deployment's metrics in the Prometheus text format (0.0.4).

Who may read it, first match wins:

1. a client address inside `SHIPYARD_METRICS_ALLOW` (default loopback only);
2. `Authorization: Bearer <SHIPYARD_METRICS_TOKEN>` (compared in constant time);
3. a superuser's auth token.

Anyone else gets 401 (no or an unknown credential) or 403 (a valid token of someone else),
in the usual error shape. With `SHIPYARD_METRICS_ENABLED=false` the route answers 404.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel import spec
from shipyard.kernel.errors import ApiError, not_found
from shipyard.kernel.web import bearer, client_ip
from shipyard.records.context import resolve_auth
from shipyard.tools.metrics import exposition

if TYPE_CHECKING:
    from shipyard.metrics.extension import MetricsExtension

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def allowed_address(ip: str, networks: list[Any]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:  # no address (a test client, a Unix socket)
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


async def check_access(request: Request, ext: MetricsExtension) -> None:
    if allowed_address(client_ip(request), ext.allow):
        return
    token = bearer(request)
    if not token:
        raise ApiError(
            401, "Reading metrics requires the metrics token or a superuser's auth token."
        )
    expected = ext.token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    auth = await resolve_auth(request)
    if auth.is_superuser:
        return
    if auth.collection is None:
        raise ApiError(401, "The token is neither the metrics token nor a valid auth token.")
    raise ApiError(403, "Only superusers (or the metrics token) may read metrics.")


def routes(ext: MetricsExtension) -> list[Route]:
    async def metrics(request: Request) -> Response:
        if not ext.enabled:
            raise not_found()
        await check_access(request, ext)
        text = exposition(await ext.cluster.read())
        return Response(text, media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]


def openapi_paths() -> dict[str, Any]:
    return {
        "/metrics": {
            "get": {
                "tags": ["metrics"],
                "operationId": "metrics",
                "summary": "Every process's metrics, merged, in the Prometheus text format",
                "description": "Superusers, the metrics token (`Authorization: Bearer …`, "
                "SHIPYARD_METRICS_TOKEN) or a client address in SHIPYARD_METRICS_ALLOW "
                "(default: loopback). See docs/metrics.md.",
                "security": [{"Authorization": []}],
                "x-shipyard-guard": spec.GUARD_SUPERUSER,
                "responses": {
                    "200": {
                        "description": "The metrics (Prometheus text exposition format 0.0.4)",
                        "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                    },
                    **spec.errors(401, 403, 404),
                },
            }
        }
    }


__all__ = ["CONTENT_TYPE", "allowed_address", "check_access", "openapi_paths", "routes"]
