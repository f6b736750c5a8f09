"""The observability seams every capability reports through: one metrics registry per
process, the finished-request record that the HTTP layer hands to observers (the request
logs), and the sinks that unhandled exceptions go to (error tracking).

It sits in the kernel so that records, jobs, auth and the HTTP layer can report without
knowing who listens: the metrics, logs and errors capabilities plug in from above
(`Extension.request_observers()` / `exception_sinks()`). Observers run on the event loop
after every request, so they must be cheap and must not block: buffer, and write in a
background task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.tools.metrics import Registry

log = logging.getLogger("shipyard.telemetry")

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (never its path)


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


RequestObserver = Callable[[RequestInfo], None]
# (the exception, what it happened in: {"kind": "request"|"job", "method", "route", …})
ExceptionSink = Callable[[BaseException, Mapping[str, Any]], None]


class Telemetry:
    """Built once per process by the composition root, before any capability."""

    def __init__(self, *, metrics_enabled: bool = True) -> None:
        self.metrics = Registry()
        # off (SHIPYARD_METRICS_ENABLED=false): the hot path updates no metric at all
        self.metrics_enabled = metrics_enabled
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
        self.observers: list[RequestObserver] = []
        self.sinks: list[ExceptionSink] = []

    def request_done(self, info: RequestInfo) -> None:
        """Count a finished request and hand it to every observer (an observer that raises
        is logged, never allowed to fail the request)."""
        if self.metrics_enabled:
            # a client picks the method: any other than HTTP's own would be a new series
            method = info.method if info.method in _METHODS else "OTHER"
            self.http_requests.inc((method, info.route, str(info.status)))
            self.http_duration.observe(info.duration, (method, info.route))
        for observe in self.observers:
            try:
                observe(info)
            except Exception:
                log.exception("request observer %r failed", observe)

    def exception(self, exc: BaseException, context: Mapping[str, Any]) -> None:
        """Report an unhandled exception (a 500, a failed job) to every sink."""
        for sink in self.sinks:
            try:
                sink(exc, context)
            except Exception:
                log.exception("exception sink %r failed", sink)


__all__ = ["UNMATCHED", "ExceptionSink", "RequestInfo", "RequestObserver", "Telemetry"]
