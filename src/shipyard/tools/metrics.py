"""In-process metrics: counters, gauges and histograms cheap enough for the hot path, and
snapshots of them that merge across processes.

Why not `prometheus_client` directly: its `labels()` lookup takes a lock and builds a
child object per call (about 1.5 µs measured here), and its multiprocess mode shares
files in one directory, so one machine only. Here a series is a dict entry keyed by the
tuple of label values, updated in place (a few hundred ns), and `snapshot()` returns plain
JSON-able data that another process — on any machine — can merge (`merge`) and render in
the Prometheus text format (`exposition`). Tests parse that text with
`prometheus_client.parser`, the reference parser.

How a gauge merges across processes is part of its definition: `sum` (requests in flight),
`max` (values every process computes the same way, such as a queue's depth), or
`process` (one series per process, labelled `instance`, gone when the process is).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

Merge = Literal["sum", "max", "process"]
Labels = tuple[str, ...]
# seconds: 1 ms … 10 s, the range of an API request or a query
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    """A monotonically increasing value per label set."""

    kind = "counter"
    __slots__ = ("help", "labelnames", "name", "values")

    def __init__(self, name: str, help: str, labelnames: Labels) -> None:
        self.name, self.help, self.labelnames = name, help, labelnames
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount


class Gauge:
    """A value that goes up and down, per label set."""

    kind = "gauge"
    __slots__ = ("help", "labelnames", "merge", "name", "values")

    def __init__(self, name: str, help: str, labelnames: Labels, merge: Merge) -> None:
        self.name, self.help, self.labelnames, self.merge = name, help, labelnames, merge
        self.values: dict[Labels, float] = {}

    def set(self, value: float, labels: Labels = ()) -> None:
        self.values[labels] = value

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def dec(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) - amount


class Histogram:
    """Observations counted into fixed buckets per label set. A series is a list: one count
    per bucket (not cumulative; the last is +Inf), then the sum."""

    kind = "histogram"
    __slots__ = ("buckets", "help", "labelnames", "name", "values")

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Labels,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.name, self.help, self.labelnames = name, help, labelnames
        self.buckets = tuple(sorted(buckets))
        self.values: dict[Labels, list[float]] = {}

    def series(self, labels: Labels = ()) -> list[float]:
        """The label set's series, made on first use (callers on a hot path keep it)."""
        series = self.values.get(labels)
        if series is None:
            series = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        return series

    def observe(self, value: float, labels: Labels = ()) -> None:
        self.observe_many((value,), labels)

    def observe_many(self, values: Sequence[float], labels: Labels = ()) -> None:
        """Several observations of one label set: the series found once."""
        into(self.series(labels), self.buckets, values)


def into(series: list[float], buckets: Sequence[float], values: Sequence[float]) -> None:
    """Count `values` into a histogram series (Histogram.series), in C rather than a loop
    over the values (which cost a batch of requests half a microsecond each): most fall
    in the first bucket (durations in seconds), checked by their maximum; otherwise they
    are sorted once and each bucket's count read off by one binary search."""
    if not values:
        return
    if len(values) == 1:
        v = values[0]
        series[0 if v <= buckets[0] else bisect_left(buckets, v)] += 1
        series[-1] += v
        return
    series[-1] += sum(values)
    if max(values) <= buckets[0]:  # the usual batch of fast requests
        series[0] += len(values)
        return
    ordered = sorted(values)
    below = 0  # values up to the previous bound
    for i, bound in enumerate(buckets):
        upto = bisect_right(ordered, bound)
        if upto != below:
            series[i] += upto - below
            below = upto
        if upto == len(ordered):
            return
    series[len(buckets)] += len(ordered) - below  # +Inf


Metric = Counter | Gauge | Histogram
Collector = Callable[[], None]


