"""The per-request check: which rule applies, who the client is, and the verdict with its
headers (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` and `RateLimit`).

The gateway calls `check(scope)` once per HTTP request, before routing, so it covers the
hot read path and every Starlette route alike. It is built to cost next to nothing when no
rule covers the request (a label or two looked up in a dict) and little when one does:

- the rules in effect are compiled once per change of the runtime settings (an identity
  check per request); other processes' changes are picked up by `RateLimitExtension`'s
  periodic refresh, so no request reads the database for settings;
- guests are keyed by client address (`scope["client"]`, already resolved through trusted
  proxies; IPv6 by its /64, what one subscriber usually gets); users by their auth record,
  so people behind one office NAT are not limited together. A bearer token is verified
  once (one database read) and remembered for a minute: a forged token cannot mint fresh
  budgets, and a valid one costs a dict lookup afterwards;
- the counter is GCRA (tools/ratelimit.py): in memory, or in Redis (one script call) when
  SHIPYARD_REDIS_URL is set, falling back to memory while Redis is unreachable.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from time import monotonic
from typing import Any

import orjson

from shipyard.kernel.runtime import RuntimeSettings
from shipyard.kernel.web import token_from_header
from shipyard.records.auth import Auth
from shipyard.settings import Settings, SettingsError
from shipyard.tools.metrics import Registry
from shipyard.tools.ratelimit import Decision, MemoryGCRA, RedisGCRA
from shipyard.tools.redisclient import ResilientRedis

from .rules import AUTH, GUEST, Rules, parse_rules
from .section import NAME

log = logging.getLogger("shipyard.ratelimit")

TOKEN_TTL = 60.0  # seconds a verified (or refused) bearer token is remembered
MESSAGE = "Too Many Requests."  # PocketBase's message
_BODY = orjson.dumps({"status": 429, "message": MESSAGE, "data": {}})

Authenticate = Callable[[str], Awaitable[Auth]]
# an auth record's key and whether it is a superuser; None for a guest
Who = tuple[str, bool] | None


class Verdict:
    """Headers for the response; `denied`: answer 429 with `body` instead of serving."""

    __slots__ = ("body", "denied", "headers")

    def __init__(self, headers: list[tuple[bytes, bytes]], denied: bool) -> None:
        self.headers = headers
        self.denied = denied
        self.body = _BODY


@lru_cache(maxsize=4096)
def _ipv6_key(ip: str) -> str:
    try:
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


def client_key(ip: str) -> str:
    """A guest's key: its address, or its /64 for IPv6."""
    return "ip:" + (_ipv6_key(ip) if ":" in ip else ip)


class RateLimits:
    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeSettings[Settings],
        redis: ResilientRedis | None,
        authenticate: Authenticate,
        collection_name: Callable[[str], str],
        metrics: Registry,
        metered: bool = True,
    ) -> None:
        try:
            parse_rules(settings.ratelimit_rules)
        except ValueError as exc:
            raise SettingsError(f"SHIPYARD_RATELIMIT_RULES: {exc}") from None
        self.runtime = runtime
        self.memory = MemoryGCRA(settings.ratelimit_max_keys)
        self.shared = (
            RedisGCRA(redis, f"{settings.redis_namespace}:ratelimit:", self.memory)
            if redis is not None
            else None
        )
        self.authenticate = authenticate
        self.collection_name = collection_name
        self.max_tokens = settings.ratelimit_max_keys
        self.rejections = metrics.counter(
            "shipyard_ratelimit_rejections_total",
            "Requests refused with 429 by a rate limit rule, by the rule's label (and audience).",
            ("label",),
        )
        self.metered = metered
        self._tokens: dict[bytes, tuple[Who, float]] = {}
        self._source: Any = None
        self._rules = Rules(())
        self._on = False
        self._exempt_superusers = True
        self._excluded: list[Any] = []

    # -------------------------------------------------------------- the rules in effect

    def _compile(self, source: Any) -> None:
        runtime = self.runtime
        self._rules = Rules(source)
        self._on = bool(runtime.value(NAME, "enabled")) and bool(self._rules)
        self._exempt_superusers = bool(runtime.value(NAME, "exemptSuperusers"))
        self._excluded = [
            ipaddress.ip_network(a, strict=False) for a in runtime.value(NAME, "excludedIPs")
        ]
        self._source = source

    def rules(self) -> Rules | None:
        """The rules in effect, None when rate limiting is off."""
        source = self.runtime.value(NAME, "rules")
        if source is not self._source:  # the settings changed (every change makes new lists)
            self._compile(source)
        return self._rules if self._on else None

    # -------------------------------------------------------------- the check

    async def check(self, scope: Mapping[str, Any]) -> Verdict | None:
        """The verdict on an HTTP request; None when no rule applies to it."""
        rules = self.rules()
        if rules is None:
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        rule, collection = rules.match(method, path, self.collection_name, None)
        if rule is None:
            return None
        client = await self._client(scope)
        if client is None:
            return None
        key, user = client
        if rules.by_audience:
            audience = AUTH if user else GUEST
            rule, collection = rules.match(method, path, self.collection_name, audience)
            if rule is None:
                return None
        key = f"{rule.bucket}|{collection}|{key}" if rule.per_collection else f"{rule.bucket}|{key}"
        if self.shared is None:
            decision = self.memory.hit(key, rule.max_requests, rule.duration)
        else:
            decision = await self.shared.hit(key, rule.max_requests, rule.duration)
        if not decision.allowed and self.metered:
            self.rejections.inc((rule.name,))
        return _verdict(rule.name, rule.policy, decision)

    async def _client(self, scope: Mapping[str, Any]) -> tuple[str, bool] | None:
        """Who is counted: (key, whether a user); None for a request never limited (an
        excluded address, an exempt superuser, no address to count a guest by: PocketBase
        skips those too)."""
        client = scope.get("client")
        ip = str(client[0]) if client else ""
        if self._excluded and _excluded(ip, self._excluded):
            return None
        who: Who = None
        for header, value in scope["headers"]:
            if header == b"authorization":
                who = await self._who(value)
                break
        if who is None:
            return (client_key(ip), False) if ip else None
        if who[1] and self._exempt_superusers:
            return None
        return who[0], True

    async def _who(self, header: bytes) -> Who:
        """The auth record behind a bearer token, remembered for TOKEN_TTL seconds."""
        now = monotonic()
        known = self._tokens.get(header)
        if known is not None and known[1] > now:
            return known[0]
        token = token_from_header(header.decode("latin-1"))
        try:
            auth = await self.authenticate(token) if token else None
        except Exception as exc:  # the database is down: the route will say so; count by address
            log.debug("rate limit: cannot verify a token (%s)", type(exc).__name__)
            return None
        who: Who = None
        if auth is not None and auth.collection is not None:
            who = (f"auth:{auth.collection.id}:{auth.id}", auth.is_superuser)
        if len(self._tokens) >= self.max_tokens:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            if len(self._tokens) >= self.max_tokens:
                self._tokens.clear()
        self._tokens[header] = (who, now + TOKEN_TTL)
        return who


def _excluded(ip: str, networks: list[Any]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


def _verdict(name: str, policy: bytes, d: Decision) -> Verdict:
    wait = max(math.ceil(round(d.wait, 3)), 1)  # whole seconds; no float noise rounded up
    headers = [
        (b"ratelimit-policy", policy),
        (b"ratelimit", f'"{name}";r={d.remaining};t={wait}'.encode()),
    ]
    if not d.allowed:
        headers.append((b"retry-after", str(wait).encode()))
    return Verdict(headers, not d.allowed)
