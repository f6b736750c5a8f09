"""The observability seams every capability reports through: one metrics registry per
process, the finished-request record that the HTTP layer hands to observers (the request
logs), and the sinks that unhandled exceptions go to (error tracking).

It sits in the kernel so that records, jobs, auth and the HTTP layer can report without
knowing who listens: the metrics, logs and errors capabilities plug in from above
(`Extension.request_observers()` / `exception_sinks()`).

A finished request costs the request one list append (`request_done`): the HTTP metrics
are counted, and the observers called, for a whole batch at once (`flush`): every
FLUSH_AT requests, every `interval` seconds by a background task, and before every metrics
snapshot (so a scrape never misses a finished request). Observers get the batch on the event loop and must not
block: hand it to a writer (the request logs write in a thread of their own).
Measured (bench/observability.py): the per-request work of metrics and logs, done one by
one on the request, cost cached reads 15-25 % of their throughput.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.tools.metrics import Registry
from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.telemetry")

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (never its path)
FLUSH_AT = 256  # finished requests that make a batch at once (else every `interval`)


@dataclass(slots=True)
class RequestInfo:
    """One finished HTTP request. `route` is the matched route's template
    (`/api/collections/{collection}/records`), `path` the raw path; `auth_id` and
    `auth_collection` are empty for guests."""

    request_id: str
    method: str
    route: str
    path: str
    query: str
    status: int
    started: float  # time.time() at arrival
    duration: float  # seconds
    ip: str
    user_agent: str
    referer: str
    auth_id: str = ""
    auth_collection: str = ""


# called with each batch of finished requests, on the event loop
RequestObserver = Callable[[Sequence[RequestInfo]], None]
# (the exception, what it happened in: {"kind": "request"|"job", "method", "route", …})
ExceptionSink = Callable[[BaseException, Mapping[str, Any]], None]


class Telemetry:
    """Built once per process by the composition root, before any capability."""

    def __init__(
        self, *, metrics_enabled: bool = True, interval: float = 0.05, max_pending: int = 100_000
    ) -> None:
        self.metrics = Registry()
        # off (SHIPYARD_METRICS_ENABLED=false): the hot path updates no metric at all
        self.metrics_enabled = metrics_enabled
        self.interval = interval
        self.max_pending = max_pending  # finished requests waiting; past it they are dropped
        self.dropped = 0
        self.in_flight = 0  # requests being answered (an int: read at each snapshot)
        m = self.metrics
        self.http_requests = m.counter(
            "shipyard_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
        )
        self.http_duration = m.histogram(
            "shipyard_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte, by method and route.",
            ("method", "route"),
        )
        self.http_in_flight = m.gauge(
            "shipyard_http_requests_in_flight", "HTTP requests being answered now.", ()
        )
        m.collectors.append(self.flush)
        # metrics others count in batches (the statement timer's `fold`), brought up to
        # date with each flush: every batch of requests, every interval, every snapshot
        self.folds: list[Callable[[], None]] = []
        self.observers: list[RequestObserver] = []
        self.sinks: list[ExceptionSink] = []
        self._pending: list[RequestInfo] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether anyone wants finished requests (off: the gateway builds none)."""
        return self.metrics_enabled or bool(self.observers)

    def request_done(self, info: RequestInfo) -> None:
        """Keep a finished request for the next `flush` (one append, never a wait); every
        FLUSH_AT requests, flush now: a batch is handled while what its requests left
        (their RequestInfo and its strings) is still in the CPU's caches — a batch of a
        whole interval was handled from main memory (measured: half a microsecond a
        request more)."""
        pending = self._pending
        n = len(pending)
        if n < self.max_pending:
            pending.append(info)
            if n + 1 >= FLUSH_AT:
                self.flush()
        else:
            self.dropped += 1

    def flush(self) -> None:
        """Count the finished requests and hand them to every observer (an observer that
        raises is logged, never allowed to fail a request)."""
        if self.metrics_enabled:
            self.http_in_flight.set(float(self.in_flight))
            for fold in self.folds:
                fold()
        batch = self._pending
        if not batch:
            return
        self._pending = []
        if self.metrics_enabled:
            self._count(batch)
        for observe in self.observers:
            try:
                observe(batch)
            except Exception:
                log.exception("request observer %r failed", observe)

    def _count(self, batch: Sequence[RequestInfo]) -> None:
        """The batch's requests grouped by (method, route, status) first — a few groups
        for thousands of requests — so that the label tuples, the counter's update and the
        histogram's series lookup happen once per group, not once per request. Most
        batches are one group (a client repeating a request): that is checked in C, and
        the durations counted into the histogram in C too (tools/metrics.py `into`)."""
        keys = [(info.method, info.route, info.status) for info in batch]
        durations = [info.duration for info in batch]
        if keys and keys.count(keys[0]) == len(keys):
            groups = {keys[0]: durations}
        else:
            groups = {}
            for key, duration in zip(keys, durations, strict=True):
                same = groups.get(key)
                if same is None:
                    groups[key] = [duration]
                else:
                    same.append(duration)
        for (method, route, status), values in groups.items():
            # a client picks the method: any other than HTTP's own would be a new series
            if method not in _METHODS:
                method = "OTHER"
            self.http_requests.inc((method, route, str(status)), len(values))
            self.http_duration.observe_many(values, (method, route))

    def start(self) -> None:
        if self._task is None and self.active:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        self.flush()

    def exception(self, exc: BaseException, context: Mapping[str, Any]) -> None:
        """Report an unhandled exception (a 500, a failed job) to every sink."""
        for sink in self.sinks:
            try:
                sink(exc, context)
            except Exception:
                log.exception("exception sink %r failed", sink)


__all__ = ["UNMATCHED", "ExceptionSink", "RequestInfo", "RequestObserver", "Telemetry"]
