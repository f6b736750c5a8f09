"""CORS, by default as PocketBase answers it, so browser apps on other origins can use the API.

Every response gets `Vary: Origin`; a request from an allowed origin also gets
`Access-Control-Allow-Origin` (`*` when any origin is allowed, else the origin itself).
Every `OPTIONS` request is a preflight answered here with 204 (the allowed methods, and the
allowed request headers: by default the preflight's `Access-Control-Request-Headers` echoed
back). By default no credentials, no max-age, no exposed headers: exactly PocketBase 0.40's
defaults. Each of these is a setting (`SHIPYARD_CORS_*`, docs/https.md); credentials are
only ever granted to listed origins (settings.py refuses them with `*`).

One narrow exemption: the paths of `open_paths` (the Sentry-compatible error ingestion,
which browser SDKs on any origin report to) allow every origin whatever the setting says,
answer preflights for the headers Sentry SDKs send, and expose the headers they read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import Message, Send

from shipyard.settings import Settings, parse_origins

Headers = list[tuple[bytes, bytes]]

_VARY_ORIGIN = (b"vary", b"Origin")
DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"
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
    def __init__(
        self,
        origins: Iterable[str],
        open_paths: re.Pattern[str] | None = None,
        *,
        methods: str = DEFAULT_METHODS,
        headers: str = "",
        expose: str = "",
        credentials: bool = False,
        max_age: int = 0,
    ) -> None:
        allowed = list(origins)
        self.open_paths = open_paths
        self.any = "*" in allowed
        self.allowed = {o.encode("latin-1") for o in allowed if o != "*"}
        # granted with the origin, on answers (`_extra`) and on preflights (`_pre_extra`)
        self._extra: Headers = []
        self._pre_extra: Headers = [(b"access-control-allow-methods", _list(methods))]
        if credentials:
            self._extra.append((b"access-control-allow-credentials", b"true"))
            self._pre_extra.append((b"access-control-allow-credentials", b"true"))
        if expose.strip():
            self._extra.append((b"access-control-expose-headers", _list(expose)))
        if max_age:
            self._pre_extra.append((b"access-control-max-age", str(max_age).encode()))
        self._allow_headers = _list(headers) if headers.strip() else None
        self._plain: Headers = [_VARY_ORIGIN]
        self._any: Headers = [_VARY_ORIGIN, (b"access-control-allow-origin", b"*"), *self._extra]

    @classmethod
    def from_settings(cls, s: Settings, open_paths: re.Pattern[str] | None = None) -> Cors:
        return cls(
            parse_origins(s.cors_origins),
            open_paths,
            methods=s.cors_methods,
            headers=s.cors_headers,
            expose=s.cors_expose_headers,
            credentials=s.cors_credentials,
            max_age=s.cors_max_age,
        )

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
        return [_VARY_ORIGIN, (b"access-control-allow-origin", allow), *self._extra]

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
            headers += [(b"access-control-allow-origin", allow), *self._pre_extra]
            allow_headers = self._allow_headers or requested
            if allow_headers:
                headers.append((b"access-control-allow-headers", allow_headers))
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


def _list(text: str) -> bytes:
    """A comma-separated setting as a header value (`a, b` → `a,b`)."""
    return ",".join(part.strip() for part in text.split(",") if part.strip()).encode("latin-1")