class Registry:
    """One process's metrics. `collectors` run just before each snapshot (cheap, sync:
    process gauges, say); values that need the database are set by background tasks."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.collectors: list[Collector] = []

    def _add(self, metric: Metric) -> Any:
        existing = self.metrics.get(metric.name)
        if existing is not None:
            if type(existing) is not type(metric) or existing.labelnames != metric.labelnames:
                raise ValueError(f"metric {metric.name} is already defined differently")
            return existing
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Labels = ()) -> Counter:
        out: Counter = self._add(Counter(name, help, labelnames))
        return out

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Labels = (),
        merge: Merge = "sum",
    ) -> Gauge:
        out: Gauge = self._add(Gauge(name, help, labelnames, merge))
        return out

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Labels = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        out: Histogram = self._add(Histogram(name, help, labelnames, buckets))
        return out

    def snapshot(self) -> dict[str, Any]:
        """Every metric with its series, as JSON-able data (see `merge`)."""
        for collect in self.collectors:
            collect()
        out: dict[str, Any] = {}
        for m in self.metrics.values():
            entry: dict[str, Any] = {"type": m.kind, "help": m.help, "labels": list(m.labelnames)}
            if isinstance(m, Histogram):
                entry["buckets"] = list(m.buckets)
                entry["series"] = [[list(k), list(v)] for k, v in m.values.items()]
            else:
                entry["series"] = [[list(k), v] for k, v in m.values.items()]
            if isinstance(m, Gauge):
                entry["merge"] = m.merge
            out[m.name] = entry
        return out


def merge(snapshots: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One snapshot from many, given as (instance, snapshot): counters and histograms add
    up, gauges follow their `merge`; a `process` gauge gains an `instance` label."""
    out: dict[str, Any] = {}
    acc: dict[str, dict[tuple[str, ...], Any]] = {}
    for instance, snap in snapshots:
        for name, entry in snap.items():
            kind, how = entry["type"], entry.get("merge", "sum")
            if name not in out:
                labels = list(entry["labels"])
                if how == "process":
                    labels.append("instance")
                out[name] = {**entry, "labels": labels}
                acc[name] = {}
            elif out[name]["type"] != kind or out[name].get("buckets") != entry.get("buckets"):
                continue  # defined differently by another version: the first one wins
            series = acc[name]
            for labels, value in entry["series"]:
                key = (*labels, instance) if how == "process" else tuple(labels)
                old = series.get(key)
                if old is None:
                    series[key] = list(value) if kind == "histogram" else value
                elif kind == "histogram":
                    series[key] = [a + b for a, b in zip(old, value, strict=True)]
                elif kind == "gauge" and how == "max":
                    series[key] = max(old, value)
                else:
                    series[key] = old + value
    for name, entry in out.items():
        entry["series"] = [[list(k), v] for k, v in acc[name].items()]
    return out


def fold_counters(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a snapshot that outlives its process: counters and histograms (a dead
    process's requests still happened), never its gauges."""
    return {n: e for n, e in snapshot.items() if e["type"] != "gauge"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def exposition(snapshot: Mapping[str, Any]) -> str:
    """The Prometheus text format (version 0.0.4) of a snapshot, metrics sorted by name."""
    lines: list[str] = []
    for name in sorted(snapshot):
        entry = snapshot[name]
        kind, names = entry["type"], entry["labels"]
        lines.append(f"# HELP {name} {entry['help']}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in sorted(entry["series"], key=lambda s: s[0]):
            if kind != "histogram":
                lines.append(f"{name}{_labels(names, labels)} {_number(value)}")
                continue
            running = 0.0
            bounds = [*entry["buckets"], math.inf]
            for bound, count in zip(bounds, value[:-1], strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{name}_bucket{_labels(names, labels, le)} {_number(running)}")
            lines.append(f"{name}_sum{_labels(names, labels)} {_number(value[-1])}")
            lines.append(f"{name}_count{_labels(names, labels)} {_number(running)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "exposition",
    "fold_counters",
    "merge",
]
