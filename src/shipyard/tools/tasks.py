"""Stopping background tasks: every capability has one or more."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended; how it ended (cancelled, or an error it
    raised while stopping) no longer matters to whoever stops it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


__all__ = ["cancel"]
