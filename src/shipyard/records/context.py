"""Who is asking, and how: one value per request, built once by the HTTP layer and passed
explicitly to every records operation and rule it runs.

Rules read `@request.auth.*`, `@request.headers.*` and `@request.query.*` deep inside nested
expands; carrying them in an argument (not in ambient state set as a side effect of
authentication) makes every caller say whose request it serves, and lets internal callers
(jobs, the CLI, account flows) say plainly that no request is behind them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from shipyard.kernel.errors import ApiError
from shipyard.kernel.web import bearer, services
from shipyard.records.auth import ANONYMOUS, Auth
from shipyard.records.collections import Collection


def rule_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names as rules see them (PocketBase): lower case, `-` as `_`; first value wins."""
    out: dict[str, str] = {}
    for k, v in raw:
        out.setdefault(k.decode("latin-1").lower().replace("-", "_"), v.decode("latin-1"))
    return out


class RuleHeaders(Mapping[str, str]):
    """`rule_headers` of a request, made when first read: most requests are never asked
    about their headers (a superuser's, a rule without `@request.headers`)."""

    __slots__ = ("_made", "_raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._made: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        if self._made is None:
            self._made = rule_headers(self._raw)
        return self._made

    def __getitem__(self, key: str) -> str:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


@lru_cache(maxsize=1024)
def query_of(query_string: bytes) -> Mapping[str, str]:
    """Query parameters as both read paths take them: the last of repeated keys wins, blank
    values are kept, and bytes that are not UTF-8 become U+FFFD rather than an error.
    Read-only and memoized: the same few query strings arrive again and again."""
    qs = query_string.decode("utf-8", "replace")
    return MappingProxyType(dict(parse_qsl(qs, keep_blank_values=True)) if qs else {})


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The request a records operation serves. `headers` are named as rules name them
    (`rule_headers`); `query` is what `@request.query.*` reads. Treat both as read-only."""

    auth: Auth = field(default_factory=lambda: ANONYMOUS)  # Auth is mutable: no plain default
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""
    method: str = ""

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], auth: Auth) -> RequestContext:
        """The context of an ASGI HTTP request (the gateway and the Starlette routes build
        theirs here, so both read paths see the same headers and query)."""
        client = scope.get("client")
        return cls(
            auth=auth,
            headers=RuleHeaders(scope["headers"]),
            query=query_of(scope.get("query_string", b"")),
            ip=str(client[0]) if client else "",
            method=str(scope["method"]),
        )

    @classmethod
    def system(
        cls, superusers: Collection, actor: str = "system", query: Mapping[str, str] | None = None
    ) -> RequestContext:
        """Internal work with no request behind it, acting as a superuser (rules do not apply);
        `actor` is the id record events name as the author of the change."""
        return cls(auth=Auth(collection=superusers, record={"id": actor}), query=query or {})


AUTH_SCOPE_KEY = "shipyard.auth"  # the request's resolved Auth, for its log line


async def resolve_auth(request: Request) -> Auth:
    """The auth record of a valid token; anonymous for none or an invalid one (like PocketBase).
    It is also kept in the request's scope, where the HTTP layer reads who to log."""
    token = bearer(request)
    if not token:
        return ANONYMOUS
    auth = await services(request).auth.authenticate(token)
    request.scope[AUTH_SCOPE_KEY] = auth
    return auth


async def require_superuser(request: Request) -> Auth:
    """401 without a valid token, 403 for anyone but a superuser (PocketBase's answers)."""
    auth = await resolve_auth(request)
    if auth.collection is None:
        raise ApiError(401, "The request requires valid record authorization token.")
    if not auth.is_superuser:
        raise ApiError(403, "The authorized record is not allowed to perform this action.")
    return auth


async def request_context(request: Request) -> RequestContext:
    """The context of a request served by a Starlette route (the gateway builds its own from
    the scope, the same way)."""
    return RequestContext.from_scope(request.scope, await resolve_auth(request))
