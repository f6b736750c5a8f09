"""What a request must pass before the process works on it: a bound on the requests in
flight and on how long requests wait for the event loop, limits on the URL and the headers;
and a clock on the body while it arrives.

Two signals, because requests pile up in two places. Requests that await I/O (PostgreSQL,
Redis) overlap inside the process: `in_flight` counts them. Requests that run without
yielding (SQLite runs inside the coroutine, a cached answer is a few microseconds of
CPU) never overlap; under overload they wait in the event loop's queue before their first
line runs, where no counter sees them. A heartbeat timer measures that wait: when it is
overdue by more than `max_delay`, the loop is that far behind, and so is every request
that starts now. Only a loop that stays behind is overloaded, though: one long stall (a
slow SQLite statement cut at its budget) leaves a queue that drains in microseconds, and
refusing the requests that waited through it would turn a late answer into an error. So
requests are refused when two heartbeats in a row ran late — the loop did not catch up
after the first.

Past either bound a request gets an immediate 503 with `Retry-After` instead of waiting in an
unbounded queue, so the requests that were admitted keep their latency and a load balancer
or client retries elsewhere or later. `/api/health` and `/metrics` are always admitted: an
overloaded process must still say how it is. The count is this process's own on purpose:
the bound protects the event loop of one process, whatever its neighbours do.

The HTTP server enforces the outer limits itself (docs/limits.md): the header timeout, the
keep-alive, a bound on the size of a request's head. Those answers come from it, without a
body; the checks here give the exact limits, in the documented error shape.
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop

import orjson
from starlette.types import Message, Receive, Scope, Send

from shipyard.kernel.errors import ApiError, busy
from shipyard.settings import Settings

ALWAYS_ADMITTED = frozenset({"/api/health", "/metrics"})
REFUSED = "<refused>"  # the route label of a request refused here
_BEAT = 0.01  # seconds between heartbeats
_LATE_STEPS = 3  # passes through the loop's ready queue a late heartbeat still counts for
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})
Headers = list[tuple[bytes, bytes]]


class Admission:
    """One per process (the gateway holds it); `in_flight` is updated by the gateway around
    each admitted request, metrics on or off."""

    __slots__ = (
        "_busy",
        "_due",
        "_late",
        "_loop",
        "_streak",
        "_watch",
        "body_timeout",
        "in_flight",
        "limit",
        "max_delay",
        "max_header",
        "max_url",
        "refused",
    )

    def __init__(
        self,
        limit: int = 256,
        retry_after: int = 1,
        max_url: int = 16384,
        max_header: int = 32768,
        body_timeout: float = 30.0,
        max_delay: float = 0.1,
    ) -> None:
        self.limit = limit
        self.max_delay = max_delay  # seconds; 0: no heartbeat
        self._loop: AbstractEventLoop | None = None
        self._due = 0.0  # when the heartbeat should next run (the loop's clock)
        self._late = 0  # loop steps left during which the last late heartbeat still counts
        self._streak = 0  # heartbeats in a row that ran late
        self.max_url = max_url
        self.max_header = max_header
        self.body_timeout = body_timeout
        self._watch: _BodyWatch | None = None
        self.in_flight = 0
        self.refused = 0  # requests answered 503 here since start
        self._busy = busy(retry_after)

    @classmethod
    def from_settings(cls, s: Settings) -> Admission:
        return cls(
            s.max_in_flight,
            s.overload_retry_after,
            s.max_url_length,
            s.max_header_size,
            s.body_timeout,
            s.max_queue_delay_ms / 1000,
        )

    def refusal(self, scope: Scope) -> ApiError | None:
        """Why this request is refused (414, 431 or 503), or None to admit it."""
        url = len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"])
        if url > self.max_url:
            return ApiError(
                414, f"The request URL is too long (the limit is {self.max_url} bytes)."
            )
        size = 0
        for key, value in scope["headers"]:
            size += len(key) + len(value)
        if size > self.max_header:
            return ApiError(
                431, f"The request headers are too large (the limit is {self.max_header} bytes)."
            )
        busy = self.in_flight >= self.limit or self._behind()
        if busy and scope["path"] not in ALWAYS_ADMITTED:
            self.refused += 1
            return self._busy
        return None

    def _behind(self) -> bool:
        """The heartbeat is overdue by more than `max_delay`: the loop is that far behind."""
        if not self.max_delay:
            return False
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first request, or an app served on a new loop
            self._loop = loop
            self._due, self._late, self._streak = loop.time(), 0, 0
            self._beat()
        overdue = loop.time() - self._due > self.max_delay  # the next beat is late already
        return (self._late > 0 and self._streak >= 2) or (overdue and self._streak >= 1)

    def _beat(self) -> None:
        """Note how late this heartbeat ran, and schedule the next one.

        A late heartbeat keeps counting for a few more passes through the ready queue: the
        requests handed to the loop before it ran may start only after it (granian hands a
        request to the loop, which then starts its task: two steps), and they waited as long.
        A request that arrives later is judged by the next heartbeat."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        now = loop.time()
        if now - self._due <= self.max_delay:
            self._streak = 0
        else:
            self._streak += 1
            if self._late == 0:
                loop.call_soon(self._fade)
            self._late = _LATE_STEPS
        self._due = now + _BEAT
        loop.call_at(self._due, self._beat)

    def _fade(self) -> None:
        self._late -= 1
        if self._late > 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._fade)

    def receive(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` with the body clock, for requests that may carry a body."""
        if scope["method"] in _BODILESS:
            return receive
        watch = self._watch
        if watch is None:
            watch = self._watch = _BodyWatch(min(1.0, self.body_timeout / 4))
        return _BodyClock(receive, self.body_timeout, watch)


async def refuse(err: ApiError, headers: Headers, send: Send) -> None:
    """Answer `err` in the documented shape, with `headers` (CORS, request id) added."""
    body = orjson.dumps(err.to_dict())
    extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                *headers,
                *extra,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyWatch:
    """One timer for every body still arriving in this process, instead of one per read.

    `asyncio.timeout` around each `receive()` cost a write about 15 µs of CPU (a timer
    scheduled and cancelled, a context manager), though nearly every body is already there
    when it is read. Here a read notes its deadline and its task in a dict; a tick, scheduled
    only while some read waits, cancels the reads past their deadline. A stall is thus
    answered between `timeout` and `timeout + step` seconds after it began."""

    __slots__ = ("_handle", "step", "waiting")

    def __init__(self, step: float) -> None:
        self.step = step
        self.waiting: dict[_BodyClock, tuple[float, asyncio.Task[object]]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def enter(self, clock: _BodyClock, deadline: float, task: asyncio.Task[object]) -> None:
        self.waiting[clock] = (deadline, task)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.step, self._tick)

    def _tick(self) -> None:
        self._handle = None
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for clock, (deadline, task) in list(self.waiting.items()):
            if now >= deadline:
                del self.waiting[clock]
                clock.expired = True
                task.cancel()
        if self.waiting:
            self._handle = loop.call_later(self.step, self._tick)


class _BodyClock:
    """Waits at most `timeout` seconds for each part of the body; a client that stalls gets
    408 (raised as an ApiError where the route reads its body). Once the body is complete,
    later calls (a streamed response listening for the disconnect) wait without a clock."""

    __slots__ = ("_done", "_receive", "_timeout", "_watch", "expired")

    def __init__(self, receive: Receive, timeout: float, watch: _BodyWatch) -> None:
        self._receive = receive
        self._timeout = timeout
        self._watch = watch
        self._done = False
        self.expired = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        task = asyncio.current_task()
        if task is None:  # not in a task (cannot be cancelled): no clock
            return await self._receive()
        cancelling = task.cancelling()
        watch = self._watch
        watch.enter(self, asyncio.get_running_loop().time() + self._timeout, task)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # ours only when no one else cancelled the task too (as asyncio.timeout decides)
            if self.expired and task.uncancel() <= cancelling:
                self._done = True
                raise ApiError(
                    408, f"The request body did not arrive in time (waited {self._timeout:g} s)."
                ) from None
            raise
        finally:
            watch.waiting.pop(self, None)
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message
