"""A Redis connection that treats an outage as a state, not an error.

While Redis is unreachable every call returns None at once (no per-request timeouts piling
up); one reconnect attempt is made per `retry_interval`. The outage and the recovery are each
logged once, without the URL (it may hold a password).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("shipyard.redis")
T = TypeVar("T")


class ResilientRedis:
    def __init__(self, url: str, timeout: float, retry_interval: float) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self.retry_interval = retry_interval
        self._down_since: float | None = None
        self._next_try = 0.0
        self.outages = 0  # how many times Redis went away (for metrics and tests)
        self.on_recover: list[Callable[[], Awaitable[None]]] = []

    @property
    def up(self) -> bool:
        return self._down_since is None

    async def call(
        self, fn: Callable[[aioredis.Redis], Awaitable[T]], force: bool = False
    ) -> T | None:
        """`fn(client)`'s result, or None when Redis is down or the call failed. While down,
        only one call per retry interval tries, unless `force` (writes that must not be
        skipped just because this process has not noticed that Redis is back)."""
        probing = self._down_since is not None
        if probing and not force:
            now = time.monotonic()
            if now < self._next_try:
                return None
            self._next_try = now + self.retry_interval
        try:
            result = await fn(self.client)
        except (RedisError, OSError) as exc:
            if self._down_since is None or probing:
                # pooled connections are dead too: drop them, or each would fail once after
                # Redis returns and make the outage look like several
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await self.client.connection_pool.disconnect()
            self._went_down(exc)
            return None
        if self._down_since is not None:
            if not probing:  # began before the outage was noticed: proves nothing
                return None
            await self._recovered()
        return result

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._next_try = self._down_since + self.retry_interval
            self.outages += 1
            log.warning(
                "Redis is unreachable (%s); serving without the shared cache until it returns",
                type(exc).__name__,
            )

    async def _recovered(self) -> None:
        assert self._down_since is not None  # noqa: S101  (narrows a type for mypy; established above)
        took = time.monotonic() - self._down_since
        self._down_since = None
        log.warning("Redis is reachable again after %.1f s; shared cache resumed", took)
        for hook in self.on_recover:
            await hook()

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await self.client.aclose()
