"""Every statement's duration as a histogram, by engine and kind of statement.

The database seam already times each statement with two `perf_counter()` calls and tells a
`QueryTimer` about those at or over its threshold (tools/db_base.py). `QueryMetrics` is such
a timer with a threshold of 0: it hears of every statement, queues its duration (one list
append: this runs for every statement, a cached read's `PRAGMA data_version` included),
and passes the slow ones on to the timer it wraps (the slow-query log), so one pair of
clock reads serves both. The queued durations are counted into
`shipyard_db_query_duration_seconds{engine, kind}` a batch at a time (`fold`): with each
batch of finished requests (kernel/telemetry.py) and before every snapshot.
"""

from __future__ import annotations

import math

from shipyard.tools.db_base import QueryTimer
from shipyard.tools.metrics import Labels, Registry

KINDS = ("select", "insert", "update", "delete")
_MAX_REMEMBERED = 4096  # statement texts whose queue is kept (most SQL is constant text)


class QueryMetrics:
    """A `QueryTimer` for `tools.db.connect`: `engine` is sqlite or postgres; `inner` (may be
    None) gets the statements at or over its own threshold (read once: it is fixed at
    start), as it would without this."""

    threshold = 0.0

    def __init__(self, registry: Registry, engine: str, inner: QueryTimer | None) -> None:
        self.engine = engine
        self.inner = inner
        self.histogram = registry.histogram(
            "shipyard_db_query_duration_seconds",
            "Time each database statement took, by engine (sqlite, postgres) and kind "
            "(select, insert, update, delete, other).",
            ("engine", "kind"),
        )
        self._queues: dict[Labels, list[float]] = {}  # durations not counted yet, by labels
        self._by_sql: dict[str, list[float]] = {}  # statement text → its labels' queue
        self._inner_at = inner.threshold if inner is not None else math.inf
        registry.collectors.append(self.fold)

    def labels(self, sql: str) -> tuple[str, str]:
        word = sql.lstrip()[:6].lower()
        return (self.engine, word if word in KINDS else "other")

    def _queue_of(self, sql: str) -> list[float]:
        labels = self.labels(sql)
        self.histogram.series(labels)  # the series exists from its first statement on
        queue = self._queues.get(labels)
        if queue is None:
            queue = self._queues[labels] = []
        if len(self._by_sql) < _MAX_REMEMBERED:
            self._by_sql[sql] = queue
        return queue

    def slow(self, sql: str, seconds: float, rows: int) -> None:
        queue = self._by_sql.get(sql)
        if queue is None:
            queue = self._queue_of(sql)
        queue.append(seconds)
        if seconds >= self._inner_at:  # never without an inner timer (infinite)
            inner = self.inner
            if inner is not None:
                inner.slow(sql, seconds, rows)

    def fold(self) -> None:
        """Count the queued durations into the histogram (the event loop's thread; a
        statement another thread runs meanwhile waits in its queue for the next fold)."""
        for labels, queue in list(self._queues.items()):
            n = len(queue)
            if n:
                self.histogram.observe_many(queue[:n], labels)
                del queue[:n]


__all__ = ["KINDS", "QueryMetrics"]
