"""Every statement's duration as a histogram, by engine and kind of statement.

The database seam already times each statement with two `perf_counter()` calls and tells a
`QueryTimer` about those at or over its threshold (tools/db_base.py). `QueryMetrics` is such
a timer with a threshold of 0: it hears of every statement, adds it to
`shipyard_db_query_duration_seconds{engine, kind}` (a dict update), and passes the slow
ones on to the timer it wraps (the slow-query log), so one pair of clock reads serves both.
"""

from __future__ import annotations

from bisect import bisect_left

from shipyard.tools.db_base import QueryTimer
from shipyard.tools.metrics import Registry

KINDS = ("select", "insert", "update", "delete")
_MAX_REMEMBERED = 4096  # statement texts whose series are kept (most SQL is constant text)


class QueryMetrics:
    """A `QueryTimer` for `tools.db.connect`: `engine` is sqlite or postgres; `inner` (may be
    None) gets the statements at or over its own threshold, as it would without this."""

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
        # statement text → its series (the histogram's own list, updated in place)
        self._by_sql: dict[str, list[float]] = {}
        self._buckets = self.histogram.buckets
        self._first = self._buckets[0]

    def labels(self, sql: str) -> tuple[str, str]:
        word = sql.lstrip()[:6].lower()
        return (self.engine, word if word in KINDS else "other")

    def _series_of(self, sql: str) -> list[float]:
        series = self.histogram.series(self.labels(sql))
        if len(self._by_sql) < _MAX_REMEMBERED:
            self._by_sql[sql] = series
        return series

    def slow(self, sql: str, seconds: float, rows: int) -> None:
        # Histogram.observe inlined, the series found by the statement's text in one
        # lookup: this runs for every statement
        series = self._by_sql.get(sql) or self._series_of(sql)
        # most statements take less than the first bucket's bound: no search for those
        series[0 if seconds <= self._first else bisect_left(self._buckets, seconds)] += 1
        series[-1] += seconds
        inner = self.inner
        if inner is not None and seconds >= inner.threshold:
            inner.slow(sql, seconds, rows)


__all__ = ["KINDS", "QueryMetrics"]
