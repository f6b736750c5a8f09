"""CORS as PocketBase answers it by default, so browser apps on other origins can use the API.

Every response gets `Vary: Origin`; a request from an allowed origin also gets
`Access-Control-Allow-Origin` (`*` when any origin is allowed, else the origin itself).
Every `OPTIONS` request is a preflight answered here with 204 (allowed methods, and the
request's `Access-Control-Request-Headers` echoed back). No credentials, no max-age, no
exposed headers: exactly PocketBase 0.40's defaults.

One narrow exemption: the paths of `open_paths` (the Sentry-compatible error ingestion,
which browser SDKs on any origin report to) allow every origin whatever the setting says,
answer preflights for the headers Sentry SDKs send, and expose the headers they read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import Message, Send

Headers = list[tuple[bytes, bytes]]

_VARY_ORIGIN = (b"vary", b"Origin")
_ALLOW_METHODS = (b"access-control-allow-methods", b"GET,HEAD,PUT,PATCH,POST,DELETE")
# the error-ingestion exemption: what Sentry's own ingestion (Relay) answers
_OPEN_SUFFIXES = ("/envelope/", "/store/", "/envelope", "/store")
_OPEN: Headers = [
    _VARY_ORIGIN,
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"x-sentry-error, x-sentry-rate-limits, retry-after"),
]
_OPEN_PREFLIGHT: Headers = [
    *_OPEN,
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"x-sentry-auth, x-requested-with, origin, accept, content-type, content-encoding, "
        b"authentication, authorization, sentry-trace, baggage",
    ),
    (b"access-control-max-age", b"3600"),
]
_PREFLIGHT_VARY = [
    (b"vary", b"Access-Control-Request-Method"),
    (b"vary", b"Access-Control-Request-Headers"),
]


class Cors:
    def __init__(self, origins: Iterable[str], open_paths: re.Pattern[str] | None = None) -> None:
        allowed = list(origins)
        self.open_paths = open_paths
        self.any = "*" in allowed
        self.allowed = {o.encode("latin-1") for o in allowed if o != "*"}
        self._plain: Headers = [_VARY_ORIGIN]
        self._any: Headers = [_VARY_ORIGIN, (b"access-control-allow-origin", b"*")]

    def _allow_origin(self, origin: bytes | None) -> bytes | None:
        if origin is None:
            return None
        if self.any:
            return b"*"
        return origin if origin in self.allowed else None

    def is_open(self, path: str) -> bool:
        """Whether `path` is exempt (any origin): cheap for every other path."""
        return (
            self.open_paths is not None
            and path.endswith(_OPEN_SUFFIXES)
            and self.open_paths.fullmatch(path) is not None
        )

    @staticmethod
    def open_headers() -> Headers:
        return _OPEN

    @staticmethod
    async def open_preflight(send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": _OPEN_PREFLIGHT})
        await send({"type": "http.response.body", "body": b""})

    def headers(self, request_headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """The CORS headers of a response to a request with these headers (not to be mutated)."""
        origin = None
        for key, value in request_headers:
            if key == b"origin":
                origin = value
                break
        allow = self._allow_origin(origin)
        if allow is None:
            return self._plain
        if allow == b"*":
            return self._any
        return [_VARY_ORIGIN, (b"access-control-allow-origin", allow)]

    async def preflight(self, request_headers: Iterable[tuple[bytes, bytes]], send: Send) -> None:
        """Answer an OPTIONS request (204, no body)."""
        origin = None
        requested: bytes | None = None
        for key, value in request_headers:
            if key == b"origin":
                origin = value
            elif key == b"access-control-request-headers":
                requested = value
        allow = self._allow_origin(origin)
        headers: Headers = [_VARY_ORIGIN]
        if allow is not None:
            headers += _PREFLIGHT_VARY
            headers += [(b"access-control-allow-origin", allow), _ALLOW_METHODS]
            if requested:
                headers.append((b"access-control-allow-headers", requested))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def wrap(send: Send, extra: Headers) -> Send:
        """`send` with the CORS headers added to the response start."""

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return send_with_cors
