"""Waiting for a condition with a deadline: no test polls forever, and none sleeps for a
fixed window when it can wait for what it is waiting for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll_until(cond: Callable[[], T], timeout: float = 10.0, step: float = 0.02) -> T:
    """Poll `cond()` until it is truthy or the deadline passes; its last value either way,
    for callers that assert on what they got (with their own message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_until(
    cond: Callable[[], T], timeout: float = 10.0, step: float = 0.02, what: str = "condition"
) -> T:
    """Poll `cond()` until it is truthy; its value. Fails the test with the last value when
    the deadline passes."""
    value = poll_until(cond, timeout, step)
    if not value:
        raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
    return value


async def wait_until_async(
    cond: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    step: float = 0.02,
    what: str = "condition",
) -> Any:
    """`wait_until` for a coroutine condition, sleeping on the event loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        await asyncio.sleep(step)
