"""Alert rules on their own: values computed from real metric registries' snapshots (the
format every process publishes), the state machine, and the rules document's checks.
No database here: what these functions compute does not depend on the engine."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.alerts.engine import step
from shipyard.alerts.rules import DEFAULT_RULES, TYPES, Rule, RuleError, parse_rules
from shipyard.alerts.series import delta, quantile
from shipyard.alerts.store import AlertState
from shipyard.tools.metrics import Registry, merge


def _registry() -> Registry:
    reg = Registry()
    reg.counter("shipyard_http_requests_total", "h", ("method", "route", "status"))
    reg.histogram("shipyard_http_request_duration_seconds", "h", ("method", "route"))
    reg.counter("shipyard_jobs_total", "h", ("kind", "state"))
    reg.gauge("shipyard_jobs_queue_lag_seconds", "h", ("queue",), merge="max")
    reg.gauge("shipyard_disk_free_bytes", "h", (), merge="process")
    return reg


def _rule(name: str, **over: Any) -> Rule:
    return next(r for r in parse_rules({name: over} if over else {}) if r.name == name)


def _windowed(rule: Rule, before: dict[str, Any], after: dict[str, Any]) -> float | None:
    kind = rule.kind
    assert kind.sample is not None
    assert kind.windowed is not None
    then, now = kind.sample(before, rule), kind.sample(after, rule)
    assert now is not None
    return kind.windowed(after, rule, now, then)


def test_5xx_ratio_over_the_window_of_two_merged_processes() -> None:
    a, b = _registry(), _registry()
    req = "shipyard_http_requests_total"
    a.metrics[req].inc(("GET", "/api/x", "200"), 50)  # type: ignore[union-attr]
    before = merge([("a", a.snapshot()), ("b", b.snapshot())])
    a.metrics[req].inc(("GET", "/api/x", "200"), 60)  # type: ignore[union-attr]
    b.metrics[req].inc(("GET", "/api/x", "503"), 30)  # type: ignore[union-attr]
    b.metrics[req].inc(("POST", "/api/y", "500"), 10)  # type: ignore[union-attr]
    after = merge([("a", a.snapshot()), ("b", b.snapshot())])
    rule = _rule("ShipyardHigh5xxRatio")
    value = _windowed(rule, before, after)
    assert value == pytest.approx(40 / 100)
    assert rule.condition(value)
    # one route only
    only_y = _rule("ShipyardHigh5xxRatio", params={"route": "/api/y", "minRequests": 1})
    assert _windowed(only_y, before, after) == pytest.approx(1.0)
    # too few requests in the window: no data, no alert
    few = _rule("ShipyardHigh5xxRatio", params={"minRequests": 1000})
    assert _windowed(few, before, after) is None
    assert not few.condition(None)


def test_a_restarted_process_counts_from_zero_not_negative() -> None:
    assert delta([5.0, 2.0], [100.0, 1.0]) == [5.0, 1.0]
    assert delta([5.0], None) == [5.0]


def test_p99_from_bucket_deltas_matches_prometheus_interpolation() -> None:
    reg = _registry()
    h = reg.metrics["shipyard_http_request_duration_seconds"]
    for _ in range(100):
        h.observe(0.004, ("GET", "/a"))  # type: ignore[union-attr]
    before = reg.snapshot()
    for _ in range(98):
        h.observe(0.004, ("GET", "/a"))  # type: ignore[union-attr]
    for _ in range(2):
        h.observe(3.0, ("GET", "/a"))  # type: ignore[union-attr]
    after = reg.snapshot()
    rule = _rule("ShipyardHighLatencyP99")
    # rank 99 of 100 within the window: 98 in (0.0025, 0.005], 2 in (2.5, 5.0]
    value = _windowed(rule, before, after)
    assert value == pytest.approx(2.5 + 2.5 * (99 - 98) / 2)
    assert rule.condition(value)
    # histogram_quantile: the highest finite bound when the rank is in +Inf
    assert quantile(0.5, [1.0, 2.0], [0.0, 0.0, 4.0]) == 2.0
    assert quantile(0.5, [1.0], [0.0, 0.0]) is None


def test_dead_letters_queue_lag_and_disk() -> None:
    reg = _registry()
    jobs = reg.metrics["shipyard_jobs_total"]
    jobs.inc(("webhook", "discarded"), 3)  # type: ignore[union-attr]
    before = reg.snapshot()
    jobs.inc(("webhook", "discarded"))  # type: ignore[union-attr]
    jobs.inc(("webhook", "completed"), 10)  # type: ignore[union-attr]
    after = reg.snapshot()
    dead = _rule("ShipyardJobDeadLetters")
    assert _windowed(dead, before, after) == 1.0
    assert _windowed(dead, after, after) == 0.0
    reg.metrics["shipyard_jobs_queue_lag_seconds"].set(12.0, ("default",))  # type: ignore[union-attr]
    reg.metrics["shipyard_jobs_queue_lag_seconds"].set(400.0, ("mail",))  # type: ignore[union-attr]
    lag = _rule("ShipyardQueueLag")
    assert lag.kind.instant is not None
    assert lag.kind.instant(reg.snapshot(), lag) == 400.0
    only_default = _rule("ShipyardQueueLag", params={"queue": "default"})
    assert only_default.kind.instant is not None
    assert only_default.kind.instant(reg.snapshot(), only_default) == 12.0
    a, b = _registry(), _registry()
    a.metrics["shipyard_disk_free_bytes"].set(5e9)  # type: ignore[union-attr]
    b.metrics["shipyard_disk_free_bytes"].set(5e8)  # type: ignore[union-attr]
    disk = _rule("ShipyardDiskFreeLow")
    assert disk.kind.instant is not None
    free = disk.kind.instant(merge([("a", a.snapshot()), ("b", b.snapshot())]), disk)
    assert free == 5e8
    assert disk.condition(free)
    assert disk.kind.instant({}, disk) is None  # no metric: no data


def _walk(rule: Rule, conditions: list[bool], step_s: float = 60.0) -> list[tuple[str, Any]]:
    state: AlertState | None = None
    out = []
    for i, active in enumerate(conditions):
        state, what = step(state, rule, active, 1000.0 + i * step_s, 600.0)
        if what == "firing":
            state.notified_at = 1000.0 + i * step_s
        out.append((state.state, what))
    return out


def test_state_machine_with_for_and_repeat() -> None:
    rule = _rule("ShipyardQueueLag", **{"for": 120})
    got = _walk(rule, [True, True, True, True, False, False, True])
    assert got == [
        ("pending", None),
        ("pending", None),
        ("firing", "firing"),  # held for 120 s
        ("firing", None),  # within the repeat interval
        ("resolved", "resolved"),
        ("resolved", None),
        ("pending", None),
    ]
    # a blip shorter than `for` never fires
    assert _walk(rule, [True, False, True, False]) == [
        ("pending", None), ("inactive", None), ("pending", None), ("inactive", None),
    ]  # fmt: skip
    # repeat: every 600 s while firing
    immediate = _rule("ShipyardErrorNewIssue")
    got = _walk(immediate, [True] * 12 + [False])
    notes = [w for _, w in got]
    assert notes == ["firing"] + [None] * 9 + ["firing", None, "resolved"]


def test_a_silenced_firing_alert_is_notified_when_the_silence_ends() -> None:
    rule = _rule("ShipyardErrorNewIssue")
    s, what = step(None, rule, True, 0.0, 600.0)
    assert (s.state, what) == ("firing", "firing")  # silenced: the caller does not mark it
    s, what = step(s, rule, True, 60.0, 600.0)
    assert what == "firing"  # still never notified
    quiet, what = step(s, rule, False, 120.0, 600.0)
    assert (quiet.state, what) == ("resolved", None)  # nothing was said: nothing to resolve


def test_the_rules_document() -> None:
    rules = parse_rules("")
    assert [r.name for r in rules] == [r.name for r in DEFAULT_RULES]
    assert all(r.enabled for r in rules)
    assert {r.type for r in rules} == set(TYPES)
    changed = parse_rules(
        {
            "ShipyardDiskFreeLow": {"threshold": 5e9, "severity": "warning"},
            "ShipyardQueueLag": {"enabled": False},
            "Checkout4xx": {
                "type": "http_error_ratio",
                "params": {"status": "4", "route": "/api/checkout"},
                "threshold": 0.2,
                "labels": {"team": "shop"},
            },
        }
    )
    by = {r.name: r for r in changed}
    assert by["ShipyardDiskFreeLow"].threshold == 5e9
    assert by["ShipyardDiskFreeLow"].for_ == 300.0  # the rest stays
    assert not by["ShipyardQueueLag"].enabled
    assert by["Checkout4xx"].all_labels()["team"] == "shop"
    assert 'status=~"4.."' in (by["Checkout4xx"].to_json()["promql"] or "")
    assert by["Checkout4xx"].fingerprint != by["ShipyardDiskFreeLow"].fingerprint


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ("{not json", "rules"),
        ([], "rules"),
        ({"bad name": {}}, "bad name"),
        ({"New": {"type": "http_error_ratio"}}, "New.threshold"),
        ({"New": {"type": "nope", "threshold": 1}}, "New.type"),
        ({"ShipyardQueueLag": {"threshold": "high"}}, "ShipyardQueueLag.threshold"),
        ({"ShipyardQueueLag": {"params": {"window": 5}}}, "ShipyardQueueLag.params.window"),
        (
            {"ShipyardHigh5xxRatio": {"params": {"status": "9"}}},
            "ShipyardHigh5xxRatio.params.status",
        ),
        ({"ShipyardQueueLag": {"severity": "page"}}, "ShipyardQueueLag.severity"),
        ({"ShipyardQueueLag": {"labels": {"alertname": "x"}}}, "ShipyardQueueLag.labels.alertname"),
        ({"ShipyardQueueLag": {"whatever": 1}}, "ShipyardQueueLag.whatever"),
    ],
)
def test_bad_rules_name_the_offending_part(doc: Any, path: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(doc)
    assert info.value.path == path
