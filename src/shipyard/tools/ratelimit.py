"""GCRA rate limiting: in this process's memory, or in Redis shared by every process.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival
time (TAT) of the next request: each admitted request moves it `period / limit` seconds
(the interval) later, and a request is refused while that would put it more than `period`
ahead of now. So `limit` requests may come in one burst, then one per interval; the
state is one float, and a decision is one read and one write, atomic in both places: in
memory because nothing awaits between them, in Redis because a Lua script runs whole (one
round trip, the server's clock, so every process and machine counts against one budget).

While Redis is unreachable, `RedisGCRA` decides in memory instead (per-process limits,
logged once per outage) and goes back to Redis when it answers again: a rate limiter must
never turn a Redis outage into errors for clients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import islice
from typing import Any, NamedTuple

from shipyard.tools.batching import AutoBatcher
from shipyard.tools.redisclient import ResilientRedis

log = logging.getLogger("shipyard.ratelimit")

SWEEP_INTERVAL = 60.0  # seconds between sweeps of expired keys out of memory


class Decision(NamedTuple):
    """`remaining`: requests that could still be admitted at once; `wait`: seconds until
    one more can be (the Retry-After of a refusal). A tuple: made on every request."""

    allowed: bool
    remaining: int
    wait: float


# A hundredth of an interval of tolerance: sums of intervals are not exact in floating
# point, and the `limit`-th request of a burst must not be refused for a rounding error.
TOLERANCE = 0.01


def refused(ahead: float, interval: float, period: float) -> bool:
    """Whether a request that would put the TAT `ahead` seconds past now is refused."""
    return ahead > period + interval * TOLERANCE


def decide(allowed: bool, ahead: float, limit: int, period: float) -> Decision:
    """The decision given how far the key's TAT is ahead of now after it (`ahead`)."""
    interval = period / limit
    slack = max(period - ahead, 0.0)  # one more is admitted while slack >= interval - tolerance
    remaining = min(int(slack / interval + TOLERANCE), limit) if allowed else 0
    # the wait told is without the tolerance: never earlier than a retry could succeed
    return Decision(allowed, remaining, max((remaining + 1) * interval - slack, 0.0))


class MemoryGCRA:
    """Per-process GCRA; at most `max_keys` keys are held (expired ones are swept out
    every minute; past the bound the oldest keys are forgotten, which only forgives)."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL

    def __len__(self) -> int:
        return len(self._tat)

    def hit(self, key: str, limit: int, period: float) -> Decision:
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        tats = self._tat
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        interval = period / limit
        new_tat = tat + interval
        if refused(new_tat - now, interval, period):
            return decide(False, tat - now, limit, period)
        if key not in tats and len(tats) >= self.max_keys:
            self._sweep(now)
            if len(tats) >= self.max_keys:  # still full: forget the oldest tenth
                for old in list(islice(tats, max(self.max_keys // 10, 1))):
                    del tats[old]
        tats[key] = new_tat
        return decide(True, new_tat - now, limit, period)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        self._tat = {k: t for k, t in self._tat.items() if t > now}


# KEYS: the keys; ARGV: each key's emission interval and period, in microseconds.
# Returns, for each key in order, admitted (0/1) and the microseconds its TAT is ahead of
# now after the decision. The keys are decided one after the other in one atomic run, so
# a key that occurs twice in a batch is counted twice, exactly as two separate calls would.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key))
  if (not tat) or tat < now then tat = now end
  local new_tat = tat + interval
  if new_tat - now > period + interval * 0.01 then  -- refused(): TOLERANCE
    out[2 * i - 1] = 0
    out[2 * i] = tat - now
  else
    redis.call('SET', key, string.format('%.17g', new_tat), 'PX',
               math.max(math.ceil((new_tat - now) / 1000), 1))
    out[2 * i - 1] = 1
    out[2 * i] = new_tat - now
  end
end
return out
"""

MAX_BATCH = 256  # decisions per script call: bounds how long one call blocks Redis


class RedisGCRA:
    """GCRA in Redis under `prefix`; `fallback` decides while Redis is unreachable.

    Auto-batched (tools/batching.py): checks made while a script call is in flight go
    together in the next call (one round trip, one script run, many decisions); a lone
    check is sent at once, by itself. Every decision is still made by Redis, atomically,
    in order: nothing is admitted locally ahead of it.
    """

    def __init__(self, redis: ResilientRedis, prefix: str, fallback: MemoryGCRA) -> None:
        self.redis = redis
        self.prefix = prefix
        self.fallback = fallback
        self.script: Any = redis.client.register_script(_SCRIPT)
        self.local = False  # deciding in memory (Redis unreachable)
        self.batcher: AutoBatcher[tuple[str, float, float], Any] = AutoBatcher(
            self._call, MAX_BATCH
        )

    @property
    def calls(self) -> int:
        """Script calls made (tests check that concurrent checks share them)."""
        return self.batcher.calls

    async def hit(self, key: str, limit: int, period: float) -> Decision:
        reply = await self.batcher.submit((self.prefix + key, period * 1e6 / limit, period * 1e6))
        if reply is None:
            if not self.local:
                self.local = True
                log.warning("rate limits are per process until Redis is reachable again")
            return self.fallback.hit(key, limit, period)
        if self.local:
            self.local = False
            log.warning("rate limits are shared through Redis again")
        return decide(bool(reply[0]), int(reply[1]) / 1e6, limit, period)

    async def _call(self, batch: list[tuple[str, float, float]]) -> list[Any] | None:
        """Each check's (admitted, TAT ahead) reply, None while Redis is unreachable."""
        script = self.script
        keys = [key for key, _, _ in batch]
        args = [x for _, interval, period in batch for x in (interval, period)]

        async def run(client: Any) -> Any:
            return await script(keys=keys, args=args, client=client)

        reply = await self.redis.call(run)
        if reply is None:
            return None
        return [reply[2 * i : 2 * i + 2] for i in range(len(batch))]
