"""Reading /metrics in tests with the reference parser (`prometheus_client.parser`)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition as (sample name, labels, value); parse errors raise."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(v for n, got, v in samples(text) if n == name and labels.items() <= got.items())


def label_values(text: str, name: str, label: str) -> set[str]:
    return {got[label] for n, got, _ in samples(text) if n == name and label in got}
