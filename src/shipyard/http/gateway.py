"""The outermost ASGI layer: CORS and schema freshness for every request, and the read hot
path.

GET list/view of records skip Starlette's routing and Request/Response objects: measured
on a 2-core machine, a framework's per-request overhead caps a cached endpoint near 7k req/s
where a bare ASGI handler serves 30k+ (docs/performance.md), so these two requests go from
scope to bytes with nothing in between but the domain call.
"""

from __future__ import annotations

import logging
import re
from itertools import count
from os import urandom
from time import perf_counter, time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from shipyard.cache.cache import etag_of
from shipyard.http.admission import REFUSED, Admission, refuse
from shipyard.http.cors import Cors, Headers
from shipyard.http.headers import SecurityHeaders
from shipyard.kernel.errors import ApiError
from shipyard.kernel.proxies import TrustedProxies
from shipyard.kernel.telemetry import UNMATCHED, RequestInfo
from shipyard.kernel.web import DB_ERRORS, db_error, token_from_header
from shipyard.records.auth import ANONYMOUS, Auth
from shipyard.records.context import AUTH_SCOPE_KEY, RequestContext
from shipyard.records.listquery import ListQuery, ViewQuery
from shipyard.tools.db import budget

if TYPE_CHECKING:  # built by the composition root, above http
    from shipyard.services import Services

log = logging.getLogger("shipyard.api")
_PREFIX = "/api/collections/"
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Never stale: clients and proxies may keep a copy but must revalidate it (ETag → 304).
_PUBLIC = b"public, no-cache"
_PRIVATE = b"private, no-cache"
_MAX_MEMO = 1024
_LIST_ROUTE = "/api/collections/{collection}/records"
_VIEW_ROUTE = "/api/collections/{collection}/records/{id}"
DETACH = "shipyard.detach"  # the scope key of the in-flight release (see _dispatch)
PREFLIGHT = "<preflight>"  # the route label of a CORS preflight
LIMITED = "<rate-limited>"  # the route label of a request refused by a rate limit
# a client's X-Request-Id is kept when it is short, visible ASCII; otherwise one is made
_ID_OK = re.compile(rb"[\x21-\x7e]{1,128}")


class _Outcome:
    """What the request's telemetry needs from whoever answered it."""

    __slots__ = ("auth", "detached", "route", "status")

    def __init__(self) -> None:
        self.detached = False  # a long-lived response released its in-flight counts
        self.status = 0
        self.route = ""
        self.auth: Auth | None = None


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


