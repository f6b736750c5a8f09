"""Reading the cluster's metrics snapshot (tools/metrics.py's `snapshot()`/`merge()`
format) as alert rules need it: sums, extremes and histograms over matching series, the
quantile of a histogram as Prometheus' `histogram_quantile` computes it, and counter deltas
that survive a process restart."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Snapshot = Mapping[str, Any]
Sample = list[float]
Match = Mapping[str, Callable[[str], bool]]


def _series(snap: Snapshot, name: str) -> tuple[list[str], list[Any]] | None:
    entry = snap.get(name)
    if not isinstance(entry, Mapping):
        return None
    return list(entry.get("labels", [])), list(entry.get("series", []))


def _where(names: list[str], values: list[Any], match: Match) -> bool:
    got = dict(zip(names, (str(v) for v in values), strict=False))
    return all(test(got.get(k, "")) for k, test in match.items())


def total(snap: Snapshot, name: str, match: Match) -> float | None:
    """The sum of a counter's (or gauge's) matching series; None when the metric is absent."""
    found = _series(snap, name)
    if found is None:
        return None
    names, series = found
    return float(sum(float(v) for labels, v in series if _where(names, labels, match)))


def extreme(snap: Snapshot, name: str, match: Match, pick: Callable[..., Any]) -> float | None:
    """`max` or `min` over a gauge's matching series; None when there is none."""
    found = _series(snap, name)
    if found is None:
        return None
    names, series = found
    values = [float(v) for labels, v in series if _where(names, labels, match)]
    return float(pick(values)) if values else None


def histogram(snap: Snapshot, name: str, match: Match) -> tuple[list[float], list[float]] | None:
    """(bucket bounds, per-bucket counts summed over matching series; the last is +Inf)."""
    entry = snap.get(name)
    found = _series(snap, name)
    if found is None or not isinstance(entry, Mapping):
        return None
    names, series = found
    bounds = [float(b) for b in entry.get("buckets", [])]
    counts = [0.0] * (len(bounds) + 1)
    for labels, value in series:
        if _where(names, labels, match) and len(value) == len(bounds) + 2:
            for i, c in enumerate(value[:-1]):
                counts[i] += float(c)
    return bounds, counts


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """Prometheus' `histogram_quantile` over per-bucket counts: linear within the bucket
    that holds the rank; the highest finite bound when it falls in +Inf; None with no data."""
    n = sum(counts)
    if n <= 0:
        return None
    rank = q * n
    running = 0.0
    for i, c in enumerate(counts):
        if running + c >= rank and c > 0:
            if i >= len(bounds):
                return bounds[-1] if bounds else None
            low = 0.0 if i == 0 else bounds[i - 1]
            return low + (bounds[i] - low) * ((rank - running) / c)
        running += c
    return bounds[-1] if bounds else None


def delta(now: Sample, then: Sample | None) -> Sample:
    """What counters gained since `then`; a component that went down was reset (a process
    restarted): its whole current value counts, as in Prometheus."""
    if then is None or len(then) != len(now):
        return list(now)
    return [a - b if a >= b else a for a, b in zip(now, then, strict=True)]


__all__ = ["Sample", "Snapshot", "delta", "extreme", "histogram", "quantile", "total"]
