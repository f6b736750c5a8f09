"""Rate limiting as an extension: the `rateLimits` settings section, and a background
refresh of the runtime settings so that a change made through `/api/settings` on another
process applies here within SHIPYARD_RATELIMIT_REFRESH_INTERVAL seconds, while requests
never read settings from the database. The check itself is `RateLimits.check`, which the
gateway calls for every request (http/gateway.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from shipyard.kernel.extension import Extension
from shipyard.kernel.runtime import RuntimeSettings, Section
from shipyard.settings import Settings

from .limits import RateLimits
from .section import RATE_LIMITS

log = logging.getLogger("shipyard.ratelimit")


class RateLimitExtension(Extension):
    def __init__(self, limits: RateLimits, runtime: RuntimeSettings[Settings]) -> None:
        super().__init__(name="ratelimit", requires=("auth",))
        self.limits = limits
        self.runtime = runtime
        self.interval = runtime.base.ratelimit_refresh_interval
        self._task: asyncio.Task[None] | None = None

    def settings_sections(self) -> Sequence[Section]:
        return (RATE_LIMITS,)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_often())

    async def _refresh_often(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.runtime.refresh()
            except Exception as exc:  # the database may be away for a while: keep the rules
                log.debug("rate limit settings not refreshed: %s", type(exc).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