class Gateway:
    def __init__(
        self,
        app: Starlette,
        cors: Cors,
        proxies: TrustedProxies | None = None,
        security: SecurityHeaders | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.app = app
        self.cors = cors
        self.security = security or SecurityHeaders({})
        self.proxies = proxies or TrustedProxies(())
        self.admission = admission or Admission()
        self._id_prefix = urandom(8).hex()
        self._id_seq = count()
        # the read path's parsed query per (kind, query string): a pure function of both
        # (the limits are start-up settings), so a memo that is never stale
        self._queries: dict[tuple[int, bytes], ListQuery | ViewQuery] = {}

    def __getattr__(self, name: str) -> Any:  # state, routes, … of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies and scope["type"] in ("http", "websocket"):
            self.proxies.apply(scope)  # the client's address and scheme, once for everyone
        svc: Services | None = getattr(self.app.state, "services", None)
        if scope["type"] != "http" or svc is None:
            await self.app(scope, receive, send)
            return
        # telemetry: a request id, the status, the route template and the time, for every
        # request (kernel/telemetry.py); the headers it needs are read in one pass
        started, t0 = time(), perf_counter()
        rid = agent = referer = b""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = value
            elif key == b"user-agent":
                agent = value
            elif key == b"referer":
                referer = value
        if not _ID_OK.fullmatch(rid):
            # unique without a random draw per request: this process's random prefix and
            # a counter (32 hex digits, as a UUID without dashes)
            rid = f"{self._id_prefix}{next(self._id_seq):016x}".encode()
        telemetry = svc.telemetry
        telemetry.in_flight += 1
        outcome = _Outcome()
        try:
            await self._dispatch(svc, scope, receive, send, rid, outcome)
        finally:
            if not outcome.detached:
                telemetry.in_flight -= 1
            if telemetry.active:
                auth = outcome.auth or scope.get(AUTH_SCOPE_KEY)
                route = outcome.route or getattr(scope.get("route"), "path", UNMATCHED)
                client = scope.get("client")
                telemetry.request_done(
                    RequestInfo(
                        rid.decode(),
                        scope["method"],
                        route,
                        scope["path"],
                        scope["query_string"].decode("latin-1"),
                        outcome.status or 500,
                        started,
                        perf_counter() - t0,
                        client[0] if client else "",
                        agent.decode("latin-1"),
                        referer.decode("latin-1"),
                        auth.id if auth is not None else "",
                        auth.collection.name if auth is not None and auth.collection else "",
                    )
                )

    async def _dispatch(
        self, svc: Services, scope: Scope, receive: Receive, send: Send, rid: bytes, out: _Outcome
    ) -> None:
        """Admission first (http/admission.py): a refused request costs next to nothing."""
        admission = self.admission
        err = admission.refusal(scope)
        if err is not None:
            out.route, out.status = REFUSED, err.status
            path = scope["path"]
            allow = (
                self.cors.open_headers()
                if self.cors.is_open(path)
                else self.cors.headers(scope["headers"])
            )
            headers = [*allow, (b"x-request-id", rid), *self.security.select(scope)]
            await refuse(err, headers, send)
            return
        admission.in_flight += 1
        counted = [True]

        def detach() -> None:
            """A long-lived response (an SSE stream, realtime/stream.py) stops counting as
            in flight once it starts: it holds a connection, not the event loop."""
            if counted[0]:
                counted[0] = False
                admission.in_flight -= 1
                svc.telemetry.in_flight -= 1
                out.detached = True

        scope[DETACH] = detach
        try:
            await self._route(svc, scope, admission.receive(scope, receive), send, rid, out)
        finally:
            if counted[0]:
                admission.in_flight -= 1

    async def _route(
        self, svc: Services, scope: Scope, receive: Receive, send: Send, rid: bytes, out: _Outcome
    ) -> None:
        path: str = scope["path"]
        exempt = self.cors.is_open(path)  # Sentry ingestion: any origin (http/cors.py)
        secure = self.security.select(scope)  # precomputed (http/headers.py)
        if scope["method"] == "OPTIONS":
            out.route, out.status = PREFLIGHT, 204
            if exempt:
                await self.cors.open_preflight(_with_id(send, rid, secure))
            else:
                await self.cors.preflight(scope["headers"], _with_id(send, rid, secure))
            return
        allow = self.cors.open_headers() if exempt else self.cors.headers(scope["headers"])
        cors = [*allow, (b"x-request-id", rid)]
        parts: list[str] = []
        try:
            await svc.store.refresh()
            if path.startswith(_PREFIX):
                parts = path[len(_PREFIX) :].split("/")
                if parts[0] and svc.store.get(unquote(parts[0])) is None:
                    # created by another process whose notification has not arrived yet
                    await svc.store.reload()
        except DB_ERRORS as exc:
            err = db_error(exc, scope["method"], path)
            headers = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
            body = orjson.dumps(err.to_dict())
            out.status = err.status
            await _send(send, err.status, [*_JSON_HEADERS, *cors, *secure, *headers], body)
            return
        limit = await svc.ratelimits.check(scope)  # rate limits (ratelimit/limits.py)
        if limit is not None:
            cors += limit.headers
            if limit.denied:
                out.route, out.status = LIMITED, 429
                await _send(send, 429, [*_JSON_HEADERS, *cors, *secure], limit.body)
                return
        if parts:
            is_read = len(parts) in (2, 3) and parts[1] == "records" and all(parts)
            if is_read and scope["method"] == "GET":
                out.route = _LIST_ROUTE if len(parts) == 2 else _VIEW_ROUTE
                await self._read(svc, scope, send, parts, [*cors, *secure], out)
                return

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                out.status = message["status"]
                own = message.get("headers", ())
                extra = self.security.missing(own, secure)  # a page's own CSP wins
                message = {**message, "headers": [*own, *cors, *extra]}
            await send(message)

        await self.app(scope, receive, send_and_note)

    async def _read(  # noqa: C901  (the hot path in one function: each branch is one early answer, a call would cost)
        self,
        svc: Services,
        scope: Scope,
        send: Send,
        parts: list[str],
        cors: Headers,
        out: _Outcome,
    ) -> None:
        status = 200
        headers = [*_JSON_HEADERS, *cors]
        cache = svc.cache
        outcome = b""  # the cache's answer, once the request got that far
        try:
            c = svc.store.require(unquote(parts[0]))
            qs = scope["query_string"].decode("utf-8", "replace")
            auth = ANONYMOUS
            directives = b""
            if_none_match = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    token = token_from_header(value.decode("latin-1"))
                    if token:
                        auth = out.auth = await svc.auth.authenticate(token)
                elif key in (b"cache-control", b"pragma"):
                    directives += value.lower()
                elif key == b"if-none-match":
                    if_none_match = value.decode("latin-1")
            ctx = RequestContext.from_scope(scope, auth)
            # parsed as the Starlette routes parse them: the same limits, the same 400s
            records = svc.records
            # parsed once per distinct query string: most clients repeat a few of them
            memo_key = (len(parts), scope["query_string"])
            q = self._queries.get(memo_key)
            if q is None:
                q = (
                    records.list_query(ctx.query)
                    if len(parts) == 2
                    else records.view_query(ctx.query)
                )
                if len(self._queries) >= _MAX_MEMO:
                    self._queries.clear()
                self._queries[memo_key] = q

            async def compute() -> tuple[int, bytes]:
                with budget(svc.settings.query_budget_ms / 1000):
                    if isinstance(q, ListQuery):
                        data = await records.list_page(c, ctx, q)
                    else:
                        data = await records.view(c, unquote(parts[2]), ctx, q)
                return 200, orjson.dumps(data)

            outcome = b"bypass"
            etag = ""
            target = scope["path"] + "?" + qs
            plan = cache.plan(c, target, ctx.query, auth) if cache.enabled else None
            # `no-cache` recomputes (and refreshes the entry), `no-store` leaves it alone
            if plan is not None and b"no-store" not in directives:
                version = await cache.token(plan.tables)
                if version is not None:
                    entry = None if b"no-cache" in directives else cache.get(plan.key, version)
                    if entry is not None:
                        outcome = b"hit"
                    else:
                        entry = await cache.fill(plan, version, compute)
                        outcome = b"miss"
                    status, body, etag = entry.status, entry.body, entry.etag
            if not etag:
                status, body = await compute()
                etag = etag_of(body)
            headers += [
                (b"etag", etag.encode()),
                (b"cache-control", _PUBLIC if auth.collection is None else _PRIVATE),
                (b"vary", b"Authorization"),
                (b"x-shipyard-cache", outcome),
            ]
            if if_none_match is not None and _etag_matches(if_none_match, etag):
                status, body = 304, b""
        except (ApiError, *DB_ERRORS) as exc:
            err = exc if isinstance(exc, ApiError) else db_error(exc, "GET", scope["path"])
            status, body = err.status, orjson.dumps(err.to_dict())
            headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        except Exception as exc:
            log.exception("unhandled error on GET %s", scope["path"])
            svc.telemetry.exception(exc, {"kind": "request", "method": "GET", "route": out.route})
            status = 500
            body = orjson.dumps(
                {
                    "status": 500,
                    "message": "Something went wrong while processing your request.",
                    "data": {},
                }
            )
        out.status = status
        if outcome and svc.telemetry.metrics_enabled:
            cache.answers[outcome] += 1  # counted at the next snapshot (cache.py)
        await _send(send, status, headers, body)


def _with_id(send: Send, rid: bytes, secure: Headers) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            own = message.get("headers", ())
            message = {**message, "headers": [*own, (b"x-request-id", rid), *secure]}
        await send(message)

    return send_with_id


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
