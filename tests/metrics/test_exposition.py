"""The registry, merging across processes and the text format, read back by Prometheus's own
parser (`prometheus_client.parser`); the statement timer of the database seam. Pure
in-memory code: no database, so no engine to run it on twice."""

from __future__ import annotations

import math

from shipyard.metrics.cluster import subtract
from shipyard.tools.db_metrics import QueryMetrics
from shipyard.tools.metrics import Registry, exposition, fold_counters, merge
from tests.helpers.promtext import families, samples, value


def _process(requests: int, memory: float, depth: float, inflight: float) -> Registry:
    r = Registry()
    c = r.counter("t_requests_total", "Requests.", ("route",))
    c.inc(("/a/{id}",), requests)
    h = r.histogram("t_seconds", "Durations.", ("route",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0)[: max(1, requests % 4)]:
        h.observe(v, ("/a/{id}",))
    r.gauge("t_memory_bytes", "Memory.", merge="process").set(memory)
    r.gauge("t_depth", "Depth.", ("queue",), merge="max").set(depth, ("default",))
    r.gauge("t_in_flight", "In flight.", merge="sum").set(inflight)
    return r


def test_exposition_parses_with_the_reference_parser() -> None:
    r = _process(3, 100.0, 2.0, 1.0)
    text = exposition(r.snapshot())
    fams = families(text)
    assert fams["t_requests"].type == "counter"
    assert fams["t_seconds"].type == "histogram"
    assert fams["t_memory_bytes"].type == "gauge"
    assert value(text, "t_requests_total", route="/a/{id}") == 3
    # buckets are cumulative, +Inf equals the count, the sum is the observations'
    assert value(text, "t_seconds_bucket", le="0.1") == 1
    assert value(text, "t_seconds_bucket", le="1") == 2
    assert value(text, "t_seconds_bucket", le="+Inf") == 3
    assert value(text, "t_seconds_count") == 3
    assert math.isclose(value(text, "t_seconds_sum"), 5.55)


def test_label_values_are_escaped() -> None:
    r = Registry()
    odd = 'a "quoted" \\ back\nslash'
    r.counter("t_odd_total", "Odd labels.", ("v",)).inc((odd,))
    [(name, labels, v)] = samples(exposition(r.snapshot()))
    assert (name, labels, v) == ("t_odd_total", {"v": odd}, 1.0)


def test_merge_adds_counters_and_follows_each_gauges_rule() -> None:
    a, b = _process(3, 100.0, 2.0, 1.0), _process(5, 300.0, 7.0, 4.0)
    text = exposition(merge([("pa", a.snapshot()), ("pb", b.snapshot())]))
    assert value(text, "t_requests_total") == 8
    assert value(text, "t_seconds_count") == 3 + 1
    assert value(text, "t_in_flight") == 5  # sum
    assert value(text, "t_depth", queue="default") == 7  # max
    # process: one series per process, told apart by `instance`
    memory = {labels["instance"]: v for n, labels, v in samples(text) if n == "t_memory_bytes"}
    assert memory == {"pa": 100.0, "pb": 300.0}


def test_a_dead_process_keeps_its_counts_not_its_gauges() -> None:
    a, gone = _process(3, 100.0, 2.0, 1.0), _process(5, 300.0, 7.0, 4.0)
    folded = fold_counters(gone.snapshot())
    text = exposition(merge([("pa", a.snapshot()), ("gone", folded)]))
    assert value(text, "t_requests_total") == 8
    assert value(text, "t_in_flight") == 1
    assert value(text, "t_depth") == 2
    memory = {labels["instance"] for n, labels, _ in samples(text) if n == "t_memory_bytes"}
    assert memory == {"pa"}


def test_subtract_leaves_what_was_counted_since() -> None:
    r = _process(3, 100.0, 2.0, 1.0)
    before = r.snapshot()
    r.metrics["t_requests_total"].inc(("/a/{id}",), 4)  # type: ignore[union-attr]
    r.metrics["t_requests_total"].inc(("/b",), 1)  # type: ignore[union-attr]
    r.metrics["t_seconds"].observe(0.5, ("/a/{id}",))  # type: ignore[union-attr]
    text = exposition(subtract(r.snapshot(), before))
    assert value(text, "t_requests_total", route="/a/{id}") == 4
    assert value(text, "t_requests_total", route="/b") == 1
    assert value(text, "t_seconds_count") == 1
    assert value(text, "t_memory_bytes") == 100  # a gauge is a value, not a count


class _Slow:
    threshold = 0.5

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, int]] = []

    def slow(self, sql: str, seconds: float, rows: int) -> None:
        self.seen.append((sql, seconds, rows))


def test_query_timer_counts_every_statement_by_kind_and_passes_slow_ones_on() -> None:
    r = Registry()
    inner = _Slow()
    timer = QueryMetrics(r, "sqlite", inner)
    statements = [
        ('SELECT 1 FROM "t"', 0.001),
        ("  select 2", 0.002),
        ('INSERT INTO "t" VALUES (?)', 0.7),
        ('UPDATE "t" SET "a" = ?', 0.003),
        ('DELETE FROM "t"', 0.004),
        ("PRAGMA data_version", 0.001),
        ("WITH x AS (SELECT 1) SELECT * FROM x", 0.001),
    ]
    for sql, seconds in statements:
        timer.slow(sql, seconds, 1)
    text = exposition(r.snapshot())
    name = "shipyard_db_query_duration_seconds_count"
    counts = {k: value(text, name, engine="sqlite", kind=k) for k in
              ("select", "insert", "update", "delete", "other")}  # fmt: skip
    assert counts == {"select": 2, "insert": 1, "update": 1, "delete": 1, "other": 2}
    assert inner.seen == [('INSERT INTO "t" VALUES (?)', 0.7, 1)]
