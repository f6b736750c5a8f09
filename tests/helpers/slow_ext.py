"""A team extension whose record listener takes `SLOW_S` seconds on every write to a
collection whose name starts with `slow`: writes that outlast a batch's timeout, without a
batch of thousands of records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shipyard.kernel.extension import Extension

SLOW_S = 0.4


class Slow(Extension):
    def __init__(self) -> None:
        super().__init__(name="slow", requires=("records",))

    def record_subscribers(self) -> Sequence[Any]:
        return [self]

    async def listener(self, tx: Any, collection: Any, action: str) -> Any:
        if not collection.name.startswith("slow"):
            return None

        async def wait(tx: Any, change: Any) -> None:
            await asyncio.sleep(SLOW_S)

        return wait


def extension(services: Any) -> Slow:
    return Slow()
