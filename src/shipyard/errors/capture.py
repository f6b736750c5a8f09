"""Shipyard's own unhandled exceptions (a 500, a failed job) as Sentry-shaped events in
the built-in project.

The telemetry seam calls the sink synchronously, on whatever thread failed; the sink only
appends to a bounded queue (past its size, exceptions are dropped and counted) and wakes a
background task on the event loop, which builds the events and stores them. A request or
a job never waits for the database because it failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import linecache
import logging
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.errors")
_MAX_FRAMES = 100
_MAX_CHAIN = 10


def _frames(tb: TracebackType | None, in_app: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frame, lineno in traceback.walk_tb(tb):
        module = str(frame.f_globals.get("__name__", ""))
        filename = frame.f_code.co_filename
        entry: dict[str, Any] = {
            "filename": filename,
            "abs_path": filename,
            "module": module,
            "function": frame.f_code.co_name,
            "lineno": lineno,
            "in_app": any(module == p or module.startswith(p + ".") for p in in_app),
        }
        line = linecache.getline(filename, lineno).strip()
        if line:
            entry["context_line"] = line[:300]
        out.append(entry)
    return out[-_MAX_FRAMES:]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, oldest first (Sentry's order)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return list(reversed(chain))


def event_from_exception(
    exc: BaseException, context: Mapping[str, Any], in_app: Sequence[str] = ("shipyard",)
) -> dict[str, Any]:
    """A Sentry event for `exc`: every exception of its chain with its frames (in-app by
    module prefix), the context as tags and as `contexts.shipyard`."""
    values = []
    for e in _chain(exc):
        cls = type(e)
        values.append(
            {
                "type": cls.__qualname__,
                "module": cls.__module__,
                "value": str(e)[:2000],
                "stacktrace": {"frames": _frames(e.__traceback__, in_app)},
                "mechanism": {"type": "shipyard", "handled": False},
            }
        )
    ctx = {
        str(k): v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in context.items()
    }
    tags = {k: str(v)[:200] for k, v in ctx.items()}
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "logger": "shipyard",
        "server_name": socket.gethostname(),
        "exception": {"values": values},
        "tags": tags,
        "contexts": {"shipyard": ctx},
    }
    kind = ctx.get("kind")
    if kind == "request":
        event["transaction"] = f"{ctx.get('method', '')} {ctx.get('route', '')}".strip()
    elif kind == "job":
        event["transaction"] = f"job {ctx.get('job_kind', '')}".strip()
    return event


class ExceptionQueue:
    """The exception sink: bounded, thread-safe, drained on the event loop by `run`."""

    def __init__(
        self, size: int, store: Callable[[BaseException, dict[str, Any]], Awaitable[None]]
    ) -> None:
        self.items: collections.deque[tuple[BaseException, dict[str, Any]]] = collections.deque()
        self.size = size
        self.store = store
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def __call__(self, exc: BaseException, context: Mapping[str, Any]) -> None:
        if len(self.items) >= self.size:
            self.dropped += 1
            return
        self.items.append((exc, dict(context)))
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="shipyard-errors-sink")
        if self.items:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101  (set by start)
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.drain()

    async def drain(self) -> None:
        while self.items:
            exc, context = self.items.popleft()
            try:
                await self.store(exc, context)
            except Exception:
                log.warning("could not record an exception in the error tracker", exc_info=True)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), 5.0)
        self._loop = None


__all__ = ["ExceptionQueue", "event_from_exception"]
